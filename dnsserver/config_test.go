package dnsserver

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"domain without dot", func(c *Config) { c.Domain = "Example.Internal" }, ""},
		{"bad domain", func(c *Config) { c.Domain = "a..b" }, "Domain"},
		{"root domain", func(c *Config) { c.Domain = "." }, "Domain"},
		{"alt domain", func(c *Config) { c.AltDomain = "alt.example" }, ""},
		{"alt equals domain", func(c *Config) { c.AltDomain = "CONSUL" }, "AltDomain"},
		{"alt below domain", func(c *Config) { c.AltDomain = "x.consul." }, "AltDomain"},
		{"alt above domain", func(c *Config) { c.Domain = "a.b."; c.AltDomain = "b" }, "AltDomain"},
		{"bad dc", func(c *Config) { c.Datacenter = "dc 1" }, "Datacenter"},
		{"bad NS address", func(c *Config) { c.NSAddress = "ns1" }, "NSAddress"},
		{"negative node TTL", func(c *Config) { c.NodeTTL = -time.Second }, "NodeTTL"},
		{"huge TTL", func(c *Config) { c.NodeTTL = 100 * 365 * 24 * time.Hour }, "NodeTTL"},
		{"service TTL keys", func(c *Config) {
			c.ServiceTTL = map[string]time.Duration{"*": time.Second, "web*": 2 * time.Second, "db": 0}
		}, ""},
		{"service TTL star inside", func(c *Config) { c.ServiceTTL = map[string]time.Duration{"w*b": time.Second} }, `ServiceTTL["w*b"]`},
		{"service TTL negative", func(c *Config) { c.ServiceTTL = map[string]time.Duration{"web": -1} }, `ServiceTTL["web"]`},
		{"negative A limit", func(c *Config) { c.ARecordLimit = -1 }, "ARecordLimit"},
		{"negative UDP limit", func(c *Config) { c.UDPAnswerLimit = -1 }, "UDPAnswerLimit"},
		{"recursors", func(c *Config) { c.Recursors = []string{"127.0.0.1", "127.0.0.2:5353", "[::1]:53", "::1"} }, ""},
		{"recursor host name", func(c *Config) { c.Recursors = []string{"127.0.0.1", "dns.google"} }, "Recursors[1]"},
		{"recursor bad port", func(c *Config) { c.Recursors = []string{"127.0.0.1:x"} }, "Recursors[0]"},
		{"strategy", func(c *Config) { c.RecursorStrategy = "roundrobin" }, "RecursorStrategy"},
		{"negative timeout", func(c *Config) { c.RecursorTimeout = -1 }, "RecursorTimeout"},
		{"negative idle", func(c *Config) { c.TCPIdleTimeout = -1 }, "TCPIdleTimeout"},
		{"negative conns", func(c *Config) { c.MaxTCPConnections = -1 }, "MaxTCPConnections"},
		{"SOA too big", func(c *Config) { c.SOA.Expire = 1 << 31 }, "SOA.Expire"},
		{"bad addr", func(c *Config) { c.Addr = "127.0.0.1" }, "Addr"},
		{"bad port", func(c *Config) { c.Addr = "127.0.0.1:70000" }, "Addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Errorf("got %v, want valid", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want a ConfigError for %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "dnsserver: config: "+tc.field+": ") {
				t.Errorf("message %q does not name the field first", err)
			}
		})
	}
	// Every bad field is reported.
	c := Config{ARecordLimit: -1, NodeTTL: -1, RecursorStrategy: "x"}
	if err := c.Validate(); err == nil || strings.Count(err.Error(), "dnsserver: config:") != 3 {
		t.Errorf("three bad fields: got %v", err)
	}
	if _, err := New(Config{Domain: "a..b"}, NewMemCatalog()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad config: got %v, want ErrInvalidConfig", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Domain: "Example.Internal", AltDomain: "ALT", Datacenter: "DC2", Addr: "0.0.0.0:53",
		Recursors: []string{"127.0.0.1", "[::1]:5353"}}.withDefaults()
	if c.Domain != "example.internal." || c.AltDomain != "alt." || c.Datacenter != "dc2" {
		t.Errorf("names: got %q %q %q, want lowercase and fully qualified", c.Domain, c.AltDomain, c.Datacenter)
	}
	if c.NSAddress != "" {
		t.Errorf("NSAddress from 0.0.0.0: got %q, want none", c.NSAddress)
	}
	if c.Recursors[0] != "127.0.0.1:53" || c.Recursors[1] != "[::1]:5353" {
		t.Errorf("recursors: got %q", c.Recursors)
	}
	d := DefaultConfig()
	z := Config{}.withDefaults()
	if z.Addr != d.Addr || z.Domain != d.Domain || z.Datacenter != d.Datacenter || z.SOA != d.SOA ||
		z.RecursorTimeout != d.RecursorTimeout || z.RecursorStrategy != d.RecursorStrategy ||
		z.MaxTCPQueries != d.MaxTCPQueries || z.TCPIdleTimeout != d.TCPIdleTimeout || z.LookupTimeout != d.LookupTimeout {
		t.Errorf("zero Config's defaults differ from DefaultConfig:\n%+v\n%+v", z, d)
	}
	if d.SOA != (SOAConfig{Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: 0}) || d.RecursorTimeout != 2*time.Second {
		t.Errorf("DefaultConfig: SOA %+v recursor timeout %v", d.SOA, d.RecursorTimeout)
	}
	if z.NSAddress != "127.0.0.1" {
		t.Errorf("NSAddress from the default Addr: got %q, want 127.0.0.1", z.NSAddress)
	}
}

func TestTTLTable(t *testing.T) {
	tt := newTTLTable(map[string]time.Duration{
		"*": 5 * time.Second, "web*": 10 * time.Second, "web-api*": 20 * time.Second, "Web": 30 * time.Second,
	})
	for name, want := range map[string]uint32{"web": 30, "webx": 10, "web-api-v2": 20, "web-api": 20, "db": 5, "we": 5} {
		if got := tt.lookup(name); got != want {
			t.Errorf("%s: got %d, want %d", name, got, want)
		}
	}
	if empty := newTTLTable(nil); empty.lookup("web") != 0 {
		t.Errorf("no map: got %d, want 0", empty.lookup("web"))
	}
}
