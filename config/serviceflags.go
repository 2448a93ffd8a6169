package config

import (
	"flag"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// defaultCheckInterval is the interval of an -check-http or -check-tcp
// check given without -check-interval.
const defaultCheckInterval = 10 * time.Second

// serviceFlags are the flags that register one service without a file,
// for the one-container-one-service case:
//
//	agent run -service web -service-port 8080 -check-http http://127.0.0.1:8080/health
//
// Load turns them into one more entry of Config.Extra["service"], so the
// agent registers it exactly like a `service { }` block of a file.
type serviceFlags struct {
	fs       *flag.FlagSet
	name     string
	port     int
	tags     listValue
	address  string
	http     string
	tcp      string
	ttl      time.Duration
	interval time.Duration
	timeout  time.Duration
	// The sidecar proxy: -upstream (repeatable) and -sidecar-port.
	upstreams   listValue
	sidecarPort int
}

func (s *serviceFlags) register(fs *flag.FlagSet) {
	s.fs = fs
	fs.StringVar(&s.name, "service", "", "register a service of this `name` with this agent (like a service { } block of a file)")
	fs.IntVar(&s.port, "service-port", 0, "the -service's port")
	fs.Var(&s.tags, "service-tag", "a `tag` of the -service; repeatable")
	fs.StringVar(&s.address, "service-address", "", "the -service's `address`, if not the node's")
	fs.StringVar(&s.http, "check-http", "", "check the -service with an HTTP GET of this `URL` (2xx passing, 429 warning, else critical)")
	fs.StringVar(&s.tcp, "check-tcp", "", "check the -service by connecting to this `host:port`")
	fs.DurationVar(&s.ttl, "check-ttl", 0, "check the -service with a TTL check the application updates at least this often (PUT /v1/agent/check/pass/service:NAME)")
	fs.DurationVar(&s.interval, "check-interval", 0, "how often -check-http or -check-tcp runs (default 10s)")
	fs.DurationVar(&s.timeout, "check-timeout", 0, "how long one -check-http or -check-tcp run may take (default 10s)")
	fs.Var(&s.upstreams, "upstream", "give the -service a sidecar proxy with this upstream: `NAME:PORT` (also NAME:ADDR:PORT, and :tcp or :http at the end) listens on 127.0.0.1:PORT and sends each connection to a healthy instance of NAME; repeatable")
	fs.IntVar(&s.sidecarPort, "sidecar-port", 0, "give the -service a sidecar proxy listening on this `port` for the mesh (default: the first free of 21000-21255)")
}

// set reports which of the service flags the command line gave, in the
// order they are registered.
func (s *serviceFlags) set() []string {
	given := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var out []string
	for _, name := range []string{"service", "service-port", "service-tag", "service-address",
		"check-http", "check-tcp", "check-ttl", "check-interval", "check-timeout", "upstream", "sidecar-port"} {
		if given[name] {
			out = append(out, name)
		}
	}
	return out
}

// definition returns the service the flags describe as a configuration
// section (nil when -service was not given), or the problems with the
// flags' combination, each naming the flag.
func (s *serviceFlags) definition() (map[string]any, []error) {
	given := s.set()
	if len(given) == 0 {
		return nil, nil
	}
	var errs []error
	bad := func(flagName, format string, args ...any) {
		errs = append(errs, fieldErr(ErrInvalid, "-"+flagName, format, args...))
	}
	if !slices.Contains(given, "service") {
		for _, name := range given {
			bad(name, "needs -service NAME")
		}
		return nil, errs
	}
	if s.name == "" {
		bad("service", "empty name")
	}
	if s.port < 0 || s.port > 65535 {
		bad("service-port", "%d is out of range 0-65535", s.port)
	}
	var kinds []string
	for _, k := range []string{"check-http", "check-tcp", "check-ttl"} {
		if slices.Contains(given, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) > 1 {
		bad(kinds[1], "cannot be given with -%s: the -service has one check", kinds[0])
	}
	if slices.Contains(given, "check-http") && s.http == "" {
		bad("check-http", "empty URL")
	}
	if slices.Contains(given, "check-tcp") && s.tcp == "" {
		bad("check-tcp", "empty address")
	}
	if slices.Contains(given, "check-ttl") && s.ttl <= 0 {
		bad("check-ttl", "%v must be positive", s.ttl)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"check-interval", s.interval}, {"check-timeout", s.timeout}} {
		if !slices.Contains(given, d.name) {
			continue
		}
		switch {
		case d.v <= 0:
			bad(d.name, "%v must be positive", d.v)
		case s.http == "" && s.tcp == "":
			bad(d.name, "needs -check-http or -check-tcp (a TTL check has no interval)")
		}
	}
	var upstreams []any
	for _, u := range s.upstreams {
		up, err := ParseUpstream(u)
		if err != nil {
			bad("upstream", "%v", err)
			continue
		}
		upstreams = append(upstreams, up)
	}
	if slices.Contains(given, "sidecar-port") && (s.sidecarPort < 1 || s.sidecarPort > 65535) {
		bad("sidecar-port", "%d is out of range 1-65535", s.sidecarPort)
	}
	if len(errs) > 0 {
		return nil, errs
	}

	m := map[string]any{"name": s.name}
	if len(upstreams) > 0 || s.sidecarPort != 0 {
		sc := map[string]any{"proxy": map[string]any{"upstreams": append([]any{}, upstreams...)}}
		if s.sidecarPort != 0 {
			sc["port"] = s.sidecarPort
		}
		m["connect"] = map[string]any{"sidecar_service": sc}
	}
	if s.port != 0 {
		m["port"] = s.port
	}
	if len(s.tags) > 0 {
		tags := make([]any, len(s.tags))
		for i, t := range s.tags {
			tags[i] = t
		}
		m["tags"] = tags
	}
	if s.address != "" {
		m["address"] = s.address
	}
	check := map[string]any{}
	switch {
	case s.http != "":
		check["http"] = s.http
	case s.tcp != "":
		check["tcp"] = s.tcp
	case s.ttl > 0:
		check["ttl"] = s.ttl.String()
	}
	if s.http != "" || s.tcp != "" {
		interval := s.interval
		if interval == 0 {
			interval = defaultCheckInterval
		}
		check["interval"] = interval.String()
		if s.timeout > 0 {
			check["timeout"] = s.timeout.String()
		}
	}
	if len(check) > 0 {
		m["check"] = check
	}
	return m, nil
}

// addFlagService appends the -service flags' service to c.Extra["service"].
func addFlagService(c *Config, svc map[string]any) {
	if svc == nil {
		return
	}
	extra := make(map[string]any, len(c.Extra)+1)
	maps.Copy(extra, c.Extra)
	list, _ := extra["service"].([]any)
	extra["service"] = append(slices.Clip(list), svc)
	c.Extra = extra
}

// ParseUpstream reads an -upstream value, NAME:PORT, NAME:ADDR:PORT, either
// followed by :tcp or :http, into a Consul upstream object
// (destination_name, local_bind_address, local_bind_port, config.protocol).
// An IPv6 ADDR goes in brackets: api:[::1]:9191.
func ParseUpstream(v string) (map[string]any, error) {
	name, rest, ok := strings.Cut(v, ":")
	if !ok || name == "" || rest == "" {
		return nil, fmt.Errorf("%q: want NAME:PORT or NAME:ADDR:PORT", v)
	}
	if strings.ContainsAny(name, " /\t") {
		return nil, fmt.Errorf("%q: service name %q has a space or slash", v, name)
	}
	proto := ""
	for _, p := range []string{"tcp", "http"} {
		if r, found := strings.CutSuffix(rest, ":"+p); found {
			rest, proto = r, p
			break
		}
	}
	addr, portStr := "", rest
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		addr, portStr = rest[:i], rest[i+1:]
		if h, found := strings.CutPrefix(addr, "["); found {
			if addr, found = strings.CutSuffix(h, "]"); !found {
				return nil, fmt.Errorf("%q: address %q has an unclosed bracket", v, rest[:i])
			}
		}
		if net.ParseIP(addr) == nil {
			return nil, fmt.Errorf("%q: %q is not an IP address", v, addr)
		}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("%q: port %q is not a number in 1-65535", v, portStr)
	}
	up := map[string]any{"destination_name": name, "local_bind_port": port}
	if addr != "" {
		up["local_bind_address"] = addr
	}
	if proto != "" {
		up["config"] = map[string]any{"protocol": proto}
	}
	return up, nil
}
