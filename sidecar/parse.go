package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseProxyConfig reads a Consul sidecar service's "Proxy" object (JSON;
// CamelCase or snake_case keys, as Consul accepts) into a ProxySpec:
//
//	local_service_address, local_service_port → Inbound (BindPort is left
//	    zero: the caller sets it, and ID, from the sidecar service's port)
//	config{protocol, local_connect_timeout_ms, local_request_timeout_ms,
//	    local_idle_timeout_ms, bind_address, bind_port}
//	upstreams[]{destination_name, local_bind_address, local_bind_port,
//	    config{protocol, connect_timeout_ms, idle_timeout_ms,
//	    request_timeout_ms, balancer, hash_on, tag, meta, max_attempts,
//	    limits{max_connections, max_pending_requests,
//	    max_concurrent_requests}, passive_health_check{interval,
//	    max_failures, enforcing_consecutive_5xx, max_ejection_percent,
//	    base_ejection_time}}}
//
// Consul's Envoy-only settings (keys starting with envoy_, mesh_gateway,
// expose, access_logs) are accepted and ignored; features this proxy lacks
// (Unix sockets, transparent mode, prepared queries, other datacenters,
// peers, namespaces) are an error wrapping ErrUnsupported; any other key is
// an unknown-field error. Errors are *FieldError values naming the field
// and the value.
func ParseProxyConfig(raw json.RawMessage) (ProxySpec, error) {
	var spec ProxySpec
	o, err := readObject("", raw)
	if err != nil {
		return spec, err
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	spec.DestinationServiceName, _, e = o.str("destination_service_name")
	add(e)
	spec.DestinationServiceID, _, e = o.str("destination_service_id")
	add(e)
	in := &Inbound{}
	in.LocalServiceAddress, _, e = o.str("local_service_address")
	add(e)
	if in.LocalServiceAddress != "" && net.ParseIP(in.LocalServiceAddress) == nil {
		add(fieldErr("local_service_address", "%q is not an IP address", in.LocalServiceAddress))
	}
	port, field, hasPort, e := o.integer("local_service_port")
	add(e)
	if hasPort && e == nil && (port < 1 || port > 65535) {
		add(fieldErr(field, "%d is out of range 1-65535", port))
	}
	in.LocalServicePort = port
	if s, field, e := o.str("local_service_socket_path"); e != nil {
		add(e)
	} else if s != "" {
		add(unsupported(field, "%q: Unix socket services are not supported", s))
	}
	if s, field, e := o.str("mode"); e != nil {
		add(e)
	} else if s != "" && !strings.EqualFold(s, "direct") {
		add(unsupported(field, "%q: only direct mode is supported", s))
	}
	if tp, ok, e := o.object("transparent_proxy"); e != nil {
		add(e)
	} else if ok && len(tp.fields) > 0 {
		add(unsupported(tp.path, "transparent proxying is not supported"))
	}
	o.drop("mesh_gateway", "expose", "access_logs", "envoy_extensions")
	if c, ok, e := o.object("config"); e != nil {
		add(e)
	} else if ok {
		in.Protocol, field, e = c.str("protocol")
		add(e)
		if _, ok := normalizeProtocol(in.Protocol); !ok {
			add(fieldErr(field, "%q is neither tcp nor http", in.Protocol))
		}
		in.ConnectTimeout, _, e = c.millis("local_connect_timeout_ms")
		add(e)
		in.RequestTimeout, _, e = c.millis("local_request_timeout_ms")
		add(e)
		in.IdleTimeout, _, e = c.millis("local_idle_timeout_ms")
		add(e)
		in.BindAddress, field, e = c.str("bind_address")
		add(e)
		if in.BindAddress != "" && net.ParseIP(in.BindAddress) == nil {
			add(fieldErr(field, "%q is not an IP address", in.BindAddress))
		}
		bp, field, hasBP, e := c.integer("bind_port")
		add(e)
		if hasBP && e == nil && (bp < 1 || bp > 65535) {
			add(fieldErr(field, "%d is out of range 1-65535", bp))
		}
		in.BindPort = bp
		c.dropPrefix("envoy_")
		errs = append(errs, c.rest()...)
	}
	if in.LocalServicePort != 0 {
		spec.Inbound = in
	}
	list, _, e := o.list("upstreams")
	add(e)
	for i, raw := range list {
		u, uerrs := parseUpstream(fmt.Sprintf("upstreams[%d]", i), raw)
		errs = append(errs, uerrs...)
		if len(uerrs) == 0 {
			spec.Upstreams = append(spec.Upstreams, u)
		}
	}
	errs = append(errs, o.rest()...)
	if len(errs) > 0 {
		return ProxySpec{}, errors.Join(errs...)
	}
	return spec, nil
}

func parseUpstream(path string, raw json.RawMessage) (Upstream, []error) {
	var u Upstream
	o, err := readObject(path, raw)
	if err != nil {
		return u, []error{err}
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	var field string
	if s, field, e := o.str("destination_type"); e != nil {
		add(e)
	} else if s != "" && !strings.EqualFold(s, "service") {
		add(unsupported(field, "%q: only service destinations are supported", s))
	}
	u.DestinationName, field, e = o.str("destination_name")
	add(e)
	if e == nil && strings.TrimSpace(u.DestinationName) == "" {
		add(fieldErr(field, "required"))
	}
	for _, k := range []string{"destination_namespace", "destination_partition"} {
		if s, field, e := o.str(k); e != nil {
			add(e)
		} else if s != "" && !strings.EqualFold(s, "default") {
			add(unsupported(field, "%q: namespaces and partitions are not supported", s))
		}
	}
	for _, k := range []string{"destination_peer", "datacenter", "local_bind_socket_path", "local_bind_socket_mode"} {
		if s, field, e := o.str(k); e != nil {
			add(e)
		} else if s != "" {
			add(unsupported(field, "%q is not supported", s))
		}
	}
	u.LocalBindAddress, field, e = o.str("local_bind_address")
	add(e)
	if u.LocalBindAddress != "" && net.ParseIP(u.LocalBindAddress) == nil {
		add(fieldErr(field, "%q is not an IP address", u.LocalBindAddress))
	}
	port, field, has, e := o.integer("local_bind_port")
	add(e)
	if e == nil && (!has || port < 1 || port > 65535) {
		if !has {
			add(fieldErr(field, "required"))
		} else {
			add(fieldErr(field, "%d is out of range 1-65535", port))
		}
	}
	u.LocalBindPort = port
	o.drop("mesh_gateway", "centrally_configured")
	if c, ok, e := o.object("config"); e != nil {
		add(e)
	} else if ok {
		errs = append(errs, parseUpstreamConfig(c, &u)...)
	}
	errs = append(errs, o.rest()...)
	if len(errs) == 0 {
		// Normalize (protocol, balancer, hash_on) and cross-check.
		v := u
		for _, err := range v.validate(path) {
			errs = append(errs, err)
		}
		u = v
	}
	return u, errs
}

func parseUpstreamConfig(c *jsonObject, u *Upstream) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	var field string
	u.Protocol, field, e = c.str("protocol")
	add(e)
	if _, ok := normalizeProtocol(u.Protocol); !ok {
		add(fieldErr(field, "%q is neither tcp nor http", u.Protocol))
	}
	u.ConnectTimeout, _, e = c.millis("connect_timeout_ms")
	add(e)
	u.IdleTimeout, _, e = c.millis("idle_timeout_ms")
	add(e)
	u.RequestTimeout, _, e = c.millis("request_timeout_ms")
	add(e)
	u.Balancer, field, e = c.str("balancer")
	add(e)
	if _, ok := normalizeBalancer(u.Balancer); !ok {
		add(fieldErr(field, "%q is not one of round_robin, least_conn, p2c, hash", u.Balancer))
	}
	u.HashOn, _, e = c.str("hash_on")
	add(e)
	u.Tag, _, e = c.str("tag")
	add(e)
	u.Meta, _, e = c.stringMap("meta")
	add(e)
	n, field, _, e := c.integer("max_attempts")
	add(e)
	if n < 0 {
		add(fieldErr(field, "%d is negative", n))
	}
	u.MaxAttempts = n
	if l, ok, e := c.object("limits"); e != nil {
		add(e)
	} else if ok {
		for _, k := range []struct {
			key string
			dst *int
		}{{"max_connections", &u.Limits.MaxConnections}, {"max_pending_requests", &u.Limits.MaxPendingRequests}, {"max_concurrent_requests", &u.Limits.MaxConcurrentRequests}} {
			n, field, _, e := l.integer(k.key)
			add(e)
			if n < 0 {
				add(fieldErr(field, "%d is negative", n))
			}
			*k.dst = n
		}
		errs = append(errs, l.rest()...)
	}
	if p, ok, e := c.object("passive_health_check"); e != nil {
		add(e)
	} else if ok {
		u.Outlier.Interval, _, e = p.duration("interval")
		add(e)
		u.Outlier.BaseEjectionTime, _, e = p.duration("base_ejection_time")
		add(e)
		n, _, _, e := p.integer("max_failures")
		add(e)
		u.Outlier.MaxFailures = n
		for _, k := range []struct {
			key string
			dst *int
		}{{"enforcing_consecutive_5xx", &u.Outlier.EnforcingConsecutive5xx}, {"max_ejection_percent", &u.Outlier.MaxEjectionPercent}} {
			n, field, _, e := p.integer(k.key)
			add(e)
			if e == nil && (n < 0 || n > 100) {
				add(fieldErr(field, "%d is out of range 0-100", n))
			}
			*k.dst = n
		}
		errs = append(errs, p.rest()...)
	}
	c.dropPrefix("envoy_")
	errs = append(errs, c.rest()...)
	return errs
}

// ParseUpstreamFlag reads the -upstream flag's value:
//
//	api:9191                   → api on 127.0.0.1:9191, tcp
//	api:10.0.0.1:9191          → api on 10.0.0.1:9191
//	api:9191:http              → protocol http
//	api:[::1]:9191:http        → IPv6 bind address
func ParseUpstreamFlag(s string) (Upstream, error) {
	var u Upstream
	bad := func(format string, args ...any) (Upstream, error) {
		return Upstream{}, &FieldError{Where: "-upstream " + strconv.Quote(s), Msg: fmt.Sprintf(format, args...)}
	}
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return bad("want name:port, name:address:port or name:port:protocol")
	}
	if strings.ContainsAny(name, " \t/[]") {
		return bad("%q is not a service name", name)
	}
	u.DestinationName = name
	var parts []string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return bad("unclosed [ in the address")
		}
		parts = append(parts, rest[1:end])
		rest = rest[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return bad("want a port after the address")
		}
		parts = append(parts, strings.Split(rest[1:], ":")...)
	} else {
		parts = strings.Split(rest, ":")
	}
	var addr, port, proto string
	isPort := func(p string) bool {
		_, err := strconv.Atoi(p)
		return err == nil
	}
	switch len(parts) {
	case 1:
		port = parts[0]
	case 2:
		if isPort(parts[0]) && !isPort(parts[1]) {
			port, proto = parts[0], parts[1]
		} else {
			addr, port = parts[0], parts[1]
		}
	case 3:
		addr, port, proto = parts[0], parts[1], parts[2]
	default:
		return bad("want name:port, name:address:port or name:port:protocol")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return bad("port %q is not a number in 1-65535", port)
	}
	u.LocalBindPort = n
	if addr != "" {
		if net.ParseIP(addr) == nil {
			return bad("%q is not an IP address", addr)
		}
		u.LocalBindAddress = addr
	}
	if proto != "" {
		p, ok := normalizeProtocol(proto)
		if !ok {
			return bad("protocol %q is neither tcp nor http", proto)
		}
		u.Protocol = p
	}
	for _, err := range u.validate("upstream") {
		return Upstream{}, &FieldError{Where: "-upstream " + strconv.Quote(s), Msg: err.Error()}
	}
	return u, nil
}
