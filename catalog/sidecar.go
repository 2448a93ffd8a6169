package catalog

import (
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strconv"
)

// SidecarSuffix is appended to a service's ID and name to name its
// sidecar proxy.
const SidecarSuffix = "-sidecar-proxy"

// sidecarCheckInterval is the interval of the default sidecar check.
const sidecarCheckInterval = "10s"

// SidecarDefinition returns the sidecar proxy service that
// Connect.SidecarService asks for, with Consul's defaults, validated; or
// nil, nil when there is none. port is used when the sidecar gives no
// Port (the agent allocates it from its sidecar port range; 0 when it has
// none to give).
//
// As in Consul: ID is always "<id>-sidecar-proxy"; Name defaults to
// "<name>-sidecar-proxy"; Kind is connect-proxy; Tags and Meta are the
// parent's unless given; Proxy gets DestinationServiceName and
// DestinationServiceID of the parent, LocalServiceAddress "127.0.0.1" and
// LocalServicePort the parent's Port unless given. Without checks of its
// own it gets a TCP check "Connect Sidecar Listening" on its address (or
// 127.0.0.1) and port every 10s. Unlike Consul it gets no alias check
// (this agent's health checks have no alias kind).
func (d *ServiceDefinition) SidecarDefinition(port int) (*ServiceDefinition, error) {
	if d.SidecarService == nil {
		return nil, nil
	}
	s := d.SidecarService.Clone()
	s.SidecarService = nil
	if s.Kind == KindTypical {
		s.Kind = KindConnectProxy
	}
	s.ID = d.ID + SidecarSuffix
	if s.Name == "" {
		s.Name = d.Name + SidecarSuffix
	}
	if len(s.Tags) == 0 {
		s.Tags = slices.Clone(d.Tags)
	}
	if len(s.Meta) == 0 {
		s.Meta = maps.Clone(d.Meta)
	}
	if s.Weights == (Weights{}) {
		s.Weights = DefaultWeights
	}
	if s.Port == 0 {
		if port == 0 {
			return nil, joinDefinitionErrors([]*DefinitionError{{Field: "Connect.SidecarService.Port", Msg: "missing, and no port was allocated"}}, d.label(), "")
		}
		s.Port = port
	}
	s.Proxy = sidecarProxy(s.Proxy, d)
	if len(s.Checks) == 0 {
		addr := s.Address
		if addr == "" {
			addr = "127.0.0.1"
		}
		raw, _ := json.Marshal(map[string]any{
			"Name":     "Connect Sidecar Listening",
			"TCP":      net.JoinHostPort(addr, strconv.Itoa(s.Port)),
			"Interval": sidecarCheckInterval,
		})
		s.Checks = []CheckDefinition{{Name: "Connect Sidecar Listening", Raw: raw}}
	}
	s.FillDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// sidecarProxy fills the proxy object of a sidecar of parent.
func sidecarProxy(raw json.RawMessage, parent *ServiceDefinition) json.RawMessage {
	m := map[string]any{}
	if x, err := decodeValue(raw); err == nil {
		if o, ok := x.(map[string]any); ok {
			m = o
		}
	}
	get := func(key string) any {
		for k, v := range m {
			if canonicalKey(k) == key {
				return v
			}
		}
		return nil
	}
	addr, _ := get("localserviceaddress").(string)
	if addr == "" {
		addr = "127.0.0.1"
	}
	var localPort any = parent.Port
	if p, err := asInt(get("localserviceport")); err == nil && p > 0 {
		localPort = p
	}
	for k := range m {
		switch canonicalKey(k) {
		case "destinationservicename", "destinationserviceid", "localserviceaddress", "localserviceport":
			delete(m, k)
		}
	}
	m["DestinationServiceName"] = parent.Name
	m["DestinationServiceID"] = parent.ID
	m["LocalServiceAddress"] = addr
	m["LocalServicePort"] = localPort
	b, err := json.Marshal(m)
	if err != nil { // unreachable: only JSON-decoded values are in m
		return raw
	}
	return b
}
