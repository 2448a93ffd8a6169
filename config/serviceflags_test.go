package config

import (
	"errors"
	"reflect"
	"testing"
)

func TestServiceFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want any // Extra["service"]
	}{
		{"none", nil, nil},
		{"name only", []string{"-service", "web"}, []any{map[string]any{"name": "web"}}},
		{"http check, default interval",
			[]string{"-service", "web", "-service-port", "8080", "-service-tag", "a", "-service-tag", "b",
				"-service-address", "10.0.0.7", "-check-http", "http://127.0.0.1:8080/health"},
			[]any{map[string]any{"name": "web", "port": 8080, "tags": []any{"a", "b"}, "address": "10.0.0.7",
				"check": map[string]any{"http": "http://127.0.0.1:8080/health", "interval": "10s"}}}},
		{"tcp check",
			[]string{"-service", "db", "-check-tcp", "127.0.0.1:5432", "-check-interval", "1s", "-check-timeout", "500ms"},
			[]any{map[string]any{"name": "db",
				"check": map[string]any{"tcp": "127.0.0.1:5432", "interval": "1s", "timeout": "500ms"}}}},
		{"ttl check",
			[]string{"-service", "worker", "-check-ttl", "30s"},
			[]any{map[string]any{"name": "worker", "check": map[string]any{"ttl": "30s"}}}},
		{"upstreams",
			[]string{"-service", "web", "-service-port", "8080", "-upstream", "api:9191", "-upstream", "db:127.0.0.2:5432:tcp",
				"-upstream", "auth:[::1]:9000:http", "-sidecar-port", "21500"},
			[]any{map[string]any{"name": "web", "port": 8080, "connect": map[string]any{"sidecar_service": map[string]any{
				"port": 21500, "proxy": map[string]any{"upstreams": []any{
					map[string]any{"destination_name": "api", "local_bind_port": 9191},
					map[string]any{"destination_name": "db", "local_bind_address": "127.0.0.2", "local_bind_port": 5432,
						"config": map[string]any{"protocol": "tcp"}},
					map[string]any{"destination_name": "auth", "local_bind_address": "::1", "local_bind_port": 9000,
						"config": map[string]any{"protocol": "http"}},
				}}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, sources{args: tc.args})
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if v, ok := c.Extra["service"]; ok {
				got = v
			}
			if tc.want == nil && got == nil {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestServiceFlagsAfterFiles(t *testing.T) {
	c, err := load(t, sources{
		files: map[string]string{"a.json": `{"service": {"name": "from-file"}}`},
		args:  []string{"-config-file", "$DIR/a.json", "-service", "from-flags"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"name": "from-file"}, map[string]any{"name": "from-flags"}}
	if !reflect.DeepEqual(c.Extra["service"], want) {
		t.Errorf("got %#v, want %#v", c.Extra["service"], want)
	}
}

func TestServiceFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-service-port", "80", "-check-http", "http://x/"},
			"config: flags: -service-port: needs -service NAME\nconfig: flags: -check-http: needs -service NAME"},
		{[]string{"-service", "web", "-service-port", "70000"},
			"config: flags: -service-port: 70000 is out of range 0-65535"},
		{[]string{"-service", "web", "-check-http", "http://x/", "-check-ttl", "10s"},
			"config: flags: -check-ttl: cannot be given with -check-http: the -service has one check"},
		{[]string{"-service", "web", "-check-ttl", "10s", "-check-interval", "1s"},
			"config: flags: -check-interval: needs -check-http or -check-tcp (a TTL check has no interval)"},
		{[]string{"-service", "web", "-check-tcp", "x:1", "-check-timeout", "0s"},
			"config: flags: -check-timeout: 0s must be positive"},
		{[]string{"-service", "web", "-upstream", "api", "-upstream", "api:0", "-upstream", "api:host:80", "-sidecar-port", "0"},
			"config: flags: -upstream: \"api\": want NAME:PORT or NAME:ADDR:PORT\n" +
				"config: flags: -upstream: \"api:0\": port \"0\" is not a number in 1-65535\n" +
				"config: flags: -upstream: \"api:host:80\": \"host\" is not an IP address\n" +
				"config: flags: -sidecar-port: 0 is out of range 1-65535"},
		{[]string{"-upstream", "api:9191"}, "config: flags: -upstream: needs -service NAME"},
		{[]string{"-service", "", "-check-http", ""},
			"config: flags: -service: empty name\nconfig: flags: -check-http: empty URL"},
	} {
		_, err := load(t, sources{args: tc.args})
		if got := errText(err); got != tc.want {
			t.Errorf("%q:\ngot  %s\nwant %s", tc.args, got, tc.want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: errors.Is(err, ErrInvalid) = false", tc.args)
		}
	}
}

func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{"api:9191", "api:127.0.0.1:9191", "api:[::1]:1:http", "api:9191:tcp", ":", "a:[::1:2", "a:b:c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		up, err := ParseUpstream(v)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if p, _ := up["local_bind_port"].(int); p < 1 || p > 65535 || up["destination_name"] == "" {
			t.Fatalf("ParseUpstream(%q) = %v", v, up)
		}
	})
}
