package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string // "" for valid; lines joined by \n otherwise
	}{
		{"valid", func(c *Config) {}, ""},
		{"dev without data dir", func(c *Config) { *c = DevConfig(); c.NodeName = "n" }, ""},
		{"ipv6", func(c *Config) { c.BindAddr, c.ClientAddr, c.AdvertiseAddr = "::", "::1", "2001:db8::1" }, ""},
		{"good join addresses", func(c *Config) {
			c.RetryJoin = []string{"10.0.0.1", "10.0.0.1:8301", "consul.internal", "consul.internal:8301", "my_host.", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:8301"}
		}, ""},
		{"good keys", func(c *Config) {
			c.Encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=" // 32 bytes
		}, ""},
		{"16-byte key", func(c *Config) { c.Encrypt = "AAAAAAAAAAAAAAAAAAAAAA==" }, ""},
		{"24-byte key", func(c *Config) { c.Encrypt = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, ""},
		{"server bootstrap", func(c *Config) { c.Server, c.BootstrapExpect = true, 3 }, ""},
		{"same port on different addresses", func(c *Config) {
			c.BindAddr = "10.0.0.1"
			c.Ports.SerfLAN = 8500 // http is on 127.0.0.1
		}, ""},
		{"server port unused on a client", func(c *Config) { c.Ports.Server = c.Ports.HTTP }, ""},

		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir: required (or run with -dev)"},
		{"empty node name", func(c *Config) { c.NodeName = "" }, "node_name: empty"},
		{"node name chars", func(c *Config) { c.NodeName = "web_1.prod" }, `node_name: "web_1.prod" must be letters, digits and '-' (it is a DNS label)`},
		{"node name length", func(c *Config) { c.NodeName = strings.Repeat("a", 64) }, `node_name: "` + strings.Repeat("a", 64) + `" is longer than 63 characters (it is a DNS label)`},
		{"empty datacenter", func(c *Config) { c.Datacenter = "" }, "datacenter: empty"},
		{"datacenter case", func(c *Config) { c.Datacenter = "DC1" }, `datacenter: "DC1" must be lowercase letters, digits, '-' and '_'`},
		{"ingress name", func(c *Config) { c.IngressName = "edge/1" }, `ingress_name: "edge/1" must be at most 128 letters, digits, '-', '_' and '.' (it names a K/V key)`},
		{"bind addr", func(c *Config) { c.BindAddr = "{{ GetPrivateIP }}" }, `bind_addr: "{{ GetPrivateIP }}" is not an IP address`},
		{"client addr", func(c *Config) { c.ClientAddr = "localhost" }, `client_addr: "localhost" is not an IP address`},
		{"client addr list", func(c *Config) { c.ClientAddr = "127.0.0.1 10.0.0.1" }, `client_addr: "127.0.0.1 10.0.0.1" is not an IP address`},
		{"advertise addr", func(c *Config) { c.AdvertiseAddr = "10.0.0.300" }, `advertise_addr: "10.0.0.300" is not an IP address`},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, `advertise_addr: "0.0.0.0" cannot be advertised: other agents cannot reach it`},
		{"port zero", func(c *Config) { c.Ports.HTTP = 0 }, "ports.http: 0 is out of range 1-65535"},
		{"ports out of range", func(c *Config) { c.Ports.DNS, c.Ports.SerfLAN, c.Ports.Server = -1, 65536, 70000 },
			"ports.dns: -1 is out of range 1-65535\nports.serf_lan: 65536 is out of range 1-65535\nports.server: 70000 is out of range 1-65535"},
		{"http equals dns", func(c *Config) { c.Ports.DNS = c.Ports.HTTP }, "ports.dns: 8500 is also ports.http on 127.0.0.1 (tcp)"},
		{"serf equals server", func(c *Config) { c.Server = true; c.Ports.Server = c.Ports.SerfLAN }, "ports.server: 8301 is also ports.serf_lan on 0.0.0.0 (tcp)"},
		{"serf on wildcard equals dns", func(c *Config) { c.Ports.SerfLAN = c.Ports.DNS },
			"ports.serf_lan: 8600 on 0.0.0.0 overlaps ports.dns on 127.0.0.1 (tcp and udp)"},
		{"ipv6 wildcard covers ipv4", func(c *Config) { c.BindAddr = "::"; c.Ports.SerfLAN = c.Ports.HTTP },
			"ports.serf_lan: 8500 on :: overlaps ports.http on 127.0.0.1 (tcp)"},
		{"bootstrap without server", func(c *Config) { c.BootstrapExpect = 3 }, "bootstrap_expect: 3 needs server = true (-server)"},
		{"negative bootstrap", func(c *Config) { c.Server, c.BootstrapExpect = true, -1 }, "bootstrap_expect: -1 is negative"},
		{"join addresses", func(c *Config) {
			c.RetryJoin = []string{"", "host:abc", "a:b:c", "host:0", "bad host", "[10.0.0.1]", "provider=aws tag_key=consul", "[::1]:99999"}
		}, strings.Join([]string{
			`retry_join[0]: "" is not host[:port]: empty`,
			`retry_join[1]: "host:abc" is not host[:port]: port "abc" is not 1-65535`,
			`retry_join[2]: "a:b:c" is not host[:port]: cannot split host and port`,
			`retry_join[3]: "host:0" is not host[:port]: port "0" is not 1-65535`,
			`retry_join[4]: "bad host" is not host[:port]: not an IP address or host name`,
			`retry_join[5]: "[10.0.0.1]" is not host[:port]: brackets must hold an IPv6 address`,
			`retry_join[6]: "provider=aws tag_key=consul" is not host[:port]: cloud auto-join is not supported`,
			`retry_join[7]: "[::1]:99999" is not host[:port]: port "99999" is not 1-65535`,
		}, "\n")},
		{"retry interval", func(c *Config) { c.RetryInterval = 0 }, "retry_interval: 0s must be positive"},
		{"negative retry interval", func(c *Config) { c.RetryInterval = -time.Second }, "retry_interval: -1s must be positive"},
		{"retry max", func(c *Config) { c.RetryMax = -1 }, "retry_max: -1 is negative"},
		{"reconnect timeout", func(c *Config) { c.ReconnectTimeout = time.Hour }, "reconnect_timeout: 1h0m0s is less than 8h"},
		{"encrypt length", func(c *Config) { c.Encrypt = "YWJjZGVmZw==" }, "encrypt: key is 7 bytes after base64 decoding, want 16, 24 or 32"},
		{"encrypt base64", func(c *Config) { c.Encrypt = "not base64!" }, "encrypt: not valid base64 (make a key with `agent keygen`)"},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, `log_level: "verbose" is not one of trace, debug, info, warn, error`},
		{"node meta", func(c *Config) {
			c.NodeMeta = map[string]string{"ok": "v", "a b": "v", "": "v", "long": strings.Repeat("v", 513), strings.Repeat("k", 129): "v"}
		}, strings.Join([]string{
			`node_meta: empty key`,
			`node_meta: key "a b" must be letters, digits, '-' and '_'`,
			`node_meta: key "` + strings.Repeat("k", 64) + `"... is longer than 128 characters`,
			`node_meta.long: value is longer than 512 characters`,
		}, "\n")},
		{"many problems", func(c *Config) {
			*c = Config{}
		}, strings.Join([]string{
			"node_name: empty",
			"datacenter: empty",
			"data_dir: required (or run with -dev)",
			`bind_addr: "" is not an IP address`,
			`client_addr: "" is not an IP address`,
			"ports.http: 0 is out of range 1-65535",
			"ports.dns: 0 is out of range 1-65535",
			"ports.serf_lan: 0 is out of range 1-65535",
			"ports.server: 0 is out of range 1-65535",
			"retry_interval: 0s must be positive",
			"reconnect_timeout: 0s is less than 8h",
			"autopilot.dead_server_last_contact_threshold: 0s is below the minimum of 1m",
			`log_level: "" is not one of trace, debug, info, warn, error`,
		}, "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			err := c.Validate()
			if got := errText(err); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Error("errors.Is(err, ErrInvalid) = false")
			}
		})
	}
}

func TestTooManyNodeMeta(t *testing.T) {
	c := validConfig()
	c.NodeMeta = map[string]string{}
	for i := range 65 {
		c.NodeMeta[strings.Repeat("k", i+1)] = "v"
	}
	if got, want := errText(c.Validate()), "node_meta: 65 pairs, at most 64 allowed"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDefaultsNeedOnlyDataDir(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "n"
	if got, want := errText(c.Validate()), "data_dir: required (or run with -dev)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAutopilotKeys(t *testing.T) {
	f, err := ParseBytes("a.hcl", []byte("autopilot {\n  cleanup_dead_servers = false\n  dead_server_last_contact_threshold = \"2h\"\n}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	f.ApplyTo(&c)
	if c.Autopilot.CleanupDeadServers || c.Autopilot.DeadServerLastContactThreshold != 2*time.Hour {
		t.Errorf("autopilot = %+v", c.Autopilot)
	}
	if _, err := ParseBytes("b.json", []byte(`{"autopilot": {"cleanup_dead_server": true}}`), ""); err == nil ||
		!strings.Contains(err.Error(), `did you mean "autopilot.cleanup_dead_servers"`) {
		t.Errorf("typo in autopilot: %v", err)
	}
	c = DefaultConfig()
	c.DataDir = "/tmp/x"
	c.NodeName = "n"
	c.Autopilot.DeadServerLastContactThreshold = time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "autopilot.dead_server_last_contact_threshold: 1s is below the minimum of 1m") {
		t.Errorf("Validate = %v", err)
	}
}
