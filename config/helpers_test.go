package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sources describes one Load: files written under a temporary directory
// (args and error messages call it $DIR), environment and arguments.
type sources struct {
	files map[string]string
	env   map[string]string
	args  []string
}

const testHostname = "host-1.example.com"

// load runs Load over s. Error messages have the temporary directory
// replaced by $DIR so tests can compare them exactly.
func load(t *testing.T, s sources) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range s.files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := NewFlags(fs)
	f.Hostname = func() (string, error) { return testHostname, nil }
	args := make([]string, len(s.args))
	for i, a := range s.args {
		args[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	c, err := Load(f, mapEnv(s.env))
	if err != nil {
		err = &dirError{strings.ReplaceAll(err.Error(), dir, "$DIR"), err}
	}
	for i, p := range c.ConfigFiles {
		c.ConfigFiles[i] = strings.Replace(p, dir, "$DIR", 1)
	}
	return c, err
}

type dirError struct {
	msg string
	err error
}

func (e *dirError) Error() string { return e.msg }
func (e *dirError) Unwrap() error { return e.err }

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// errText returns err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// validConfig is a configuration that passes Validate, for tests to break.
func validConfig() Config {
	c := DefaultConfig()
	c.NodeName = "node-1"
	c.DataDir = "/var/lib/outrigger"
	return c
}

func newTestFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
