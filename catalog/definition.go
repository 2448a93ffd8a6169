package catalog

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Service kinds Consul knows. Only KindConnectProxy gets special
// treatment here (sidecars); the gateway kinds are accepted and carried.
const (
	KindTypical            = ""
	KindConnectProxy       = "connect-proxy"
	KindMeshGateway        = "mesh-gateway"
	KindTerminatingGateway = "terminating-gateway"
	KindIngressGateway     = "ingress-gateway"
	KindAPIGateway         = "api-gateway"
)

// Limits on service metadata, as in Consul.
const (
	MetaMaxPairs    = 64
	MetaKeyMaxLen   = 128
	MetaValueMaxLen = 512
)

// ServiceDefinition is one service as registered with the agent, in
// Consul's shape: the body of PUT /v1/agent/service/register or an entry
// of a configuration file's "service"/"services". ParseServiceDefinition
// and ServiceDefinitionFromMap read it with the defaults filled in;
// Validate checks it.
type ServiceDefinition struct {
	// Kind is KindTypical or one of the other Kind constants.
	Kind string
	// ID is unique per agent. If empty, Name is used (FillDefaults).
	ID string
	// Name is required (except in a SidecarService, where it defaults to
	// the parent's name + "-sidecar-proxy").
	Name string
	Tags []string
	// Address, when empty, means the node's address.
	Address         string
	TaggedAddresses map[string]ServiceAddress
	Meta            map[string]string
	Port            int
	// EnableTagOverride lets tools outside the agent change the tags in
	// the catalog (anti-entropy then keeps the catalog's).
	EnableTagOverride bool
	// Weights: ParseServiceDefinition fills DefaultWeights when the
	// definition has none. A zero Weights is invalid.
	Weights Weights
	// Proxy is the "Proxy" object as compact JSON (JSON object keys as
	// given), or nil. Validate reads DestinationServiceName from it for a
	// connect-proxy; the rest belongs to the sidecar proxy.
	Proxy json.RawMessage
	// Connect is the "Connect" object as compact JSON, or nil, kept for
	// the sidecar work. SidecarService is its "SidecarService", parsed.
	Connect json.RawMessage
	// SidecarService is Connect.SidecarService as given: no defaults
	// applied (see SidecarDefinition). Nil without one.
	SidecarService *ServiceDefinition
	// Checks are "Check" (first) and "Checks" in order. FillDefaults gives
	// them Consul's IDs and names.
	Checks []CheckDefinition
	// Token is the ACL token given with the registration; kept, unused.
	Token string
}

// CheckDefinition is a check given inside a service definition. The
// catalog needs only its identity and initial status; the rest is the
// health package's, which reads Raw (health.ParseCheckDefinition).
type CheckDefinition struct {
	// ID defaults to "service:<service ID>", with ":<n>" (1-based) added
	// when the service has several checks.
	ID string
	// Name defaults to "Service '<service name>' check".
	Name string
	// ServiceID is always the service's ID.
	ServiceID string
	// Status is the initial status as given: passing, warning, critical,
	// or "" (critical for a new check; LocalState keeps the current
	// status of a check re-registered without one).
	Status string
	Notes  string
	// Raw is the check's JSON object as given, with "CheckID", "Name" and
	// "ServiceID" set to the values above (other spellings of those keys
	// removed), so that it parses as a complete check definition.
	Raw json.RawMessage
}

// Clone returns a deep copy.
func (d *ServiceDefinition) Clone() *ServiceDefinition {
	c := *d
	c.Tags = slices.Clone(d.Tags)
	c.TaggedAddresses = maps.Clone(d.TaggedAddresses)
	c.Meta = maps.Clone(d.Meta)
	c.Proxy = slices.Clone(d.Proxy)
	c.Connect = slices.Clone(d.Connect)
	if d.SidecarService != nil {
		c.SidecarService = d.SidecarService.Clone()
	}
	c.Checks = slices.Clone(d.Checks)
	for i := range c.Checks {
		c.Checks[i].Raw = slices.Clone(c.Checks[i].Raw)
	}
	return &c
}

// FillDefaults gives the definition Consul's defaults: ID from Name, and
// each check its ID, Name and ServiceID (Raw updated to match). Fields
// already set are kept. Parsing calls it; call it again after changing
// ID, Name or Checks by hand.
func (d *ServiceDefinition) FillDefaults() {
	if d.ID == "" {
		d.ID = d.Name
	}
	for i := range d.Checks {
		c := &d.Checks[i]
		if c.ID == "" {
			c.ID = "service:" + d.ID
			if len(d.Checks) > 1 {
				c.ID += ":" + strconv.Itoa(i+1)
			}
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("Service '%s' check", d.Name)
		}
		c.ServiceID = d.ID
		c.Raw = withIdentity(c.Raw, c.ID, c.Name, c.ServiceID)
	}
}

// identityKeys are the canonical keys of a check's identity; withIdentity
// replaces whatever spelling was given by Consul's CamelCase one.
var identityKeys = map[string]bool{"id": true, "checkid": true, "name": true, "serviceid": true}

// withIdentity returns raw (a JSON object, or nil) with CheckID, Name and
// ServiceID set. Other keys are kept as given.
func withIdentity(raw json.RawMessage, id, name, serviceID string) json.RawMessage {
	m := map[string]any{}
	if len(raw) > 0 {
		if x, err := decodeValue(raw); err == nil {
			if o, ok := x.(map[string]any); ok {
				m = o
			}
		}
	}
	for k := range m {
		if identityKeys[canonicalKey(k)] {
			delete(m, k)
		}
	}
	m["CheckID"] = id
	m["Name"] = name
	m["ServiceID"] = serviceID
	out, err := json.Marshal(m)
	if err != nil { // unreachable: only JSON-decoded values are in m
		return raw
	}
	return out
}

// Service returns the instance to register: the definition's fields in
// the catalog's shape.
func (d *ServiceDefinition) Service() Service {
	return Service{
		Kind:              d.Kind,
		ID:                d.ID,
		Service:           d.Name,
		Tags:              slices.Clone(d.Tags),
		Address:           d.Address,
		TaggedAddresses:   maps.Clone(d.TaggedAddresses),
		Meta:              maps.Clone(d.Meta),
		Port:              d.Port,
		Weights:           d.Weights,
		EnableTagOverride: d.EnableTagOverride,
		Proxy:             slices.Clone(d.Proxy),
	}
}

// HealthChecks returns the definition's checks as LocalState takes them:
// Status as given ("" keeps a re-registered check's status, else
// critical), Type from the kind of check, and Definition the check's
// settings (Raw without its identity, status, notes and token, keys in
// Consul's spelling where known).
func (d *ServiceDefinition) HealthChecks() []HealthCheck {
	out := make([]HealthCheck, 0, len(d.Checks))
	for _, c := range d.Checks {
		out = append(out, HealthCheck{
			CheckID:     c.ID,
			Name:        c.Name,
			Status:      c.Status,
			Notes:       c.Notes,
			ServiceID:   d.ID,
			ServiceName: d.Name,
			ServiceTags: slices.Clone(d.Tags),
			Type:        checkType(c.Raw),
			Definition:  checkSettings(c.Raw),
		})
	}
	return out
}

// definitionKeys maps canonical check keys to Consul's spelling in a
// HealthCheck's Definition. Identity, status, notes and token are left
// out; unknown keys are kept as given.
var definitionKeys = map[string]string{
	"id": "", "checkid": "", "name": "", "serviceid": "", "status": "", "notes": "", "token": "",
	"http": "HTTP", "method": "Method", "header": "Header", "body": "Body",
	"disableredirects": "DisableRedirects", "tcp": "TCP", "tcpusetls": "TCPUseTLS",
	"ttl": "TTL", "grpc": "GRPC", "grpcusetls": "GRPCUseTLS",
	"tlsservername": "TLSServerName", "tlsskipverify": "TLSSkipVerify",
	"args": "ScriptArgs", "scriptargs": "ScriptArgs",
	"interval": "Interval", "timeout": "Timeout", "outputmaxsize": "OutputMaxSize",
	"successbeforepassing": "SuccessBeforePassing", "failuresbeforewarning": "FailuresBeforeWarning",
	"failuresbeforecritical":         "FailuresBeforeCritical",
	"deregistercriticalserviceafter": "DeregisterCriticalServiceAfter",
}

func checkSettings(raw json.RawMessage) json.RawMessage {
	x, err := decodeValue(raw)
	if err != nil {
		return nil
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil
	}
	out := map[string]any{}
	for k, v := range m {
		if v == nil {
			continue
		}
		name, known := definitionKeys[canonicalKey(k)]
		switch {
		case !known:
			out[k] = v
		case name != "":
			out[name] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return b
}

// checkType names the kind of check a raw definition is, as the health
// package does ("http", "tcp", "ttl", "grpc", "script"), or "".
func checkType(raw json.RawMessage) string {
	x, err := decodeValue(raw)
	if err != nil {
		return ""
	}
	m, _ := x.(map[string]any)
	for _, k := range []struct{ key, typ string }{
		{"http", "http"}, {"tcp", "tcp"}, {"ttl", "ttl"}, {"grpc", "grpc"},
		{"args", "script"}, {"scriptargs", "script"},
	} {
		for given, v := range m {
			if canonicalKey(given) == k.key && !isZero(v) {
				return k.typ
			}
		}
	}
	return ""
}

// Validate checks the definition and returns one *DefinitionError per
// problem (joined with errors.Join), each naming the field and the bad
// value. It checks what the catalog relies on; whether each check is a
// runnable check is the health package's to say (it reads Checks[i].Raw).
func (d *ServiceDefinition) Validate() error {
	v := validator{}
	v.service(d, "", false)
	return v.err(d.label())
}

func (d *ServiceDefinition) label() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Name
}

type validator struct{ errs []*DefinitionError }

func (v *validator) bad(field, format string, args ...any) {
	v.errs = append(v.errs, &DefinitionError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) err(label string) error {
	return joinDefinitionErrors(v.errs, label, "")
}

var validKinds = []string{KindTypical, KindConnectProxy, KindMeshGateway, KindTerminatingGateway, KindIngressGateway, KindAPIGateway}

// metaKeyFormat is Consul's rule for metadata keys.
var metaKeyFormat = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`).MatchString

// service validates d; prefix is the path to it ("" or
// "Connect.SidecarService."). A sidecar may leave Name, ID and Port to
// SidecarDefinition.
func (v *validator) service(d *ServiceDefinition, prefix string, sidecar bool) {
	if d.Name == "" && !sidecar {
		v.bad(prefix+"Name", "missing")
	}
	if strings.ContainsRune(d.Name, 0) || strings.ContainsRune(d.ID, 0) {
		v.bad(prefix+"ID", "contains a NUL byte")
	}
	if !slices.Contains(validKinds, d.Kind) {
		v.bad(prefix+"Kind", "%q is not a service kind (want connect-proxy, mesh-gateway, terminating-gateway, ingress-gateway, api-gateway or none)", d.Kind)
	}
	if sidecar && d.Kind != KindTypical && d.Kind != KindConnectProxy {
		v.bad(prefix+"Kind", "%q: a sidecar service is a connect-proxy", d.Kind)
	}
	if d.Port < 0 || d.Port > 65535 {
		v.bad(prefix+"Port", "%d is out of range 0-65535", d.Port)
	}
	if d.Address != "" {
		if ip := net.ParseIP(d.Address); ip != nil && ip.IsUnspecified() {
			v.bad(prefix+"Address", "%q is an unspecified address (give the address clients should use, or none for the node's)", d.Address)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.TaggedAddresses)) {
		v.taggedAddress(prefix, k, d.TaggedAddresses[k])
	}
	v.meta(prefix, d.Meta)
	if d.Weights.Passing < 1 {
		v.bad(prefix+"Weights.Passing", "%d is below the minimum 1", d.Weights.Passing)
	}
	if d.Weights.Warning < 0 {
		v.bad(prefix+"Weights.Warning", "%d is negative", d.Weights.Warning)
	}
	switch d.Kind {
	case KindConnectProxy:
		if d.Port == 0 && !sidecar {
			v.bad(prefix+"Port", "missing (required for a connect-proxy)")
		}
		if proxyString(d.Proxy, "destinationservicename") == "" && !sidecar {
			v.bad(prefix+"Proxy.DestinationServiceName", "missing (required for a connect-proxy)")
		}
		if d.SidecarService != nil {
			v.bad(prefix+"Connect.SidecarService", "not allowed on a connect-proxy")
		}
	case KindMeshGateway:
		if d.Port == 0 {
			v.bad(prefix+"Port", "missing (required for a mesh-gateway)")
		}
	}
	v.checks(prefix, d.Checks)
	if d.SidecarService != nil && !sidecar {
		v.service(d.SidecarService, prefix+"Connect.SidecarService.", true)
	}
}

func (v *validator) taggedAddress(prefix, key string, a ServiceAddress) {
	field := fmt.Sprintf("%sTaggedAddresses[%q]", prefix, key)
	if key == "" {
		v.bad(field, "empty name")
	}
	if a.Port < 0 || a.Port > 65535 {
		v.bad(field+".Port", "%d is out of range 0-65535", a.Port)
	}
	ip := net.ParseIP(a.Address)
	switch {
	case a.Address == "":
		v.bad(field+".Address", "missing")
	case ip != nil && ip.IsUnspecified():
		v.bad(field+".Address", "%q is an unspecified address", a.Address)
	case strings.HasSuffix(key, "_ipv4") && (ip == nil || ip.To4() == nil):
		v.bad(field+".Address", "%q is not an IPv4 address", a.Address)
	case strings.HasSuffix(key, "_ipv6") && (ip == nil || ip.To4() != nil):
		v.bad(field+".Address", "%q is not an IPv6 address", a.Address)
	}
}

func (v *validator) meta(prefix string, meta map[string]string) {
	if len(meta) > MetaMaxPairs {
		v.bad(prefix+"Meta", "%d pairs; at most %d are allowed", len(meta), MetaMaxPairs)
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		field := fmt.Sprintf("%sMeta[%q]", prefix, k)
		switch {
		case k == "":
			v.bad(field, "empty key")
		case len(k) > MetaKeyMaxLen:
			v.bad(field, "key longer than %d characters", MetaKeyMaxLen)
		case !metaKeyFormat(k):
			v.bad(field, "key has characters other than letters, digits, '_' and '-'")
		case strings.HasPrefix(k, "consul-"):
			v.bad(field, "keys starting with \"consul-\" are reserved")
		}
		if len(meta[k]) > MetaValueMaxLen {
			v.bad(field, "value longer than %d characters", MetaValueMaxLen)
		}
	}
}

func (v *validator) checks(prefix string, checks []CheckDefinition) {
	seen := map[string]int{}
	for i, c := range checks {
		field := fmt.Sprintf("%sChecks[%d]", prefix, i)
		switch c.Status {
		case "", StatusPassing, StatusWarning, StatusCritical:
		default:
			v.bad(field+".Status", "%q is not a check status (want passing, warning or critical)", c.Status)
		}
		if reservedCheckID(c.ID) {
			v.bad(field+".CheckID", "%q is reserved", c.ID)
		}
		if strings.ContainsRune(c.ID, 0) {
			v.bad(field+".CheckID", "contains a NUL byte")
		}
		if j, dup := seen[fold(c.ID)]; dup && c.ID != "" {
			v.bad(field+".CheckID", "%q is also the ID of %sChecks[%d]", c.ID, prefix, j)
		} else {
			seen[fold(c.ID)] = i
		}
	}
}

// reservedCheckID reports IDs only the servers (serfHealth) or the
// maintenance mode may use.
func reservedCheckID(id string) bool {
	f := fold(id)
	return f == fold(SerfCheckID) || f == NodeMaintCheckID || strings.HasPrefix(f, ServiceMaintCheckPrefix)
}

// proxyString returns the string at canonical key key of a Proxy object,
// or "".
func proxyString(raw json.RawMessage, key string) string {
	x, err := decodeValue(raw)
	if err != nil {
		return ""
	}
	m, _ := x.(map[string]any)
	for k, v := range m {
		if canonicalKey(k) == key {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// dnsInvalid matches what a DNS label cannot hold (Consul's InvalidDnsRe).
var dnsInvalid = regexp.MustCompile(`[^A-Za-z0-9\-]+`)

// Warnings returns what is allowed but probably unintended, for the agent
// to log as Consul does: a name or tags that DNS cannot serve.
func (d *ServiceDefinition) Warnings() []string {
	var w []string
	if dnsInvalid.MatchString(d.Name) {
		w = append(w, fmt.Sprintf("service name %q will not be discoverable via DNS due to invalid characters; valid characters are letters, digits and '-'", d.Name))
	} else if len(d.Name) > 63 {
		w = append(w, fmt.Sprintf("service name %q is longer than 63 characters and will not be discoverable via DNS", d.Name))
	}
	for _, t := range d.Tags {
		if dnsInvalid.MatchString(t) {
			w = append(w, fmt.Sprintf("service tag %q will not be discoverable via DNS due to invalid characters; valid characters are letters, digits and '-'", t))
		}
	}
	return w
}
