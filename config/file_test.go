package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
)

func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		key, want string
	}{
		{"node_nam", `unknown key "node_nam" (did you mean "node_name"?)`},
		{"datacentre", `unknown key "datacentre" (did you mean "datacenter"?)`},
		{"NodeName", `unknown key "NodeName" (did you mean "node_name"?)`},
		{"retry-join", `unknown key "retry-join" (did you mean "retry_join"?)`},
		{"bind", `unknown key "bind" (did you mean "bind_addr"?)`},
		{"http_port", `unknown key "http_port" (did you mean "ports.http"?)`},
		{"sevices", `unknown key "sevices" (did you mean "services"?)`},
		{"ui", `unknown key "ui"`},
		{"acl_enforce_version_8", `unknown key "acl_enforce_version_8"`},
		{"ports.http", `unknown key "ports.http" (put http inside ports { })`},
		{strings.Repeat("x", 100), `unknown key "` + strings.Repeat("x", 64) + `"...`},
	} {
		t.Run(tc.key, func(t *testing.T) {
			for _, format := range []string{"json", "hcl"} {
				src := `{"` + tc.key + `": 1}`
				if format == "hcl" {
					src = `"` + tc.key + `" = 1`
				}
				_, err := ParseBytes("/etc/a."+format, []byte(src), "")
				want := "config: /etc/a." + format + ": " + tc.want
				if got := errText(err); got != want {
					t.Errorf("%s: got %s\nwant %s", format, got, want)
				}
				if !errors.Is(err, ErrUnknownKey) {
					t.Errorf("%s: errors.Is(err, ErrUnknownKey) = false", format)
				}
			}
		})
	}
}

func TestUnknownPortKey(t *testing.T) {
	_, err := ParseBytes("a.hcl", []byte(`ports { htp = 1 grpc = 8502 }`), "")
	want := `config: a.hcl: unknown key "ports.grpc"
config: a.hcl: unknown key "ports.htp" (did you mean "ports.http"?)`
	if got := errText(err); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTypeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, hcl, json, want string
	}{
		{"port word", `ports { http = "abc" }`, `{"ports": {"http": "abc"}}`, `ports.http: "abc" is not an integer`},
		{"port bool", `ports { dns = true }`, `{"ports": {"dns": true}}`, `ports.dns: true is not an integer`},
		{"port fraction", `ports { dns = 1.5 }`, `{"ports": {"dns": 1.5}}`, `ports.dns: 1.5 is not an integer`},
		{"port list", `ports { dns = [1] }`, `{"ports": {"dns": [1]}}`, `ports.dns: a list is not an integer`},
		{"ports scalar", `ports = 5`, `{"ports": 5}`, `ports: 5 is not an object`},
		{"string number", `node_name = 5`, `{"node_name": 5}`, `node_name: 5 is not a string`},
		{"string object", `data_dir { a = 1 }`, `{"data_dir": {"a": 1}}`, `data_dir: a list is not a string`},
		{"bool word", `server = "yes"`, `{"server": "yes"}`, `server: "yes" is not a boolean`},
		{"duration number", `retry_interval = 30`, `{"retry_interval": 30}`, `retry_interval: 30 is not a duration (want a string with a unit, like "30s")`},
		{"duration no unit", `retry_interval = "30"`, `{"retry_interval": "30"}`, `retry_interval: "30" is not a duration (want a number with a unit, like "30s")`},
		{"list element", `retry_join = ["a", 1]`, `{"retry_join": ["a", 1]}`, `retry_join[1]: 1 is not a string`},
		{"list scalar", `retry_join = 1`, `{"retry_join": 1}`, `retry_join: 1 is not a list of strings`},
		{"meta value", `node_meta { a = [1] }`, `{"node_meta": {"a": [1]}}`, `node_meta.a: a list is not a string`},
		{"meta scalar", `node_meta = "x"`, `{"node_meta": "x"}`, `node_meta: "x" is not an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, src := range []struct{ name, body string }{{"a.hcl", tc.hcl}, {"a.json", tc.json}} {
				_, err := ParseBytes(src.name, []byte(src.body), "")
				want := "config: " + src.name + ": " + tc.want
				if tc.name == "string object" && src.name == "a.json" {
					want = "config: a.json: data_dir: an object is not a string"
				}
				if got := errText(err); got != want {
					t.Errorf("got  %s\nwant %s", got, want)
				}
				if !errors.Is(err, ErrWrongType) {
					t.Errorf("%s: errors.Is(err, ErrWrongType) = false", src.name)
				}
				var fe *FieldError
				if !errors.As(err, &fe) || !strings.HasPrefix(tc.want, fe.Field+": ") {
					t.Errorf("%s: no FieldError naming the key", src.name)
				}
			}
		})
	}
}

// TestLenientValues covers the conversions Consul's weak decoding allows.
func TestLenientValues(t *testing.T) {
	f, err := ParseBytes("a.json", []byte(`{
		"ports": {"http": "8080", "dns": 8600.0},
		"server": "true",
		"retry_join": "10.0.0.1",
		"node_meta": {"n": 1, "f": 1.5, "b": false},
		"data_dir": null,
		"ports": {"http": "8080", "dns": 8600.0, "server": null}
	}`), "")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	f.ApplyTo(&c)
	if c.Ports.HTTP != 8080 || c.Ports.DNS != 8600 || !c.Server || len(c.RetryJoin) != 1 || c.RetryJoin[0] != "10.0.0.1" ||
		c.NodeMeta["n"] != "1" || c.NodeMeta["f"] != "1.5" || c.NodeMeta["b"] != "false" || c.Ports.Server != 8300 {
		t.Errorf("got %+v", c)
	}
	if got := strings.Join(f.Keys(), " "); got != "node_meta ports.dns ports.http retry_join server" {
		t.Errorf("Keys() = %s", got)
	}
}

func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"a.json", "{\n  \"node_name\": \"x\",\n}", `config: a.json: line 3, column 1: invalid character '}' looking for beginning of object key string`},
		{"a.json", `{"node_name": "x"`, `config: a.json: unexpected end of input`},
		{"a.json", `{"node_name": "x"} {}`, `config: a.json: unexpected data after the top-level object`},
		{"a.json", `["node_name"]`, `config: a.json: top level is a list, want an object`},
		{"a.json", `"x"`, `config: a.json: top level is "x", want an object`},
		{"a.hcl", "node_name = \"x\"\nports {", `config: a.hcl: line 2, column 9: object expected closing RBRACE got: EOF`},
		{"a.hcl", `x = "\q"`, `config: a.hcl: line 1, column 7: illegal char escape`},
		{"a.hcl", strings.Repeat("[", 200), `config: a.hcl: nested more than 100 levels deep`},
		{"a.hcl", "x = " + strings.Repeat("a ", 200) + "{}", `config: a.hcl: nested more than 100 levels deep`},
		{"a.hcl", strings.Repeat("a /* */ ", 200) + "{}", `config: a.hcl: nested more than 100 levels deep`},
		{"a.hcl", strings.Repeat(`{"a":`, 200), `config: a.hcl: nested more than 100 levels deep`},
		{"a.txt", ``, `config: a.txt: cannot tell the format from the extension (want .json or .hcl)`},
	} {
		_, err := ParseBytes(tc.name, []byte(tc.src), "")
		if got := errText(err); got != tc.want {
			t.Errorf("%q: got  %s\nwant %s", tc.src, got, tc.want)
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: errors.Is(err, ErrSyntax) = false", tc.src)
		}
	}
	if _, err := ParseBytes("a", []byte(`{}`), "yaml"); errText(err) != `config: a: unknown format "yaml" (want "json" or "hcl")` {
		t.Errorf("got %v", err)
	}
}

func TestEmptyFiles(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"a.json", ""}, {"a.json", " \n\t"}, {"a.json", "{}"},
		{"a.hcl", ""}, {"a.hcl", "# only a comment\n"}, {"a.hcl", "{}"},
	} {
		f, err := ParseBytes(tc.name, []byte(tc.src), "")
		if err != nil {
			t.Errorf("%s %q: %v", tc.name, tc.src, err)
			continue
		}
		if len(f.Keys()) != 0 {
			t.Errorf("%s %q: keys %q", tc.name, tc.src, f.Keys())
		}
	}
}

// TestFormatOverride checks ParseBytes's format argument beats the name.
func TestFormatOverride(t *testing.T) {
	f, err := ParseBytes("agent.conf", []byte(`node_name = "x"`), "hcl")
	if err != nil {
		t.Fatal(err)
	}
	c := Config{}
	f.ApplyTo(&c)
	if c.NodeName != "x" || f.Name != "agent.conf" {
		t.Errorf("got %+v", c)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"node_name", "node_name"},
		{"nod_nme", "node_name"},
		{"client", "client_addr"},
		{"Bind-Addr", "bind_addr"},
		{"zzzzzz", ""},
		{"x", ""},
	} {
		if got := suggest("", tc.key, topLevelKeys); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"node_nam", "node_name", 1}, {"flaw", "lawn", 2},
	} {
		if got := levenshtein(tc.a, tc.b); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestUnflattenMatchesHCL checks that rewriting multi-key items (done for
// speed) decodes to what HCL's own decoder gives.
func TestUnflattenMatchesHCL(t *testing.T) {
	full, err := os.ReadFile("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		string(full),
		`a b { x = 1 }`,
		`a b c { x = 1 } a b d { y = 2 } e = 3`,
		`a b { x = 1 } a c { y = 2 }`,
		`service "web" { port = 1 } service "db" { port = 2 }`,
		`ports { http = 1 } ports { dns = 2 } node_meta { a = "b" }`,
		`x = [{ a b { c = 1 } }, { d = 2 }]`,
		`{"ports": {"http": 1}, "dns_config": {"service_ttl": {"*": "5s"}}, "services": [{"name": "a"}, {"name": "b"}]}`,
		`{"a": {"b": {"c": {}}}, "l": [[{"x": {"y": 1}}]]}`,
	} {
		var want map[string]any
		if err := hcl.Unmarshal([]byte(src), &want); err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got, err := parseHCL([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if w := plain(want); !reflect.DeepEqual(got, w) {
			t.Errorf("%q:\ngot  %#v\nwant %#v", src, got, w)
		}
	}
}

// TestHCLManyBlocksIsFast guards against HCL1's quadratic decoding of
// multi-key items: parsing four times the blocks must cost about four
// times as much, not sixteen. The best of three runs of each size is
// compared, so a loaded machine does not decide the result.
func TestHCLManyBlocksIsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 10,000 HCL blocks three times: skipped in -short mode")
	}
	input := func(n int) []byte {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "service \"s%d\" { port = %d }\n", i, i)
		}
		return []byte(b.String())
	}
	best := func(data []byte, want int) time.Duration {
		var min time.Duration
		for range 3 {
			start := time.Now()
			f, err := ParseBytes("big.hcl", data, "")
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			c := Config{}
			f.ApplyTo(&c)
			if n := len(c.Extra["service"].([]any)); n != want {
				t.Fatalf("%d services, want %d", n, want)
			}
			if min == 0 || d < min {
				min = d
			}
		}
		return min
	}
	small, large := best(input(2000), 2000), best(input(8000), 8000)
	if ratio := float64(large) / float64(small); ratio > 10 {
		t.Errorf("parsing 4x the blocks took %.1fx as long (%v vs %v): quadratic", ratio, large, small)
	}
}
