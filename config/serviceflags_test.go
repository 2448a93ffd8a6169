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
