package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/catalog"
)

// Source is the agent's local view of the catalog; *catalog.View satisfies
// it.
type Source interface {
	// Service returns the current instances of a service (every one, with
	// its checks; the proxy filters the healthy ones).
	Service(ctx context.Context, name string) (catalog.Snapshot, error)
	// Watch signals on the channel whenever the service's result changes
	// (coalesced); calling the function stops the watch.
	Watch(name string) (<-chan struct{}, func())
}

// Protocols.
const (
	ProtocolTCP  = "tcp"
	ProtocolHTTP = "http"
)

// Balancers. The aliases Consul and Envoy use are accepted too (see
// normalizeBalancer).
const (
	BalancerRoundRobin = "round_robin"
	BalancerLeastConn  = "least_conn"
	BalancerP2C        = "p2c"
	BalancerHash       = "hash"
)

// HashOn values: the client's address, or "header:<Name>" (protocol http).
const (
	HashOnClientIP     = "client_ip"
	HashOnHeaderPrefix = "header:"
)

// Defaults.
const (
	// DefaultDrainTimeout bounds how long connections to a removed
	// instance may live on.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultConnectTimeout is Consul's connect_timeout_ms default.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultIdleTimeout closes connections (and keep-alive connections
	// of the L7 path) idle that long, as Envoy's tcp_proxy does.
	DefaultIdleTimeout = time.Hour
	// DefaultRequestTimeout bounds the wait for an upstream's response
	// head on the L7 path (Envoy's route timeout).
	DefaultRequestTimeout = 15 * time.Second
	// DefaultMaxAttempts is how many instances a connection or request
	// tries before giving up.
	DefaultMaxAttempts = 3
	// DefaultRetryBudgetPercent: retries in flight may be at most this
	// share of the requests in flight (at least DefaultMinRetries).
	DefaultRetryBudgetPercent = 20
	DefaultMinRetries         = 3
	// DefaultMaxIdlePerInstance bounds the keep-alive pool per instance.
	DefaultMaxIdlePerInstance = 256
)

// Outlier ejection defaults, as Consul's passive_health_check.
const (
	DefaultOutlierInterval      = 10 * time.Second
	DefaultOutlierMaxFailures   = 5
	DefaultEnforcingConsecutive = 100
	DefaultMaxEjectionPercent   = 10
	DefaultBaseEjectionTime     = 30 * time.Second
)

// Config configures a Manager. Zero values mean the documented default.
type Config struct {
	// Source gives the instances of upstream services. Required.
	Source Source
	// Logger receives this package's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the outrigger_sidecar_* metrics.
	Registerer prometheus.Registerer
	// DrainTimeout bounds how long connections to an instance that left
	// the healthy set (or to a listener that was removed) live on before
	// they are closed. If zero, DefaultDrainTimeout.
	DrainTimeout time.Duration
	// MaxIdlePerInstance bounds the idle keep-alive connections the L7
	// path keeps per instance. If zero, DefaultMaxIdlePerInstance.
	MaxIdlePerInstance int
	// RetryBudgetPercent and MinRetries bound retries in flight per
	// upstream: at most max(MinRetries, RetryBudgetPercent% of the
	// requests in flight). If zero, the defaults.
	RetryBudgetPercent int
	MinRetries         int
	// Now is the clock (outlier ejection); if nil, time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default filled in except
// Source.
func DefaultConfig() Config {
	return Config{
		DrainTimeout:       DefaultDrainTimeout,
		MaxIdlePerInstance: DefaultMaxIdlePerInstance,
		RetryBudgetPercent: DefaultRetryBudgetPercent,
		MinRetries:         DefaultMinRetries,
	}
}

// Validate checks every field and returns one *FieldError per bad field
// (joined with errors.Join).
func (c *Config) Validate() error {
	var errs []error
	if c.Source == nil {
		errs = append(errs, fieldErr("Source", "required"))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fieldErr("DrainTimeout", "%v is negative", c.DrainTimeout))
	}
	if c.MaxIdlePerInstance < 0 {
		errs = append(errs, fieldErr("MaxIdlePerInstance", "%d is negative", c.MaxIdlePerInstance))
	}
	if c.RetryBudgetPercent < 0 || c.RetryBudgetPercent > 100 {
		errs = append(errs, fieldErr("RetryBudgetPercent", "%d is out of range 0-100", c.RetryBudgetPercent))
	}
	if c.MinRetries < 0 {
		errs = append(errs, fieldErr("MinRetries", "%d is negative", c.MinRetries))
	}
	return errors.Join(errs...)
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.MaxIdlePerInstance == 0 {
		c.MaxIdlePerInstance = d.MaxIdlePerInstance
	}
	if c.RetryBudgetPercent == 0 {
		c.RetryBudgetPercent = d.RetryBudgetPercent
	}
	if c.MinRetries == 0 {
		c.MinRetries = d.MinRetries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Spec is the sidecar listeners the agent wants: one ProxySpec per local
// sidecar service.
type Spec struct {
	Proxies []ProxySpec
}

// ProxySpec is one local sidecar service: its inbound listener and its
// upstream listeners.
type ProxySpec struct {
	// ID is the sidecar service's ID, e.g. "web-sidecar-proxy". Required,
	// unique within a Spec; it names the listeners in logs and metrics.
	ID string
	// DestinationServiceName and DestinationServiceID are the service the
	// sidecar fronts (informative).
	DestinationServiceName string
	DestinationServiceID   string
	// Inbound, if set, is the sidecar's own port, forwarding to the local
	// application.
	Inbound *Inbound
	// Upstreams are local listeners, each sending to one service.
	Upstreams []Upstream
}

// Inbound is a sidecar's public listener: it listens on BindAddress:BindPort
// (the sidecar service's address and port in the catalog) and forwards to the
// application at LocalServiceAddress:LocalServicePort.
type Inbound struct {
	// BindAddress defaults to "0.0.0.0".
	BindAddress string
	// BindPort is the sidecar service's port. Required.
	BindPort int
	// LocalServiceAddress defaults to "127.0.0.1".
	LocalServiceAddress string
	// LocalServicePort is the application's port. Required.
	LocalServicePort int
	// Protocol is "tcp" (default) or "http" (per-status metrics and
	// X-Forwarded-For on the way in).
	Protocol string
	// ConnectTimeout to the application. If zero, DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout of connections. If zero, DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RequestTimeout (http) bounds the wait for the response head. If
	// zero, DefaultRequestTimeout; negative means none.
	RequestTimeout time.Duration
}

// Upstream is a local listener sending each connection (or, for http, each
// request) to a healthy instance of DestinationName.
type Upstream struct {
	// DestinationName is the service to send to. Required.
	DestinationName string
	// LocalBindAddress defaults to "127.0.0.1".
	LocalBindAddress string
	// LocalBindPort is required.
	LocalBindPort int
	// Protocol is "tcp" (default) or "http".
	Protocol string
	// Balancer is "round_robin" (default), "least_conn", "p2c" or
	// "hash" (aliases: least_request, power_of_two, random, ring_hash,
	// maglev, consistent_hash).
	Balancer string
	// HashOn is what the hash balancer hashes: "client_ip" (default) or
	// "header:<Name>" (http only).
	HashOn string
	// Tag, if set, keeps only instances with this tag.
	Tag string
	// Meta, if set, keeps only instances whose service meta has every
	// pair.
	Meta map[string]string
	// ConnectTimeout bounds each connection attempt; a failed attempt is
	// retried on another instance. If zero, DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes connections idle that long. If zero,
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RequestTimeout (http) bounds the wait for the response head. If
	// zero, DefaultRequestTimeout; negative means none.
	RequestTimeout time.Duration
	// MaxAttempts is how many instances one connection or request may
	// try. If zero, DefaultMaxAttempts.
	MaxAttempts int
	Limits      Limits
	Outlier     OutlierConfig
}

// Limits bound one upstream. Zero means no limit.
type Limits struct {
	// MaxConnections bounds the connections to the upstream's instances
	// (together) that are in use: for tcp every proxied connection, for
	// http the upstream connections carrying a request (idle keep-alive
	// connections do not count).
	MaxConnections int
	// MaxPendingRequests bounds the connections or requests waiting for
	// one of MaxConnections; beyond it they are refused (L4: closed;
	// L7: 503).
	MaxPendingRequests int
	// MaxConcurrentRequests bounds the requests in flight (http).
	MaxConcurrentRequests int
}

// OutlierConfig is passive outlier ejection, as Consul's
// passive_health_check: an instance with MaxFailures consecutive failures
// (connect failures; and 5xx answers for http) is ejected for
// BaseEjectionTime times the number of times it has been ejected; at most
// MaxEjectionPercent of the instances are ejected at once (at least one
// when the percentage is not zero).
type OutlierConfig struct {
	// Interval: an instance that has gone this long without a failure
	// has its ejection count (the back-off multiplier) lowered by one.
	// If zero, DefaultOutlierInterval.
	Interval time.Duration
	// MaxFailures: consecutive failures before ejection. If zero,
	// DefaultOutlierMaxFailures; negative disables ejection.
	MaxFailures int
	// EnforcingConsecutive5xx is the chance (percent) that reaching
	// MaxFailures ejects. If zero, 100 (turn ejection off with Disabled
	// or a negative MaxFailures).
	EnforcingConsecutive5xx int
	// MaxEjectionPercent: if zero, DefaultMaxEjectionPercent.
	MaxEjectionPercent int
	// BaseEjectionTime: if zero, DefaultBaseEjectionTime.
	BaseEjectionTime time.Duration
	// Disabled turns ejection off.
	Disabled bool
}

func (o OutlierConfig) filled() OutlierConfig {
	if o.Interval == 0 {
		o.Interval = DefaultOutlierInterval
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = DefaultOutlierMaxFailures
	}
	if o.MaxFailures < 0 {
		o.Disabled = true
	}
	if o.EnforcingConsecutive5xx == 0 {
		o.EnforcingConsecutive5xx = DefaultEnforcingConsecutive
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if o.BaseEjectionTime == 0 {
		o.BaseEjectionTime = DefaultBaseEjectionTime
	}
	return o
}

func (o OutlierConfig) validate(field string) []error {
	var errs []error
	if o.Interval < 0 {
		errs = append(errs, fieldErr(field+".interval", "%v is negative", o.Interval))
	}
	if o.EnforcingConsecutive5xx < 0 || o.EnforcingConsecutive5xx > 100 {
		errs = append(errs, fieldErr(field+".enforcing_consecutive_5xx", "%d is out of range 0-100", o.EnforcingConsecutive5xx))
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		errs = append(errs, fieldErr(field+".max_ejection_percent", "%d is out of range 0-100", o.MaxEjectionPercent))
	}
	if o.BaseEjectionTime < 0 {
		errs = append(errs, fieldErr(field+".base_ejection_time", "%v is negative", o.BaseEjectionTime))
	}
	return errs
}

func (l Limits) validate(field string) []error {
	var errs []error
	if l.MaxConnections < 0 {
		errs = append(errs, fieldErr(field+".max_connections", "%d is negative", l.MaxConnections))
	}
	if l.MaxPendingRequests < 0 {
		errs = append(errs, fieldErr(field+".max_pending_requests", "%d is negative", l.MaxPendingRequests))
	}
	if l.MaxConcurrentRequests < 0 {
		errs = append(errs, fieldErr(field+".max_concurrent_requests", "%d is negative", l.MaxConcurrentRequests))
	}
	return errs
}

func normalizeProtocol(p string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "", "tcp":
		return ProtocolTCP, true
	case "http", "http1", "http/1.1":
		return ProtocolHTTP, true
	case "http2", "grpc":
		// Passed through at L4: h2 and gRPC are tunnelled, not parsed.
		return ProtocolTCP, true
	}
	return "", false
}

func normalizeBalancer(b string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(b)) {
	case "", "round_robin", "roundrobin", "rr":
		return BalancerRoundRobin, true
	case "least_conn", "least_connections", "least_request", "leastconn":
		return BalancerLeastConn, true
	case "p2c", "power_of_two", "power_of_two_choices", "random":
		return BalancerP2C, true
	case "hash", "ring_hash", "maglev", "consistent_hash":
		return BalancerHash, true
	}
	return "", false
}

// validateHashOn returns the normalized value.
func validateHashOn(h, protocol, field string) (string, error) {
	h = strings.TrimSpace(h)
	switch {
	case h == "" || strings.EqualFold(h, HashOnClientIP) || strings.EqualFold(h, "source_ip"):
		return HashOnClientIP, nil
	case len(h) > len(HashOnHeaderPrefix) && strings.EqualFold(h[:len(HashOnHeaderPrefix)], HashOnHeaderPrefix):
		name := strings.TrimSpace(h[len(HashOnHeaderPrefix):])
		if !validHeaderName(name) {
			return "", fieldErr(field, "%q: %q is not a header name", h, name)
		}
		if protocol != ProtocolHTTP {
			return "", fieldErr(field, "%q: hashing on a header needs protocol http", h)
		}
		return HashOnHeaderPrefix + name, nil
	}
	return "", fieldErr(field, "%q is neither %q nor \"header:<Name>\"", h, HashOnClientIP)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validate checks one upstream and fills its normalized values in place.
func (u *Upstream) validate(field string) []error {
	var errs []error
	if strings.TrimSpace(u.DestinationName) == "" {
		errs = append(errs, fieldErr(field+".destination_name", "required"))
	}
	if u.LocalBindAddress == "" {
		u.LocalBindAddress = "127.0.0.1"
	}
	if net.ParseIP(u.LocalBindAddress) == nil {
		errs = append(errs, fieldErr(field+".local_bind_address", "%q is not an IP address", u.LocalBindAddress))
	}
	if u.LocalBindPort < 1 || u.LocalBindPort > 65535 {
		errs = append(errs, fieldErr(field+".local_bind_port", "%d is out of range 1-65535", u.LocalBindPort))
	}
	p, ok := normalizeProtocol(u.Protocol)
	if !ok {
		errs = append(errs, fieldErr(field+".protocol", "%q is neither tcp nor http", u.Protocol))
	}
	u.Protocol = p
	b, ok := normalizeBalancer(u.Balancer)
	if !ok {
		errs = append(errs, fieldErr(field+".balancer", "%q is not one of round_robin, least_conn, p2c, hash", u.Balancer))
	}
	u.Balancer = b
	if ok && p != "" {
		h, err := validateHashOn(u.HashOn, p, field+".hash_on")
		if err != nil {
			errs = append(errs, err)
		}
		u.HashOn = h
	}
	errs = append(errs, validateTimeouts(field, u.ConnectTimeout, u.IdleTimeout)...)
	if u.MaxAttempts < 0 {
		errs = append(errs, fieldErr(field+".max_attempts", "%d is negative", u.MaxAttempts))
	}
	errs = append(errs, u.Limits.validate(field+".limits")...)
	errs = append(errs, u.Outlier.validate(field+".passive_health_check")...)
	return errs
}

func validateTimeouts(field string, connect, idle time.Duration) []error {
	var errs []error
	if connect < 0 {
		errs = append(errs, fieldErr(field+".connect_timeout", "%v is negative", connect))
	}
	if idle < 0 {
		errs = append(errs, fieldErr(field+".idle_timeout", "%v is negative", idle))
	}
	return errs
}

func (in *Inbound) validate(field string) []error {
	var errs []error
	if in.BindAddress == "" {
		in.BindAddress = "0.0.0.0"
	}
	if net.ParseIP(in.BindAddress) == nil {
		errs = append(errs, fieldErr(field+".bind_address", "%q is not an IP address", in.BindAddress))
	}
	if in.BindPort < 1 || in.BindPort > 65535 {
		errs = append(errs, fieldErr(field+".bind_port", "%d is out of range 1-65535", in.BindPort))
	}
	if in.LocalServiceAddress == "" {
		in.LocalServiceAddress = "127.0.0.1"
	}
	if in.LocalServicePort < 1 || in.LocalServicePort > 65535 {
		errs = append(errs, fieldErr(field+".local_service_port", "%d is out of range 1-65535", in.LocalServicePort))
	}
	p, ok := normalizeProtocol(in.Protocol)
	if !ok {
		errs = append(errs, fieldErr(field+".protocol", "%q is neither tcp nor http", in.Protocol))
	}
	in.Protocol = p
	errs = append(errs, validateTimeouts(field, in.ConnectTimeout, in.IdleTimeout)...)
	return errs
}

// Validate checks the spec: every proxy and upstream, unique IDs, and no two
// listeners on one port. Errors are *FieldError values joined with
// errors.Join, each naming the proxy and field.
func (s Spec) Validate() error {
	_, err := s.normalized()
	return err
}

func (s Spec) normalized() ([]ProxySpec, error) {
	var errs []error
	out := make([]ProxySpec, len(s.Proxies))
	ids := map[string]bool{}
	for i, p := range s.Proxies {
		p = p.clone()
		where := fmt.Sprintf("proxies[%d]", i)
		if p.ID != "" {
			where = fmt.Sprintf("proxy %q", p.ID)
		}
		var perrs []error
		if p.ID == "" {
			perrs = append(perrs, fieldErr("ID", "required"))
		} else if ids[strings.ToLower(p.ID)] {
			perrs = append(perrs, fieldErr("ID", "%q is given twice", p.ID))
		}
		ids[strings.ToLower(p.ID)] = true
		if p.Inbound != nil {
			perrs = append(perrs, p.Inbound.validate("inbound")...)
		}
		for j := range p.Upstreams {
			perrs = append(perrs, p.Upstreams[j].validate(fmt.Sprintf("upstreams[%d]", j))...)
		}
		for _, e := range perrs {
			var fe *FieldError
			if errors.As(e, &fe) && fe.Where == "" {
				fe.Where = where
			}
		}
		errs = append(errs, perrs...)
		out[i] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (p ProxySpec) clone() ProxySpec {
	if p.Inbound != nil {
		in := *p.Inbound
		p.Inbound = &in
	}
	ups := make([]Upstream, len(p.Upstreams))
	for i, u := range p.Upstreams {
		if u.Meta != nil {
			m := make(map[string]string, len(u.Meta))
			for k, v := range u.Meta {
				m[k] = v
			}
			u.Meta = m
		}
		ups[i] = u
	}
	p.Upstreams = ups
	return p
}
