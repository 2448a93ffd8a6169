package template

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
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
		{"source": "a.ctmpl", "destination": "/etc/a.conf", "command": "nginx -s reload", "wait": "2s:10s"},
		{"source": "b.ctmpl", "destination": "b.conf", "wait": [{"min": "1s"}], "command_timeout": "5s"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Definition{
		{Spec: Spec{"a.ctmpl", "/etc/a.conf", "nginx -s reload"}, Wait: Wait{2 * time.Second, 10 * time.Second}},
		{Spec: Spec{"b.ctmpl", "b.conf", ""}, Wait: Wait{time.Second, 4 * time.Second}, CommandTimeout: 5 * time.Second},
	}
	if len(defs) != 2 || defs[0] != want[0] || defs[1] != want[1] {
		t.Errorf("got %+v, want %+v", defs, want)
	}
	one, err := ParseConfig(map[string]any{"source": "x", "destination": "y"})
	if err != nil || len(one) != 1 {
		t.Errorf("a lone object: %+v %v", one, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"x"`, "templates: want a list"},
		{`[1]`, "templates[0].(entry)"},
		{`[{"destination": "y"}]`, "templates[0].source: missing"},
		{`[{"source": "x"}]`, "templates[0].destination: missing"},
		{`[{"source": "x", "destination": "x"}]`, "source itself"},
		{`[{"source": "x", "destination": "y", "dest": "z"}]`, "templates[0].dest: unknown field"},
		{`[{"source": 3, "destination": "y"}]`, "templates[0].source: want a string"},
		{`[{"source": "x", "destination": "y", "wait": "soon"}]`, "templates[0].wait"},
		{`[{"source": "x", "destination": "y", "wait": {"max": "1s"}}]`, "templates[0].wait.min"},
		{`[{"source": "x", "destination": "y", "wait": {"min": "1s", "mx": "1s"}}]`, "templates[0].wait.mx"},
		{`[{"source": "x", "destination": "y", "wait": {"min": "2s", "max": "1s"}}]`, "less than min"},
		{`[{"source": "x", "destination": "y", "command_timeout": "0s"}]`, "templates[0].command_timeout"},
		{`[{"source": "x", "destination": "y"}, {"source": "z", "destination": "y"}]`, "templates[1].destination"},
	} {
		_, err := ParseConfig(decodeJSON(t, tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s): got %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`[{"source": "a", "destination": "b", "command": "c", "wait": "1s:2s"}]`,
		`{"source": "a", "destination": "b", "wait": {"min": "1s", "max": "3s"}}`,
		`[{"source": "a", "destination": "b", "wait": [{"min": "1s"}], "command_timeout": "3s"}]`,
		`[{"source": "a"}]`, `null`, `[]`, `[[]]`, `{"wait": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		defs, err := ParseConfig(v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "templates") {
				t.Fatalf("error %q does not name the section", err)
			}
			return
		}
		for _, d := range defs {
			if d.Spec.Source == "" || d.Spec.Dest == "" || d.Wait.Min < 0 || d.Wait.Max < d.Wait.Min || d.CommandTimeout < 0 {
				t.Fatalf("accepted %+v", d)
			}
		}
	})
}

// TestParseConfigFromHCL feeds ParseConfig what the config package keeps
// of an HCL file's templates blocks.
func TestParseConfigFromHCL(t *testing.T) {
	f, err := config.ParseBytes("a.hcl", []byte(`
templates {
  source = "in.ctmpl"
  destination = "out.conf"
  command = "nginx -s reload"
  wait { min = "1s" max = "3s" }
}
templates {
  source = "b.ctmpl"
  destination = "b.conf"
}
`), "hcl")
	if err != nil {
		t.Fatal(err)
	}
	c := config.DefaultConfig()
	f.ApplyTo(&c)
	defs, err := ParseConfig(c.Extra["templates"])
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 2 || defs[0].Spec != (Spec{"in.ctmpl", "out.conf", "nginx -s reload"}) ||
		defs[0].Wait != (Wait{time.Second, 3 * time.Second}) || defs[1].Spec.Dest != "b.conf" {
		t.Errorf("got %+v", defs)
	}
}
