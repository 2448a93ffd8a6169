package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults, from Consul's where Consul has one.
const (
	DefaultAddr       = "127.0.0.1:8600"
	DefaultDomain     = "consul."
	DefaultDatacenter = "dc1"

	// DefaultRecursorTimeout bounds one exchange with one recursor.
	DefaultRecursorTimeout = 2 * time.Second
	// DefaultMaxConcurrentRecursions bounds the queries being forwarded
	// at once; more are answered SERVFAIL at once, so that a flood of
	// outside names cannot pile up goroutines waiting on recursors.
	DefaultMaxConcurrentRecursions = 256

	// DefaultLookupTimeout bounds a Catalog call: the first query for a
	// service may wait for the view to fetch it, but a stub resolver
	// gives up after about 5s.
	DefaultLookupTimeout = 2 * time.Second

	// TCP connection limits. DNS over TCP is mostly the retry of a
	// truncated UDP answer, so connections are short.
	DefaultTCPReadTimeout    = 2 * time.Second
	DefaultTCPIdleTimeout    = 8 * time.Second // RFC 7766 suggests seconds
	DefaultWriteTimeout      = 2 * time.Second
	DefaultMaxTCPQueries     = 128 // per connection
	DefaultMaxTCPConnections = 512 // at once; more are closed at accept

	// SOA defaults (seconds), Consul's.
	DefaultSOARefresh = 3600
	DefaultSOARetry   = 600
	DefaultSOAExpire  = 86400
	DefaultSOAMinTTL  = 0

	// MaxUDPSize is the largest UDP answer, whatever a client's EDNS0
	// buffer says (Consul's cap: 65535 - 68).
	MaxUDPSize = 65535 - 68
	// udpReadSize is the buffer for incoming UDP queries and the payload
	// size advertised in our OPT records.
	udpReadSize = 4096

	maxTTL = math.MaxInt32 // RFC 2181: TTLs are 31 bits
)

// RecursorStrategy is the order recursors are tried in.
type RecursorStrategy string

const (
	// RecursorSequential tries recursors in the configured order, moving
	// to the next on an error, a timeout or a SERVFAIL/REFUSED answer.
	RecursorSequential RecursorStrategy = "sequential"
	// RecursorRandom tries them in a random order per query, with the
	// same failover.
	RecursorRandom RecursorStrategy = "random"
)

// Config configures a Server. Zero values mean the documented default;
// DefaultConfig returns them filled in.
type Config struct {
	// Addr is the host:port to listen on, UDP and TCP. Port 0 picks one
	// free port for both (see Server.Addr). If empty, DefaultAddr.
	Addr string

	// Domain is the domain answered from the catalog (Consul's domain).
	// If empty, "consul.". A trailing dot is added; case is ignored.
	Domain string
	// AltDomain, if set, is answered exactly like Domain (alt_domain).
	// Answers use the domain the question used. It must not overlap
	// Domain (neither may end with the other).
	AltDomain string
	// Datacenter is this agent's datacenter, the optional label in
	// name.service.<dc>.<domain>. A name with another datacenter gets
	// NXDOMAIN: Consul would forward it to that datacenter's servers, an
	// Outrigger cluster has one. If empty, "dc1".
	Datacenter string
	// NSAddress is the IP of this agent, answered as ns.<domain>, the
	// target of the NS record at the domain's apex. If empty, the host of
	// Addr when that is a specific IP; otherwise ns.<domain> has no
	// address records.
	NSAddress string

	// NodeTTL is the TTL of node, addr and NS records (node_ttl).
	// Default 0: clients do not cache.
	NodeTTL time.Duration
	// ServiceTTL maps service names to the TTL of their records
	// (service_ttl): an exact name wins, then the longest key ending in
	// "*" that prefixes the name ("web*"), then "*". Default 0.
	ServiceTTL map[string]time.Duration

	// OnlyPassing leaves instances in warning out of answers
	// (only_passing). Critical instances are never answered.
	OnlyPassing bool
	// ARecordLimit, if positive, caps the address records of an A or
	// AAAA answer for a service, after shuffling, over UDP and TCP
	// (a_record_limit). SRV answers are not capped.
	ARecordLimit int
	// UDPAnswerLimit, if positive, caps the answer records of a UDP
	// answer to a query without EDNS0 (Consul's udp_answer_limit; Consul
	// defaults to 3, we default to no cap: the 512-byte limit applies
	// anyway and sets TC).
	UDPAnswerLimit int
	// EnableTruncate sets TC when UDPAnswerLimit cut an answer, so the
	// client retries over TCP (enable_truncate). An answer cut to fit the
	// client's UDP buffer always has TC set, whatever this says.
	EnableTruncate bool

	// Recursors are the resolvers ("ip" or "ip:port", port 53 by
	// default) names outside Domain and AltDomain are forwarded to. With
	// none, those names are REFUSED: the agent is never an open resolver.
	Recursors []string
	// RecursorTimeout bounds one exchange with one recursor before the
	// next is tried. If zero, DefaultRecursorTimeout (2s).
	RecursorTimeout time.Duration
	// RecursorStrategy is RecursorSequential (the default when empty) or
	// RecursorRandom.
	RecursorStrategy RecursorStrategy
	// MaxConcurrentRecursions: see DefaultMaxConcurrentRecursions.
	// If zero, that default.
	MaxConcurrentRecursions int

	// SOA holds the SOA record's timers (soa).
	SOA SOAConfig

	// LookupTimeout bounds a Catalog call. If zero, DefaultLookupTimeout.
	LookupTimeout time.Duration
	// TCPReadTimeout bounds the first query on a TCP connection, and
	// TCPIdleTimeout the wait for each further one. WriteTimeout bounds
	// writing an answer. If zero, the Default* values.
	TCPReadTimeout time.Duration
	TCPIdleTimeout time.Duration
	WriteTimeout   time.Duration
	// MaxTCPQueries is how many queries one TCP connection may send
	// before it is closed. If zero, DefaultMaxTCPQueries.
	MaxTCPQueries int
	// MaxTCPConnections caps the open TCP connections; further ones are
	// closed as soon as they are accepted. If zero,
	// DefaultMaxTCPConnections.
	MaxTCPConnections int

	// Logger receives this package's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the outrigger_dns_* metrics. Never the
	// global registry by default: several agents share a process in tests.
	Registerer prometheus.Registerer

	// now is replaced by tests (the SOA serial is the current time).
	now func() time.Time
}

// SOAConfig holds the SOA timers, in seconds. Zero Refresh, Retry and
// Expire mean the defaults (3600, 600, 86400); MinTTL's default is 0.
type SOAConfig struct {
	Refresh uint32
	Retry   uint32
	Expire  uint32
	// MinTTL is the SOA minimum, the TTL clients cache NXDOMAIN and
	// NODATA answers for (RFC 2308), and the SOA record's own TTL.
	MinTTL uint32
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Addr:                    DefaultAddr,
		Domain:                  DefaultDomain,
		Datacenter:              DefaultDatacenter,
		RecursorTimeout:         DefaultRecursorTimeout,
		RecursorStrategy:        RecursorSequential,
		MaxConcurrentRecursions: DefaultMaxConcurrentRecursions,
		SOA: SOAConfig{
			Refresh: DefaultSOARefresh,
			Retry:   DefaultSOARetry,
			Expire:  DefaultSOAExpire,
			MinTTL:  DefaultSOAMinTTL,
		},
		LookupTimeout:     DefaultLookupTimeout,
		TCPReadTimeout:    DefaultTCPReadTimeout,
		TCPIdleTimeout:    DefaultTCPIdleTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		MaxTCPQueries:     DefaultMaxTCPQueries,
		MaxTCPConnections: DefaultMaxTCPConnections,
	}
}

// Validate checks every field and returns one *ConfigError per bad field
// (joined with errors.Join). Zero values are valid: they mean the default.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{field, fmt.Sprintf(format, args...)})
	}
	if c.Addr != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err != nil {
			bad("Addr", "%q is not host:port", c.Addr)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("Addr", "%q has a bad port", c.Addr)
		}
	}
	for _, d := range []struct{ field, v string }{{"Domain", c.Domain}, {"AltDomain", c.AltDomain}} {
		if d.v == "" {
			continue
		}
		if !validDomain(d.v) {
			bad(d.field, "%q is not a domain name", d.v)
		}
	}
	if c.AltDomain != "" {
		dom, alt := normDomain(orDefault(c.Domain, DefaultDomain)), normDomain(c.AltDomain)
		if dom == alt || strings.HasSuffix(dom, "."+alt) || strings.HasSuffix(alt, "."+dom) {
			bad("AltDomain", "%q overlaps Domain %q", c.AltDomain, orDefault(c.Domain, DefaultDomain))
		}
	}
	if c.Datacenter != "" && !validName(strings.ToLower(c.Datacenter)) {
		bad("Datacenter", "%q is not a DNS label (letters, digits, '-', '_')", c.Datacenter)
	}
	if c.NSAddress != "" {
		if _, err := netip.ParseAddr(c.NSAddress); err != nil {
			bad("NSAddress", "%q is not an IP address", c.NSAddress)
		}
	}
	checkTTL := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, "%v is negative", d)
		} else if d/time.Second > maxTTL {
			bad(field, "%v is above the largest TTL (%ds)", d, maxTTL)
		}
	}
	checkTTL("NodeTTL", c.NodeTTL)
	for _, k := range sortedKeys(c.ServiceTTL) {
		field := fmt.Sprintf("ServiceTTL[%q]", k)
		if k == "" || strings.Contains(strings.TrimSuffix(k, "*"), "*") {
			bad(field, "a key is a service name, a prefix ending in '*', or '*'")
			continue
		}
		checkTTL(field, c.ServiceTTL[k])
	}
	for _, n := range []struct {
		field string
		v     int
	}{
		{"ARecordLimit", c.ARecordLimit}, {"UDPAnswerLimit", c.UDPAnswerLimit},
		{"MaxConcurrentRecursions", c.MaxConcurrentRecursions},
		{"MaxTCPQueries", c.MaxTCPQueries}, {"MaxTCPConnections", c.MaxTCPConnections},
	} {
		if n.v < 0 {
			bad(n.field, "%d is negative", n.v)
		}
	}
	for i, r := range c.Recursors {
		if _, err := normRecursor(r); err != nil {
			bad(fmt.Sprintf("Recursors[%d]", i), "%q is not an IP address with an optional port", r)
		}
	}
	switch c.RecursorStrategy {
	case "", RecursorSequential, RecursorRandom:
	default:
		bad("RecursorStrategy", "%q is neither %q nor %q", c.RecursorStrategy, RecursorSequential, RecursorRandom)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"RecursorTimeout", c.RecursorTimeout}, {"LookupTimeout", c.LookupTimeout},
		{"TCPReadTimeout", c.TCPReadTimeout}, {"TCPIdleTimeout", c.TCPIdleTimeout},
		{"WriteTimeout", c.WriteTimeout},
	} {
		if d.v < 0 {
			bad(d.field, "%v is negative", d.v)
		}
	}
	for _, s := range []struct {
		field string
		v     uint32
	}{
		{"SOA.Refresh", c.SOA.Refresh}, {"SOA.Retry", c.SOA.Retry},
		{"SOA.Expire", c.SOA.Expire}, {"SOA.MinTTL", c.SOA.MinTTL},
	} {
		if s.v > maxTTL {
			bad(s.field, "%d is above %d", s.v, maxTTL)
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.Addr = orDefault(c.Addr, DefaultAddr)
	c.Domain = normDomain(orDefault(c.Domain, DefaultDomain))
	if c.AltDomain != "" {
		c.AltDomain = normDomain(c.AltDomain)
	}
	c.Datacenter = strings.ToLower(orDefault(c.Datacenter, DefaultDatacenter))
	if c.NSAddress == "" {
		if host, _, err := net.SplitHostPort(c.Addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
				c.NSAddress = a.String()
			}
		}
	}
	rs := make([]string, 0, len(c.Recursors))
	for _, r := range c.Recursors {
		if n, err := normRecursor(r); err == nil {
			rs = append(rs, n)
		}
	}
	c.Recursors = rs
	if c.RecursorTimeout == 0 {
		c.RecursorTimeout = DefaultRecursorTimeout
	}
	if c.RecursorStrategy == "" {
		c.RecursorStrategy = RecursorSequential
	}
	if c.MaxConcurrentRecursions == 0 {
		c.MaxConcurrentRecursions = DefaultMaxConcurrentRecursions
	}
	if c.SOA.Refresh == 0 {
		c.SOA.Refresh = DefaultSOARefresh
	}
	if c.SOA.Retry == 0 {
		c.SOA.Retry = DefaultSOARetry
	}
	if c.SOA.Expire == 0 {
		c.SOA.Expire = DefaultSOAExpire
	}
	if c.LookupTimeout == 0 {
		c.LookupTimeout = DefaultLookupTimeout
	}
	if c.TCPReadTimeout == 0 {
		c.TCPReadTimeout = DefaultTCPReadTimeout
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxTCPQueries == 0 {
		c.MaxTCPQueries = DefaultMaxTCPQueries
	}
	if c.MaxTCPConnections == 0 {
		c.MaxTCPConnections = DefaultMaxTCPConnections
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// normDomain lowercases d and makes it fully qualified.
func normDomain(d string) string { return dns.Fqdn(strings.ToLower(d)) }

func validDomain(d string) bool {
	d = normDomain(d)
	if d == "." || strings.ContainsAny(d, `\ `) {
		return false
	}
	_, ok := dns.IsDomainName(d)
	return ok
}

// normRecursor turns "ip" or "ip:port" into "ip:port".
func normRecursor(r string) (string, error) {
	if ap, err := netip.ParseAddrPort(r); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(r, "[]"))
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ttlTable resolves ServiceTTL for a service name without allocating.
type ttlTable struct {
	exact    map[string]uint32
	prefixes []prefixTTL // longest first
	def      uint32
}

type prefixTTL struct {
	prefix string
	ttl    uint32
}

func newTTLTable(m map[string]time.Duration) ttlTable {
	t := ttlTable{exact: make(map[string]uint32)}
	for k, d := range m {
		k = strings.ToLower(k)
		ttl := seconds(d)
		switch {
		case k == "*":
			t.def = ttl
		case strings.HasSuffix(k, "*"):
			t.prefixes = append(t.prefixes, prefixTTL{strings.TrimSuffix(k, "*"), ttl})
		default:
			t.exact[k] = ttl
		}
	}
	sort.Slice(t.prefixes, func(i, j int) bool {
		a, b := t.prefixes[i].prefix, t.prefixes[j].prefix
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	return t
}

// lookup returns the TTL for a lowercased service name.
func (t *ttlTable) lookup(name string) uint32 {
	if ttl, ok := t.exact[name]; ok {
		return ttl
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.ttl
		}
	}
	return t.def
}

// seconds converts a validated TTL to whole seconds.
func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s < 0 {
		return 0
	}
	if s > maxTTL {
		return maxTTL
	}
	return uint32(s)
}
