package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// IngressConfig is the ingress listeners: the cluster's front door. The
// agent reads it from its configuration file or the K/V store and gives it
// to Manager.ApplyIngress; ParseIngressConfig reads the JSON form:
//
//	{"listeners": [
//	  {"port": 8080, "protocol": "http", "routes": [
//	    {"hosts": ["api.example.com"], "path_prefix": "/v1",
//	     "headers": {"X-Env": "staging"}, "service": "api", "meta": {"env": "staging"}},
//	    {"path_prefix": "/", "splits": [
//	      {"service": "web", "weight": 90},
//	      {"service": "web", "tag": "canary", "weight": 10}]}]},
//	  {"port": 5432, "protocol": "tcp", "service": "db"}]}
//
// A listener may also carry the upstream settings of an upstream's config
// object (balancer, hash_on, connect_timeout_ms, idle_timeout_ms,
// request_timeout_ms, max_attempts, limits{...}, passive_health_check{...});
// they apply to every service it sends to.
type IngressConfig struct {
	Listeners []IngressListener
}

// IngressListener is one port of the ingress.
type IngressListener struct {
	// Name names the listener in logs and metrics; default
	// "ingress-<port>".
	Name string
	// BindAddress defaults to "0.0.0.0".
	BindAddress string
	// Port is required.
	Port int
	// Protocol is "http" (default) or "tcp".
	Protocol string
	// Routes (http) are tried in order; the first match wins. A request
	// no route matches gets a 404.
	Routes []IngressRoute
	// Target (tcp) is where every connection goes.
	Target IngressTarget
	// Upstream settings for every service this listener sends to; only
	// Balancer, HashOn, the timeouts, MaxAttempts, Limits and Outlier
	// are used.
	Upstream Upstream
}

// IngressRoute matches requests by host, path prefix and headers, and sends
// them to a service (or to weighted splits between several targets).
type IngressRoute struct {
	// Name names the route in metrics; default "<listener>/<index>".
	Name string
	// Hosts match the Host header (port ignored, case-insensitive); an
	// entry "*.example.com" matches any subdomain. Empty matches any.
	Hosts []string
	// PathPrefix matches the request path; empty means "/".
	PathPrefix string
	// Headers must all be present with these values; a value of "*"
	// matches any value.
	Headers map[string]string
	// Target is the destination when there are no Splits.
	Target IngressTarget
	// Splits share requests between targets by weight.
	Splits []IngressSplit
}

// IngressTarget is a service, optionally filtered by tag and service meta.
type IngressTarget struct {
	Service string
	Tag     string
	Meta    map[string]string
}

// IngressSplit is a weighted target of a route.
type IngressSplit struct {
	IngressTarget
	// Weight is relative to the route's other splits; 1-10000.
	Weight int
}

// ParseIngressConfig reads the JSON form of an IngressConfig (snake_case
// keys; CamelCase accepted) and validates it. Unknown keys are an error
// naming the key; so are port clashes and a route without a service.
// Errors are *FieldError values joined with errors.Join.
func ParseIngressConfig(data []byte) (*IngressConfig, error) {
	errs := func(list []error) error {
		for _, e := range list {
			var fe *FieldError
			if errors.As(e, &fe) && fe.Where == "" {
				fe.Where = "ingress"
			}
		}
		return errors.Join(list...)
	}
	o, err := readObject("", data)
	if err != nil {
		return nil, errs([]error{err})
	}
	cfg := &IngressConfig{}
	var list []error
	add := func(err error) {
		if err != nil {
			list = append(list, err)
		}
	}
	raws, _, e := o.list("listeners")
	add(e)
	for i, raw := range raws {
		l, lerrs := parseIngressListener(fmt.Sprintf("listeners[%d]", i), raw)
		list = append(list, lerrs...)
		cfg.Listeners = append(cfg.Listeners, l)
	}
	list = append(list, o.rest()...)
	if len(list) > 0 {
		return nil, errs(list)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parseIngressListener(path string, raw json.RawMessage) (IngressListener, []error) {
	var l IngressListener
	o, err := readObject(path, raw)
	if err != nil {
		return l, []error{err}
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	l.Name, _, e = o.str("name")
	add(e)
	l.BindAddress, _, e = o.str("bind_address")
	add(e)
	l.Port, _, _, e = o.integer("port")
	add(e)
	l.Protocol, _, e = o.str("protocol")
	add(e)
	errs = append(errs, parseTarget(o, &l.Target)...)
	routes, _, e := o.list("routes")
	add(e)
	for i, raw := range routes {
		r, rerrs := parseIngressRoute(fmt.Sprintf("%s.routes[%d]", path, i), raw)
		errs = append(errs, rerrs...)
		l.Routes = append(l.Routes, r)
	}
	// Upstream settings, in the upstream config's keys.
	l.Upstream.DestinationName = "-"
	errs = append(errs, parseUpstreamConfig(o, &l.Upstream)...)
	l.Upstream.DestinationName = ""
	return l, errs
}

func parseTarget(o *jsonObject, t *IngressTarget) []error {
	var errs []error
	var e error
	if t.Service, _, e = o.str("service"); e != nil {
		errs = append(errs, e)
	}
	if t.Tag, _, e = o.str("tag"); e != nil {
		errs = append(errs, e)
	}
	if t.Meta, _, e = o.stringMap("meta"); e != nil {
		errs = append(errs, e)
	}
	return errs
}

func parseIngressRoute(path string, raw json.RawMessage) (IngressRoute, []error) {
	var r IngressRoute
	o, err := readObject(path, raw)
	if err != nil {
		return r, []error{err}
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var e error
	r.Name, _, e = o.str("name")
	add(e)
	if h, _, e := o.str("host"); e != nil {
		add(e)
	} else if h != "" {
		r.Hosts = append(r.Hosts, h)
	}
	hosts, field, e := o.list("hosts")
	add(e)
	for i, h := range hosts {
		s, err := rawString(h)
		if err != nil {
			add(fieldErr(fmt.Sprintf("%s[%d]", field, i), "%v", err))
			continue
		}
		r.Hosts = append(r.Hosts, s)
	}
	r.PathPrefix, _, e = o.str("path_prefix")
	add(e)
	r.Headers, _, e = o.stringMap("headers")
	add(e)
	errs = append(errs, parseTarget(o, &r.Target)...)
	splits, _, e := o.list("splits")
	add(e)
	for i, raw := range splits {
		so, err := readObject(fmt.Sprintf("%s.splits[%d]", path, i), raw)
		if err != nil {
			add(err)
			continue
		}
		var s IngressSplit
		errs = append(errs, parseTarget(so, &s.IngressTarget)...)
		var has bool
		s.Weight, field, has, e = so.integer("weight")
		add(e)
		if !has && e == nil {
			add(fieldErr(field, "required"))
		}
		errs = append(errs, so.rest()...)
		r.Splits = append(r.Splits, s)
	}
	errs = append(errs, o.rest()...)
	return r, errs
}

// Validate checks the configuration and fills its defaults in place: ports,
// protocols, clashes between listeners, routes without a service, weights.
// Errors are *FieldError values joined with errors.Join.
func (c *IngressConfig) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Where: "ingress", Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	names := map[string]string{}
	var binds []bindKey
	var bindFields []string
	for i := range c.Listeners {
		l := &c.Listeners[i]
		path := fmt.Sprintf("listeners[%d]", i)
		if l.Port < 1 || l.Port > 65535 {
			add(path+".port", "%d is out of range 1-65535", l.Port)
		}
		if l.BindAddress == "" {
			l.BindAddress = "0.0.0.0"
		}
		if net.ParseIP(l.BindAddress) == nil {
			add(path+".bind_address", "%q is not an IP address", l.BindAddress)
		} else if l.Port >= 1 && l.Port <= 65535 {
			k := bindKey{net.ParseIP(l.BindAddress), l.Port}
			for j, o := range binds {
				if k.clashes(o) {
					add(path+".port", "%d clashes with %s (%s)", l.Port, bindFields[j], o)
				}
			}
			binds = append(binds, k)
			bindFields = append(bindFields, path)
		}
		if l.Name == "" {
			l.Name = fmt.Sprintf("ingress-%d", l.Port)
		}
		if prev, dup := names[l.Name]; dup {
			add(path+".name", "%q is also the name of %s", l.Name, prev)
		}
		names[l.Name] = path
		switch strings.ToLower(strings.TrimSpace(l.Protocol)) {
		case "", "http":
			l.Protocol = ProtocolHTTP
			if len(l.Routes) == 0 {
				add(path+".routes", "an http listener needs at least one route")
			}
			if l.Target.Service != "" || l.Target.Tag != "" || len(l.Target.Meta) > 0 {
				add(path+".service", "an http listener sends by its routes; put the service in a route")
			}
		case "tcp":
			l.Protocol = ProtocolTCP
			if len(l.Routes) > 0 {
				add(path+".routes", "a tcp listener has no routes; give it a service")
			}
			if strings.TrimSpace(l.Target.Service) == "" {
				add(path+".service", "a tcp listener needs a service")
			}
		default:
			add(path+".protocol", "%q is neither http nor tcp", l.Protocol)
		}
		for j := range l.Routes {
			r := &l.Routes[j]
			rpath := fmt.Sprintf("%s.routes[%d]", path, j)
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s/%d", l.Name, j)
			}
			if r.PathPrefix == "" {
				r.PathPrefix = "/"
			}
			if !strings.HasPrefix(r.PathPrefix, "/") {
				add(rpath+".path_prefix", "%q does not start with /", r.PathPrefix)
			}
			for k, h := range r.Hosts {
				if h == "" || strings.ContainsAny(h, " /\t") {
					add(fmt.Sprintf("%s.hosts[%d]", rpath, k), "%q is not a host name", h)
				}
			}
			for name := range r.Headers {
				if !validHeaderName(name) {
					add(rpath+".headers", "%q is not a header name", name)
				}
			}
			hasTarget := strings.TrimSpace(r.Target.Service) != ""
			switch {
			case hasTarget && len(r.Splits) > 0:
				add(rpath, "a route has either a service or splits, not both")
			case !hasTarget && len(r.Splits) == 0:
				add(rpath, "a route needs a service or splits")
			case !hasTarget && (r.Target.Tag != "" || len(r.Target.Meta) > 0):
				add(rpath, "tag and meta filter a service; the route has none")
			}
			for k, s := range r.Splits {
				spath := fmt.Sprintf("%s.splits[%d]", rpath, k)
				if strings.TrimSpace(s.Service) == "" {
					add(spath+".service", "required")
				}
				if s.Weight < 1 || s.Weight > 10000 {
					add(spath+".weight", "%d is out of range 1-10000", s.Weight)
				}
			}
		}
		u := l.Upstream
		u.DestinationName = "-"
		u.LocalBindAddress = l.BindAddress
		u.LocalBindPort = 1
		u.Protocol = l.Protocol
		if u.Protocol == "" {
			u.Protocol = ProtocolTCP
		}
		for _, err := range u.validate(path) {
			errs = append(errs, err)
		}
		l.Upstream.Balancer, l.Upstream.HashOn = u.Balancer, u.HashOn
	}
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Where == "" {
			fe.Where = "ingress"
		}
	}
	return errors.Join(errs...)
}

// bindKey is a listener's address for clash checks: a wildcard address
// clashes with every address on its port.
type bindKey struct {
	ip   net.IP
	port int
}

func (k bindKey) clashes(o bindKey) bool {
	return k.port == o.port && (k.ip.IsUnspecified() || o.ip.IsUnspecified() || k.ip.Equal(o.ip))
}

func (k bindKey) String() string {
	return net.JoinHostPort(k.ip.String(), fmt.Sprint(k.port))
}

// timeoutOr returns d, or def when d is zero; negative means none (0).
func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
