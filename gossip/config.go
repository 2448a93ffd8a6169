package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPort is the gossip port (Consul's serf_lan), used by DefaultConfig
// and for join addresses given without a port.
const DefaultPort = 8301

// Profiles select memberlist's timing presets.
const (
	// ProfileLAN is memberlist.DefaultLANConfig: probe every 1s, 500ms probe
	// timeout, suspicion 4*log10(N) probe intervals.
	ProfileLAN = "lan"
	// ProfileWAN is memberlist.DefaultWANConfig: probe every 5s, 3s timeout.
	ProfileWAN = "wan"
	// ProfileLocal is memberlist.DefaultLocalConfig, for loopback clusters
	// (-dev and tests): 200ms probe timeout, faster gossip.
	ProfileLocal = "local"
)

// deadNodeReclaimTime is how long a failed member's name stays bound to its
// old address; after it a restarted agent with a new address (a container
// rescheduled elsewhere) can take the name over.
const deadNodeReclaimTime = 30 * time.Second

// Config configures a Gossip. Zero values mean the documented default;
// DefaultConfig returns them filled in, with BindPort 8301.
type Config struct {
	// NodeName is this agent's unique name in the cluster.
	// If empty, the hostname is used.
	NodeName string

	// BindAddr is the IP address gossip listens on (UDP and TCP).
	// If empty, "0.0.0.0" is used.
	BindAddr string
	// BindPort is the gossip port. 0 picks a free port (tests); Addr reports
	// it. DefaultConfig sets DefaultPort.
	BindPort int

	// AdvertiseAddr is the IP address other members use to reach this one.
	// If empty, BindAddr is used, or when BindAddr is 0.0.0.0 the first
	// private IPv4 address of this host (memberlist's rule).
	AdvertiseAddr string
	// AdvertisePort is the port other members use. If zero, the bound port.
	AdvertisePort int

	// Tags are this member's metadata (role, datacenter, ports, version; see
	// the Tag* constants). Their encoding must fit in memberlist's 512-byte
	// node metadata together with a 9-byte header; Validate reports the
	// size if not.
	Tags map[string]string

	// SecretKey enables gossip encryption (AES-GCM) with a 16, 24 or 32-byte
	// key. Every member must use the same key. If nil, gossip is plain text
	// and encrypted peers are refused.
	SecretKey []byte

	// Profile selects memberlist timings: ProfileLAN, ProfileWAN or
	// ProfileLocal. If empty, ProfileLAN is used.
	Profile string

	// DataDir, if set, is where the known peers are kept
	// (DataDir/gossip/peers.json) so that a restarted agent rejoins them.
	// If empty, nothing is written.
	DataDir string

	// RetryJoin lists host[:port] addresses (port DefaultPort if omitted)
	// that Start joins in the background, retrying with exponential back-off
	// until one succeeds.
	RetryJoin []string
	// RetryInterval is the first wait after a failed join attempt; it
	// doubles after each failure. If zero, 5s is used.
	RetryInterval time.Duration
	// RetryMaxInterval caps the back-off. If zero, 60s is used (or
	// RetryInterval if that is longer).
	RetryMaxInterval time.Duration
	// RetryMax is the number of join attempts before giving up. If zero,
	// Start retries forever.
	RetryMax int

	// ReconnectInterval is how often the reconnect loop tries to join again
	// the last known address of one failed member, picked at random (see
	// the package documentation). If zero, 30s is used (Serf's default).
	ReconnectInterval time.Duration

	// ReapFailed is how long a failed member stays in Members before it is
	// forgotten, and so how long the reconnect loop keeps trying it: it is
	// Serf's ReconnectTimeout. If zero, 72h is used (Serf's default).
	ReapFailed time.Duration
	// ReapLeft is how long a member that left stays in Members. If zero,
	// 24h is used.
	ReapLeft time.Duration
	// ReapInterval is how often old members are looked for. If zero, 15s is
	// used.
	ReapInterval time.Duration

	// Logger receives this package's logs and memberlist's own lines.
	// If nil, nothing is logged.
	Logger *slog.Logger

	// Registerer, if set, gets the outrigger_gossip_* metrics. Never the
	// global registry by default: several agents share a process in tests.
	Registerer prometheus.Registerer

	// Tune, if set, adjusts memberlist's configuration after the profile's
	// defaults are applied: tests shorten probe intervals with it, the
	// benchmark turns compression off. Fields this package owns are set
	// after it and cannot be changed: Name, the bind and advertise
	// addresses, SecretKey, the verify flags, Transport, Logger, Events,
	// Delegate and the delegate protocol versions. If nil, the profile is
	// used as is.
	Tune func(*memberlist.Config)
}

// DefaultConfig returns a Config with every default filled in and
// BindPort DefaultPort. NodeName is left empty (the hostname is used).
func DefaultConfig() Config {
	return Config{
		BindAddr:          "0.0.0.0",
		BindPort:          DefaultPort,
		Profile:           ProfileLAN,
		RetryInterval:     5 * time.Second,
		RetryMaxInterval:  60 * time.Second,
		ReconnectInterval: 30 * time.Second,
		ReapFailed:        72 * time.Hour,
		ReapLeft:          24 * time.Hour,
		ReapInterval:      15 * time.Second,
	}
}

// Validate checks every field and returns one *ConfigError per bad field
// (joined with errors.Join), each naming the field and the bad value.
// Zero values are valid: they mean the default.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, configErr(field, format, args...))
	}

	if len(c.NodeName) > 128 {
		bad("NodeName", "length %d, limit 128", len(c.NodeName))
	} else if strings.ContainsFunc(c.NodeName, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
	}) {
		bad("NodeName", "%q contains white space, a control character or invalid UTF-8", c.NodeName)
	}
	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		bad("BindAddr", "%q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("BindPort", "%d out of range 0-65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" {
		if ip := net.ParseIP(c.AdvertiseAddr); ip == nil {
			bad("AdvertiseAddr", "%q is not an IP address", c.AdvertiseAddr)
		} else if ip.IsUnspecified() {
			bad("AdvertiseAddr", "%q is unspecified, other members could not reach it", c.AdvertiseAddr)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		bad("AdvertisePort", "%d out of range 0-65535", c.AdvertisePort)
	}
	if err := checkTags(c.Tags); err != nil {
		errs = append(errs, &ConfigError{Field: "Tags", Msg: err.Error(), Err: err})
	}
	if len(c.SecretKey) > 0 {
		if msg := checkKeyLen(len(c.SecretKey)); msg != "" {
			bad("SecretKey", "%s", msg)
		}
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		bad("Profile", "%q unknown, want %q, %q or %q", c.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	for i, a := range c.RetryJoin {
		if _, err := normalizeAddr(a); err != nil {
			bad("RetryJoin["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RetryInterval", c.RetryInterval},
		{"RetryMaxInterval", c.RetryMaxInterval},
		{"ReconnectInterval", c.ReconnectInterval},
		{"ReapFailed", c.ReapFailed},
		{"ReapLeft", c.ReapLeft},
		{"ReapInterval", c.ReapInterval},
	} {
		if d.v < 0 {
			bad(d.name, "%v is negative", d.v)
		}
	}
	if c.RetryInterval > 0 && c.RetryMaxInterval > 0 && c.RetryMaxInterval < c.RetryInterval {
		bad("RetryMaxInterval", "%v is less than RetryInterval %v", c.RetryMaxInterval, c.RetryInterval)
	}
	if c.RetryMax < 0 {
		bad("RetryMax", "%d is negative (0 means retry forever)", c.RetryMax)
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero values replaced by defaults.
// It only fails if the hostname is needed and unavailable.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.NodeName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return c, fmt.Errorf("gossip: NodeName: empty and no hostname to use instead (%v): %w", err, ErrInvalidConfig)
		}
		c.NodeName = host
	}
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	if c.Profile == "" {
		c.Profile = d.Profile
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = d.RetryInterval
	}
	if c.RetryMaxInterval == 0 {
		c.RetryMaxInterval = max(d.RetryMaxInterval, c.RetryInterval)
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = d.ReconnectInterval
	}
	if c.ReapFailed == 0 {
		c.ReapFailed = d.ReapFailed
	}
	if c.ReapLeft == 0 {
		c.ReapLeft = d.ReapLeft
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = d.ReapInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Tags = maps.Clone(c.Tags)
	c.SecretKey = append([]byte(nil), c.SecretKey...)
	c.RetryJoin = append([]string(nil), c.RetryJoin...)
	return c, nil
}

// memberlistConfig maps a defaulted Config onto memberlist's. The caller
// adds the transport, logger and delegates.
func (c *Config) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	if c.Tune != nil {
		c.Tune(mc)
	}
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.SecretKey = c.SecretKey
	mc.Keyring = nil
	// Both are true in every profile; set here because key mismatch
	// detection relies on them.
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	// The delegate protocol covers the metadata encoding and leave intents.
	mc.DelegateProtocolVersion = metaVersion
	mc.DelegateProtocolMin = metaVersion
	mc.DelegateProtocolMax = metaVersion
	return mc
}

// normalizeAddr turns "host", "host:port", "[v6]:port", "v6" or
// "name/host:port" (memberlist's form naming the node) into an address
// with a port, DefaultPort if none was given.
func normalizeAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	name := ""
	if i := strings.Index(s, "/"); i >= 0 {
		name, s = s[:i+1], s[i+1:]
		if name == "/" {
			return "", fmt.Errorf("%q: empty node name before /", name+s)
		}
	}
	orig := name + s
	if s == "" {
		return "", fmt.Errorf("empty address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host name, IPv4, IPv6 or [IPv6].
		h := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if strings.ContainsAny(h, "[]") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
			return "", fmt.Errorf("%q: %v", orig, err)
		}
		host, port = h, strconv.Itoa(DefaultPort)
	}
	if host == "" {
		return "", fmt.Errorf("%q: empty host", orig)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: port %q is not a number in 1-65535", orig, port)
	}
	return name + net.JoinHostPort(host, port), nil
}
