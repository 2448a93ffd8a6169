package template

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/watch"
)

func TestSyntaxErrorPosition(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line, col  int
		msg        string
	}{
		{"unknown function", "a\n  {{ foo \"x\" }}\n", 2, 6, `unknown function "foo"`},
		{"unknown function in pipeline", "{{ key \"a\" | frob }}", 1, 14, `unknown function "frob"`},
		{"if without value", "line1\n{{ if }}\n", 2, 1, "missing value for if"},
		{"unclosed action", "ok\nok\n {{ key \"a\" \n\n", 3, 2, "unclosed action"},
		{"unterminated string", "x {{ key \"a }}", 1, 0, "unterminated quoted string"},
		{"end without if", "x {{ end }}", 1, 3, "unexpected {{end}}"},
		{"bad field", "abc {{ .Foo. }}", 1, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseText(Spec{Source: "in.ctmpl", Dest: "out"}, tc.text)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a SyntaxError", err)
			}
			if se.File != "in.ctmpl" || se.Line != tc.line || (tc.col > 0 && se.Col != tc.col) || se.Col < 1 {
				t.Errorf("got %s:%d:%d, want in.ctmpl:%d:%d (%v)", se.File, se.Line, se.Col, tc.line, tc.col, err)
			}
			if !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("message %q does not mention %q", se.Msg, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "in.ctmpl:") {
				t.Errorf("error %q does not start with the file", err)
			}
		})
	}
}

// store is an in-memory set of dependency data for unit tests of the
// functions; the runner tests use a real agent.
type store map[dep]depData

func (s store) lookup(d dep) (depData, bool) { v, ok := s[d]; return v, ok }

func mustDecode(t *testing.T, d dep, found bool, body string) depData {
	t.Helper()
	v, err := d.decode(watch.Result{Found: found, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func render(t *testing.T, s store, text string) (string, []dep, error) {
	t.Helper()
	tm, err := parseText(Spec{Source: "t.ctmpl", Dest: "out"}, text)
	if err != nil {
		t.Fatal(err)
	}
	out, _, missing, err := tm.render(s.lookup, func(k string) string { return "env-" + k })
	return string(out), missing, err
}

func TestFunctions(t *testing.T) {
	webDep := dep{kind: depService, name: "web", passing: true}
	webAny := dep{kind: depService, name: "web"}
	entries := `[
	 {"Node": {"Node": "n2", "Address": "10.0.0.2"}, "Service": {"ID": "w2", "Service": "web", "Tags": ["v1", "x"], "Port": 81, "Address": ""},
	  "Checks": [{"CheckID": "c", "Status": "warning"}]},
	 {"Node": {"Node": "n1", "Address": "10.0.0.1"}, "Service": {"ID": "w1", "Service": "web", "Tags": ["v2"], "Port": 80, "Address": "192.168.0.1"},
	  "Checks": [{"CheckID": "c", "Status": "passing"}]}]`
	s := store{
		{kind: depKey, name: "app/name"}: mustDecode(t, dep{kind: depKey}, true, `[{"Key": "app/name", "Value": "`+b64("demo")+`"}]`),
		{kind: depKey, name: "app/none"}: mustDecode(t, dep{kind: depKey}, false, ``),
		{kind: depKey, name: "app/json"}: mustDecode(t, dep{kind: depKey}, true, `[{"Key": "app/json", "Value": "`+b64(`{"a": [1, 2]}`)+`"}]`),
		{kind: depTree, name: "app"}: mustDecode(t, dep{kind: depTree}, true, `[
			{"Key": "app/name", "Value": "`+b64("demo")+`"}, {"Key": "app/sub/deep", "Value": "`+b64("d")+`"}, {"Key": "app/dir/"}]`),
		webDep: mustDecode(t, webDep, true, entries),
		webAny: mustDecode(t, webAny, true, entries),
		{kind: depService, name: "empty", passing: true}: mustDecode(t, dep{kind: depService}, true, `[]`),
		{kind: depServices}: mustDecode(t, dep{kind: depServices}, true, `{"web": ["v2", "v1"], "db": []}`),
	}
	for _, tc := range []struct{ name, text, want string }{
		{"key", `{{ key "app/name" }}`, "demo"},
		{"key leading slash", `{{ key "/app/name" }}`, "demo"},
		{"keyOrDefault missing", `{{ keyOrDefault "app/none" "dflt" }}`, "dflt"},
		{"keyOrDefault present", `{{ keyOrDefault "app/name" "dflt" }}`, "demo"},
		{"keyExists", `{{ keyExists "app/none" }} {{ keyExists "app/name" }}`, "false true"},
		{"ls", `{{ range ls "app" }}{{ .Key }}={{ .Value }};{{ end }}`, "name=demo;"},
		{"tree", `{{ range tree "app/" }}{{ .Key }}:{{ .Path }};{{ end }}`, "name:app/name;sub/deep:app/sub/deep;"},
		{"service any", `{{ range service "web|any" }}{{ .Node }} {{ .Address }}:{{ .Port }} {{ .Status }};{{ end }}`,
			"n1 192.168.0.1:80 passing;n2 10.0.0.2:81 warning;"},
		{"service filter", `{{ range service "web|warning" }}{{ .ID }};{{ end }}`, "w2;"},
		{"service filter arg", `{{ range service "web" "passing,warning" }}{{ .ID }};{{ end }}`, "w1;w2;"},
		{"service default", `{{ len (service "web") }}`, "2"},
		{"service empty", `[{{ range service "empty" }}x{{ end }}]`, "[]"},
		{"services", `{{ range services }}{{ .Name }}{{ .Tags }};{{ end }}`, "db[];web[v1 v2];"},
		{"byTag", `{{ range $t, $s := service "web|any" | byTag }}{{ $t }}={{ len $s }};{{ end }}`, "v1=1;v2=1;x=1;"},
		{"contains", `{{ range service "web|any" }}{{ if .Tags | contains "v1" }}{{ .ID }}{{ end }}{{ end }}`, "w2"},
		{"Tags.Contains", `{{ range service "web|any" }}{{ if .Tags.Contains "v2" }}{{ .ID }}{{ end }}{{ end }}`, "w1"},
		{"parseJSON", `{{ with key "app/json" | parseJSON }}{{ index .a 1 }}{{ end }}`, "2"},
		{"toJSON", `{{ key "app/name" | toJSON }}`, `"demo"`},
		{"toJSONPretty", `{{ parseJSON "{\"a\":1}" | toJSONPretty }}`, "{\n  \"a\": 1\n}"},
		{"split join", `{{ "a,b,c" | split "," | join ";" }}`, "a;b;c"},
		{"split empty", `{{ len ("" | split ",") }}`, "0"},
		{"replaceAll", `{{ "a-b-c" | replaceAll "-" "." }}`, "a.b.c"},
		{"case and space", `{{ "  MiX " | trimSpace | toLower }}{{ "x" | toUpper }}`, "mixX"},
		{"env", `{{ env "HOME" }}`, "env-HOME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, missing, err := render(t, s, tc.text)
			if err != nil || len(missing) > 0 {
				t.Fatalf("render: %v, missing %v", err, missing)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMissingData(t *testing.T) {
	s := store{
		{kind: depKey, name: "present"}: mustDecode(t, dep{kind: depKey}, true, `[{"Key": "present", "Value": "`+b64("p")+`"}]`),
		{kind: depKey, name: "gone"}:    mustDecode(t, dep{kind: depKey}, false, ``),
	}
	for _, tc := range []struct {
		name, text string
		missing    string
	}{
		{"key not arrived", `{{ key "present" }}{{ key "later" }}`, `key "later"`},
		{"key does not exist", `{{ key "gone" }}`, `key "gone"`},
		{"service not arrived", `{{ range service "web" }}{{ .Address }}{{ end }}`, `service "web"`},
		{"index into missing list", `{{ (index (service "web") 0).Address }} {{ key "later" }}`, `service "web"`},
		{"all of them", `{{ key "a" }}{{ key "b" }}{{ service "v1.db" }}`, `key "a", key "b", service "v1.db"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, missing, err := render(t, s, tc.text)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if out != "" {
				t.Errorf("got output %q with data missing", out)
			}
			if got := depList(missing); got != tc.missing {
				t.Errorf("missing %s, want %s", got, tc.missing)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	s := store{{kind: depKey, name: "bad"}: mustDecode(t, dep{kind: depKey}, true, `[{"Key": "bad", "Value": "`+b64("{nope")+`"}]`)}
	for _, tc := range []struct{ name, text, want string }{
		{"bad service spec", `{{ service "web|sometimes" }}`, `filter "sometimes"`},
		{"empty service", `{{ service "" }}`, "empty service name"},
		{"bad name", `{{ service "we b" }}`, "bad service name"},
		{"two filters", `{{ service "web|any" "passing" }}`, "not both"},
		{"parseJSON", `{{ key "bad" | parseJSON }}`, "parseJSON"},
		{"empty key", `{{ key "" }}`, "empty key"},
		{"byTag", `{{ byTag "x" }}`, "byTag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := render(t, s, tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "t.ctmpl:1:") {
				t.Errorf("got %v, want an error at t.ctmpl:1 about %q", err, tc.want)
			}
		})
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "out.conf")
	if err := writeAtomic(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v, mode %v; want 0644", err, fi.Mode().Perm())
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(p)
	b, _ := os.ReadFile(p)
	if fi.Mode().Perm() != 0o600 || string(b) != "two" {
		t.Errorf("got mode %v content %q, want 0600 and \"two\"", fi.Mode().Perm(), b)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := writeAtomic(dir, []byte("x")); err == nil {
		t.Error("writing over a directory succeeded")
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
