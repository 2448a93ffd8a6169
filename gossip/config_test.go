package gossip

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // "" = valid
	}{
		{"default", func(c *Config) {}, ""},
		{"zero value", func(c *Config) { *c = Config{} }, ""},
		{"node name too long", func(c *Config) { c.NodeName = strings.Repeat("n", 129) },
			"gossip: NodeName: length 129, limit 128"},
		{"node name with space", func(c *Config) { c.NodeName = "web 1" },
			`gossip: NodeName: "web 1" contains white space, a control character or invalid UTF-8`},
		{"bind addr", func(c *Config) { c.BindAddr = "localhost" },
			`gossip: BindAddr: "localhost" is not an IP address`},
		{"bind port", func(c *Config) { c.BindPort = 70000 },
			"gossip: BindPort: 70000 out of range 0-65535"},
		{"advertise addr", func(c *Config) { c.AdvertiseAddr = "10.0.0" },
			`gossip: AdvertiseAddr: "10.0.0" is not an IP address`},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" },
			`gossip: AdvertiseAddr: "0.0.0.0" is unspecified, other members could not reach it`},
		{"advertise port", func(c *Config) { c.AdvertisePort = -1 },
			"gossip: AdvertisePort: -1 out of range 0-65535"},
		{"tags too large", func(c *Config) { c.Tags = map[string]string{"k": strings.Repeat("v", 600)} },
			"gossip: Tags: encoded size 613 bytes, limit 512"},
		{"tag key empty", func(c *Config) { c.Tags = map[string]string{"": "v"} },
			"gossip: Tags: empty key"},
		{"secret key", func(c *Config) { c.SecretKey = []byte("1234567") },
			"gossip: SecretKey: length 7, want 16, 24 or 32 bytes"},
		{"profile", func(c *Config) { c.Profile = "fast" },
			`gossip: Profile: "fast" unknown, want "lan", "wan" or "local"`},
		{"retry join", func(c *Config) { c.RetryJoin = []string{"10.0.0.1", "a:b:c"} },
			`gossip: RetryJoin[1]: "a:b:c": address a:b:c: too many colons in address`},
		{"retry join port", func(c *Config) { c.RetryJoin = []string{"10.0.0.1:0"} },
			`gossip: RetryJoin[0]: "10.0.0.1:0": port "0" is not a number in 1-65535`},
		{"retry join empty", func(c *Config) { c.RetryJoin = []string{" "} },
			`gossip: RetryJoin[0]: empty address`},
		{"retry interval", func(c *Config) { c.RetryInterval = -time.Second },
			"gossip: RetryInterval: -1s is negative"},
		{"retry max interval", func(c *Config) { c.RetryMaxInterval = time.Second },
			"gossip: RetryMaxInterval: 1s is less than RetryInterval 5s"},
		{"retry max", func(c *Config) { c.RetryMax = -1 },
			"gossip: RetryMax: -1 is negative (0 means retry forever)"},
		{"reconnect interval", func(c *Config) { c.ReconnectInterval = -time.Second },
			"gossip: ReconnectInterval: -1s is negative"},
		{"reap failed", func(c *Config) { c.ReapFailed = -time.Hour },
			"gossip: ReapFailed: -1h0m0s is negative"},
		{"reap left", func(c *Config) { c.ReapLeft = -time.Hour },
			"gossip: ReapLeft: -1h0m0s is negative"},
		{"reap interval", func(c *Config) { c.ReapInterval = -time.Second },
			"gossip: ReapInterval: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig")
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	c := Config{BindPort: -1, SecretKey: []byte{1}, Profile: "x"}
	err := c.Validate()
	for _, field := range []string{"BindPort", "SecretKey", "Profile"} {
		if err == nil || !strings.Contains(err.Error(), "gossip: "+field+":") {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "BindPort" {
		t.Errorf("errors.As ConfigError: %+v", ce)
	}
}

func TestTagsTooLargeWrapsSentinel(t *testing.T) {
	c := Config{Tags: map[string]string{"k": strings.Repeat("v", 600)}}
	if err := c.Validate(); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("got %v, want ErrTagsTooLarge", err)
	}
}

func TestWithDefaults(t *testing.T) {
	c, err := Config{NodeName: "n", RetryInterval: 90 * time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.BindAddr != "0.0.0.0" || c.Profile != ProfileLAN || c.ReapFailed != 72*time.Hour ||
		c.ReapLeft != 24*time.Hour || c.ReapInterval != 15*time.Second || c.ReconnectInterval != 30*time.Second || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.RetryMaxInterval != 90*time.Second {
		t.Errorf("RetryMaxInterval = %v, want RetryInterval 90s when that is above 60s", c.RetryMaxInterval)
	}
	c, _ = Config{}.withDefaults()
	if c.NodeName == "" || c.RetryInterval != 5*time.Second || c.RetryMaxInterval != time.Minute {
		t.Errorf("hostname and retry defaults: %q %v %v", c.NodeName, c.RetryInterval, c.RetryMaxInterval)
	}
}

func TestMemberlistConfigProfiles(t *testing.T) {
	for profile, probe := range map[string]time.Duration{
		ProfileLAN: time.Second, ProfileWAN: 5 * time.Second, ProfileLocal: time.Second,
	} {
		c, _ := Config{NodeName: "n", Profile: profile, SecretKey: make([]byte, 16)}.withDefaults()
		mc := c.memberlistConfig()
		if mc.ProbeInterval != probe || !mc.GossipVerifyIncoming || !mc.GossipVerifyOutgoing || len(mc.SecretKey) != 16 {
			t.Errorf("%s: probe %v verify %v/%v key %d", profile, mc.ProbeInterval,
				mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing, len(mc.SecretKey))
		}
	}
	c, _ := Config{NodeName: "n", Profile: ProfileLocal}.withDefaults()
	if mc := c.memberlistConfig(); mc.ProbeTimeout != 200*time.Millisecond || mc.SuspicionMult != 3 {
		t.Errorf("local profile: probe timeout %v suspicion mult %d", mc.ProbeTimeout, mc.SuspicionMult)
	}
}

func TestNormalizeAddr(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"10.0.0.1", "10.0.0.1:8301", ""},
		{"10.0.0.1:7000", "10.0.0.1:7000", ""},
		{" consul.service ", "consul.service:8301", ""},
		{"::1", "[::1]:8301", ""},
		{"[::1]", "[::1]:8301", ""},
		{"[::1]:7000", "[::1]:7000", ""},
		{"node1/10.0.0.1", "node1/10.0.0.1:8301", ""},
		{"", "", "empty address"},
		{"/10.0.0.1", "", "empty node name"},
		{":7000", "", "empty host"},
		{"h:x", "", `port "x"`},
		{"h:65536", "", `port "65536"`},
		{"a:b:c", "", "too many colons"},
	}
	for _, tt := range tests {
		got, err := normalizeAddr(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("normalizeAddr(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
