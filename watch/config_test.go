package watch

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseConfig(t *testing.T) {
	defs, err := ParseConfig(decodeJSON(t, `[
		{"type": "key", "key": "app/config", "args": ["/bin/cat"]},
		{"type": "keyprefix", "prefix": "app/", "handler_type": "script", "args": ["/bin/cat", "-"]},
		{"type": "service", "service": "web", "tag": "v1", "passingonly": true, "args": ["/bin/true"]},
		{"type": "service", "service": "web", "tag": ["a", "b"], "passingonly": "false", "handler": "cat >/dev/null"},
		{"type": "checks", "state": "critical", "handler_type": "http",
		 "http_handler_config": [{"path": "http://127.0.0.1:9/hook", "method": "put", "header": {"X-A": ["1", "2"], "X-B": "3"}, "timeout": "3s"}]},
		{"type": "services", "args": ["/bin/true"]},
		{"type": "nodes", "args": ["/bin/true"]}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 7 {
		t.Fatalf("got %d definitions, want 7", len(defs))
	}
	if p := defs[0].Plan; p.Type != "key" || p.Key != "app/config" || defs[0].Args[0] != "/bin/cat" {
		t.Errorf("entry 0: got %+v", defs[0])
	}
	if p := defs[2].Plan; p.Service != "web" || len(p.Tags) != 1 || p.Tags[0] != "v1" || !p.PassingOnly {
		t.Errorf("entry 2: got %+v", p)
	}
	if q := defs[2].Plan.Query(); q.Path != "/v1/health/service/web" || q.Params.Get("tag") != "v1" || !q.Params.Has("passing") {
		t.Errorf("entry 2 query: got %s", q)
	}
	if p := defs[3].Plan; len(p.Tags) != 2 || p.PassingOnly || defs[3].Shell != "cat >/dev/null" {
		t.Errorf("entry 3: got %+v", defs[3])
	}
	h := defs[4].HTTP
	if h == nil || h.URL != "http://127.0.0.1:9/hook" || h.Method != "PUT" || h.Timeout != 3*time.Second ||
		len(h.Header["X-A"]) != 2 || h.Header.Get("X-B") != "3" {
		t.Errorf("entry 4: got %+v", h)
	}
	if q := defs[4].Plan.Query(); q.Path != "/v1/health/state/critical" {
		t.Errorf("entry 4 query: got %s", q)
	}
	if _, err := defs[0].Handler(); err != nil {
		t.Errorf("entry 0 handler: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"not a list", `"x"`, []string{"watches", "list"}},
		{"entry not object", `[3]`, []string{"watches[0]", "object"}},
		{"no type", `[{"key": "a", "args": ["x"]}]`, []string{"watches[0].type", "missing"}},
		{"bad type", `[{"type": "keys", "args": ["x"]}]`, []string{"watches[0].type", `"keys"`}},
		{"unknown field", `[{"type": "key", "key": "a", "args": ["x"], "hander": "y"}]`, []string{"watches[0].hander", "unknown"}},
		{"key missing", `[{"type": "key", "args": ["x"]}]`, []string{"watches[0].key", "missing"}},
		{"key leading slash", `[{"type": "key", "key": "/a", "args": ["x"]}]`, []string{"key", "/a"}},
		{"prefix on key", `[{"type": "key", "key": "a", "prefix": "b", "args": ["x"]}]`, []string{"prefix", "not valid for a key watch"}},
		{"service missing", `[{"type": "service", "args": ["x"]}]`, []string{"watches[0].service"}},
		{"passingonly type", `[{"type": "service", "service": "w", "passingonly": 3, "args": ["x"]}]`, []string{"passingonly", "3"}},
		{"tag type", `[{"type": "service", "service": "w", "tag": [1], "args": ["x"]}]`, []string{"tag", "element 0"}},
		{"bad state", `[{"type": "checks", "state": "ok", "args": ["x"]}]`, []string{"state", `"ok"`}},
		{"state and service", `[{"type": "checks", "state": "any", "service": "w", "args": ["x"]}]`, []string{"state", "not both"}},
		{"no handler", `[{"type": "nodes"}]`, []string{"watches[0].args", "missing"}},
		{"args and handler", `[{"type": "nodes", "args": ["a"], "handler": "b"}]`, []string{"handler", "not both"}},
		{"bad handler_type", `[{"type": "nodes", "handler_type": "exec", "args": ["a"]}]`, []string{"handler_type", `"exec"`}},
		{"http without config", `[{"type": "nodes", "handler_type": "http"}]`, []string{"http_handler_config", "missing"}},
		{"http bad path", `[{"type": "nodes", "handler_type": "http", "http_handler_config": {"path": "ftp://x"}}]`, []string{"http_handler_config.path", "ftp://x"}},
		{"http bad timeout", `[{"type": "nodes", "handler_type": "http", "http_handler_config": {"path": "http://a/", "timeout": "soon"}}]`, []string{"http_handler_config.timeout", "soon"}},
		{"http unknown", `[{"type": "nodes", "handler_type": "http", "http_handler_config": {"path": "http://a/", "verb": "GET"}}]`, []string{"http_handler_config.verb"}},
		{"http config on script", `[{"type": "nodes", "args": ["a"], "http_handler_config": {"path": "http://a/"}}]`, []string{"http_handler_config", "only valid"}},
		{"empty command", `[{"type": "nodes", "args": [""]}]`, []string{"args", "empty"}},
		{"second entry", `[{"type": "nodes", "args": ["a"]}, {"type": "key", "args": ["a"]}]`, []string{"watches[1].key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(decodeJSON(t, tc.in))
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestHandlerNotExecutable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, cmd, want string
	}{
		{"missing", dir + "/nope.sh", "nope.sh"},
		{"not executable", writeFile(t, dir+"/h.sh", "#!/bin/sh\n", 0o644), "not executable"},
		{"directory", dir, "directory"},
		{"not on PATH", "no-such-command-outrigger", "no-such-command-outrigger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Definition{Plan: Plan{Type: TypeNodes}, Args: []string{tc.cmd}}
			_, err := d.Handler()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`[{"type": "key", "key": "a/b", "args": ["/bin/true"]}]`,
		`[{"type": "service", "service": "web", "tag": ["v1"], "passingonly": "true", "handler": "x"}]`,
		`[{"type": "checks", "handler_type": "http", "http_handler_config": [{"path": "http://a/", "header": {"A": "b"}, "timeout": 5}]}]`,
		`{"type": "keyprefix", "prefix": "p/", "args": ["a", "b"]}`,
		`[{"type": "nodes", "args": [1]}]`,
		`[[{"type": "services", "args": ["x"]}]]`,
		`null`, `[]`, `"watches"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		v = intify(v)
		defs, err := ParseConfig(v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "watches") {
				t.Fatalf("error %q does not name the section", err)
			}
			return
		}
		for i := range defs {
			if err := defs[i].Plan.Validate(); err != nil {
				t.Fatalf("accepted an invalid plan %+v: %v", defs[i].Plan, err)
			}
			if defs[i].HTTP == nil && len(defs[i].Args) == 0 && defs[i].Shell == "" {
				t.Fatalf("accepted a watch without a handler: %+v", defs[i])
			}
			_ = defs[i].Plan.Query()
		}
	})
}

// intify turns integral float64s into ints, as config.Config.Extra holds
// them.
func intify(v any) any {
	switch t := v.(type) {
	case float64:
		if t == float64(int(t)) {
			return int(t)
		}
	case []any:
		for i := range t {
			t[i] = intify(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = intify(t[k])
		}
	}
	return v
}
