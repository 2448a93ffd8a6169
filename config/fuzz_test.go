package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// fuzzLoad checks that any input either fails with an error that names the
// file, or yields settings that merge and validate without panicking, and
// that parsing is deterministic.
func fuzzLoad(t *testing.T, format string, data []byte) {
	name := "fuzz." + format
	f, err := ParseBytes(name, data, format)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "config: "+name+": ") {
			t.Fatalf("error does not name the file: %q", err)
		}
		if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrWrongType) {
			t.Fatalf("error of no known kind: %v", err)
		}
		return
	}
	c := DefaultConfig()
	f.ApplyTo(&c)
	f.ApplyTo(&c) // a second file: lists append
	if err := c.Validate(); err != nil && !errors.Is(err, ErrInvalid) {
		t.Fatalf("validation error of no known kind: %v", err)
	}

	again, err := ParseBytes(name, data, format)
	if err != nil {
		t.Fatalf("second parse failed: %v", err)
	}
	c2 := DefaultConfig()
	again.ApplyTo(&c2)
	again.ApplyTo(&c2)
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("parsing twice gave different configs:\n%#v\n%#v", c, c2)
	}
}

func addSeeds(f *testing.F, paths ...string) {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzLoadJSON(f *testing.F) {
	addSeeds(f, "testdata/full.json")
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `{"node_name": null}`,
		`{"ports": {"http": 1e400}}`, `{"ports": {"http": -0.0}}`, `{"ports": {"http": 9007199254740993}}`,
		`{"ports": [{"http": 1}, {"dns": 2}]}`, `{"ports": []}`,
		`{"node_meta": {"a": 1, "b": [1]}}`, `{"service": 1, "services": {"a": 1}, "dns_config": [1]}`,
		`{"retry_join": "x", "retry_interval": "-5s", "encrypt": "=="}`,
		`{"node_nam": 1, "NODE_NAME": 2, "x.y": 3}`,
		`{"a": "\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, "json", data) })
}

func FuzzLoadHCL(f *testing.F) {
	addSeeds(f, "testdata/full.hcl", "testdata/full.json")
	for _, s := range []string{
		``, `# comment`, `a b c { }`, `ports { http = "abc" }`, `ports { http = 1 } ports { dns = 2 }`,
		`node_meta { a = [1] }`, "x = <<EOF\nhello\nEOF\n", `x = <<EOF`, `service { check { http = "x" } }`,
		`a = [[[[1]]]]`, `"" = 1`, `retry_join = ["a", 1]`, `server = "yes"`, `ports = { http = 0x10 }`,
		`ports { http = 99999999999999999999 }`, `log_level = "DEBUG" bootstrap_expect = -1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, "hcl", data) })
}
