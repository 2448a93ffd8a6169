package template

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
	"github.com/outrigger/outrigger/watch"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// devAgent starts `agent run -dev` and waits for it to lead.
func devAgent(t *testing.T) *testutil.Proc {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	p := testutil.NewProc(t, testutil.AgentBinary(t), "tmpl1", "-dev")
	p.Start()
	testutil.WaitFor(t, 30*time.Second, "a leader", func() error {
		resp, err := http.Get("http://" + p.HTTPAddr() + "/v1/status/leader")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var leader string
		if err := json.NewDecoder(resp.Body).Decode(&leader); err != nil || leader == "" {
			return fmt.Errorf("no leader yet (%v)", err)
		}
		return nil
	})
	return p
}

func put(t *testing.T, addr, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT %s: %s", path, resp.Status)
	}
}

// fixture is one template with a command that counts its runs.
type fixture struct {
	dir, src, dest, counter string
}

func newFixture(t *testing.T, text string) *fixture {
	dir := t.TempDir()
	f := &fixture{dir: dir, src: filepath.Join(dir, "in.ctmpl"), dest: filepath.Join(dir, "out", "out.conf"),
		counter: filepath.Join(dir, "runs")}
	if err := os.WriteFile(f.src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) spec() Spec {
	// The command records what the file held when it ran.
	return Spec{Source: f.src, Dest: f.dest, Command: fmt.Sprintf("cat %q >> %q; echo >> %q", f.dest, f.counter, f.counter)}
}

// runs is the output file's content at each command run.
func (f *fixture) runs() []string {
	b, err := os.ReadFile(f.counter)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (f *fixture) content() string {
	b, _ := os.ReadFile(f.dest)
	return string(b)
}

// waitRuns waits until the command ran exactly n times, the last with
// want in the file; more runs fail at once.
func (f *fixture) waitRuns(t *testing.T, n int, want string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("command run %d with %q", n, want), func() error {
		runs := f.runs()
		if len(runs) > n {
			t.Fatalf("command ran %d times, want %d: %q", len(runs), n, runs)
		}
		if len(runs) < n {
			return fmt.Errorf("%d runs so far; file %q", len(runs), f.content())
		}
		if runs[n-1] != want {
			return fmt.Errorf("run %d saw %q", n, runs[n-1])
		}
		return nil
	})
}

func TestRunnerAgainstAgent(t *testing.T) {
	p := devAgent(t)
	addr := p.HTTPAddr()
	client, err := watch.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T, cfg Config) (*syncBuffer, chan error) {
		logs := &syncBuffer{}
		cfg.Client = client
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.Watch = watch.Options{Wait: 30 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			if t.Failed() {
				t.Logf("runner log:\n%s", logs.String())
			}
		})
		return logs, done
	}

	t.Run("renders on change, command once per change", func(t *testing.T) {
		put(t, addr, "/v1/kv/cfg/a", "one")
		f := newFixture(t, `a={{ key "cfg/a" }} ports={{ range service "api" }}{{ .Port }},{{ end }}`)
		start(t, Config{Templates: []Spec{f.spec()}})
		f.waitRuns(t, 1, "a=one ports=")
		put(t, addr, "/v1/kv/cfg/a", "two")
		f.waitRuns(t, 2, "a=two ports=")
		put(t, addr, "/v1/agent/service/register", `{"ID": "api1", "Name": "api", "Port": 7001}`)
		f.waitRuns(t, 3, "a=two ports=7001,")
		// The same value again and writes elsewhere change nothing: no
		// write, no command. The next run seen is the next real change.
		put(t, addr, "/v1/kv/cfg/a", "two")
		put(t, addr, "/v1/kv/cfg/other", "x")
		put(t, addr, "/v1/agent/service/register", `{"ID": "db1", "Name": "db", "Port": 5432}`)
		put(t, addr, "/v1/agent/service/register", `{"ID": "api2", "Name": "api", "Port": 7002}`)
		f.waitRuns(t, 4, "a=two ports=7001,7002,")
		put(t, addr, "/v1/agent/service/deregister/api1", "")
		f.waitRuns(t, 5, "a=two ports=7002,")
		fi, err := os.Stat(f.dest)
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("dest mode: %v %v, want 0644", fi.Mode().Perm(), err)
		}
	})

	t.Run("burst with wait", func(t *testing.T) {
		put(t, addr, "/v1/kv/burst/k", "start")
		f := newFixture(t, `{{ key "burst/k" }}`)
		start(t, Config{Templates: []Spec{f.spec()}, Wait: Wait{Min: 300 * time.Millisecond, Max: 5 * time.Second}})
		f.waitRuns(t, 1, "start")
		for i := 0; i < 50; i++ {
			put(t, addr, "/v1/kv/burst/k", "v"+strconv.Itoa(i))
		}
		testutil.WaitFor(t, 20*time.Second, "the last value", func() error {
			runs := f.runs()
			if got := runs[len(runs)-1]; got != "v49" {
				return fmt.Errorf("last run saw %q", got)
			}
			return nil
		})
		runs := f.runs()
		t.Logf("50 writes → %d renders after the first: %q", len(runs)-1, runs[1:])
		if len(runs)-1 > 10 {
			t.Errorf("50 writes in a burst rendered %d times, want a few", len(runs)-1)
		}
		if f.content() != "v49" {
			t.Errorf("file holds %q, want v49", f.content())
		}
	})

	t.Run("waits for missing data", func(t *testing.T) {
		f := newFixture(t, `{{ key "miss/k" }} {{ keyOrDefault "miss/other" "dflt" }} [{{ range service "nothing-here" }}x{{ end }}]`)
		logs, _ := start(t, Config{Templates: []Spec{f.spec()}, MissingTimeout: 200 * time.Millisecond})
		// Once the answers are in, only the missing key is missing:
		// keyOrDefault and a service without instances are not.
		testutil.WaitFor(t, 20*time.Second, "the missing-data warning", func() error {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "still waiting for data") && strings.Contains(l, `missing="key \"miss/k\""`) {
					return nil
				}
			}
			return fmt.Errorf("log: %s", logs.String())
		})
		if _, err := os.Stat(f.dest); !os.IsNotExist(err) {
			t.Fatalf("dest written while data is missing (%v): %q", err, f.content())
		}
		put(t, addr, "/v1/kv/miss/k", "here")
		f.waitRuns(t, 1, "here dflt []")
	})

	t.Run("once keeps mode, identical output not rewritten", func(t *testing.T) {
		put(t, addr, "/v1/kv/once/k", "value")
		f := newFixture(t, `k={{ key "once/k" }}`)
		if err := os.MkdirAll(filepath.Dir(f.dest), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.dest, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, done := start(t, Config{Templates: []Spec{f.spec()}, Once: true})
		select {
		case err := <-done:
			done <- err
			if err != nil {
				t.Fatalf("once: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("-once did not return")
		}
		if runs := f.runs(); len(runs) != 1 || runs[0] != "k=value" {
			t.Errorf("command runs %q, want one with k=value", runs)
		}
		if fi, _ := os.Stat(f.dest); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want the existing 0600", fi.Mode().Perm())
		}
		// Again, with the file already right: nothing written, no command.
		_, done = start(t, Config{Templates: []Spec{f.spec()}, Once: true})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		done <- nil
		if runs := f.runs(); len(runs) != 1 {
			t.Errorf("command ran again for identical output: %q", runs)
		}
	})

	t.Run("nodes and node", func(t *testing.T) {
		put(t, addr, "/v1/agent/service/register", `{"ID": "cache1", "Name": "cache", "Port": 6379, "Tags": ["primary"]}`)
		// Registration reaches the catalog by anti-entropy: start once it
		// is there, so that the first render is the only one.
		testutil.WaitFor(t, 20*time.Second, "cache1 in the catalog", func() error {
			resp, err := http.Get("http://" + addr + "/v1/catalog/service/cache")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var es []any
			if err := json.NewDecoder(resp.Body).Decode(&es); err != nil || len(es) == 0 {
				return fmt.Errorf("not yet (%v)", err)
			}
			return nil
		})
		f := newFixture(t, `{{ range nodes }}{{ .Node }}@{{ .Address }} {{ end }}|{{ with node }}{{ .Node.Node }}:{{ range .Services }}{{ if eq .Service "cache" }}{{ .ID }}{{ .Tags }}{{ end }}{{ end }}{{ end }}|{{ with node "tmpl1" }}{{ .Node.Node }}{{ end }}|{{ node "no-such-node" }}`)
		start(t, Config{Templates: []Spec{f.spec()}})
		f.waitRuns(t, 1, "tmpl1@127.0.0.1 |tmpl1:cache1[primary]|tmpl1|<nil>")
	})

	t.Run("dry prints", func(t *testing.T) {
		put(t, addr, "/v1/kv/dry/k", "d")
		f := newFixture(t, `dry={{ key "dry/k" }}`)
		var out syncBuffer
		_, done := start(t, Config{Templates: []Spec{f.spec()}, Once: true, Dry: true, Stdout: &out})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		done <- nil
		if want := "> " + f.dest + "\ndry=d"; out.String() != want {
			t.Errorf("dry output %q, want %q", out.String(), want)
		}
		if _, err := os.Stat(f.dest); !os.IsNotExist(err) || len(f.runs()) != 0 {
			t.Errorf("-dry wrote the file or ran the command")
		}
	})
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.ctmpl")
	bad := filepath.Join(dir, "bad.ctmpl")
	unknown := filepath.Join(dir, "unknown.ctmpl")
	os.WriteFile(good, []byte(`{{ key "a" }}`), 0o644)
	os.WriteFile(bad, []byte("ok\n{{ range }}\n"), 0o644)
	os.WriteFile(unknown, []byte(`{{ secret "a" }}`), 0o644)
	noexec := filepath.Join(dir, "reload.sh")
	os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644)
	c, _ := watch.NewClient("127.0.0.1:1")
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"syntax", Spec{Source: bad, Dest: out}, bad + ":2:1:"},
		{"unknown function", Spec{Source: unknown, Dest: out}, `unknown function "secret"`},
		{"missing source", Spec{Source: filepath.Join(dir, "nope"), Dest: out}, "no such file"},
		{"command not executable", Spec{Source: good, Dest: out, Command: noexec + " now"}, "not executable"},
		{"command not found", Spec{Source: good, Dest: out, Command: "no-such-reloader -s"}, "no-such-reloader"},
		{"dest is a directory", Spec{Source: good, Dest: dir}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Templates: []Spec{tc.spec}, Client: c})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("something was written")
			}
		})
	}
	_, err := New(Config{Templates: []Spec{{Source: good, Dest: out}, {Source: good, Dest: out}}, Client: c})
	if err == nil || !strings.Contains(err.Error(), "also") {
		t.Errorf("two templates to one file: got %v", err)
	}
}
