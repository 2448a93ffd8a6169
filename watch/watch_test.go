package watch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

func writeFile(t testing.TB, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is a log sink shared by the watch goroutines and the test.
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
	p := testutil.NewProc(t, testutil.AgentBinary(t), "watch1", "-dev")
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

// recorder is a script handler that appends each run's stdin to a
// numbered file, so the test sees what real processes received.
type recorder struct {
	dir string
}

func newRecorder(t *testing.T) (*recorder, []string) {
	dir := t.TempDir()
	script := writeFile(t, filepath.Join(dir, "handler.sh"),
		"#!/bin/sh\nn=$(ls \"$1\" | grep -c '^run-')\ncat > \"$1/run-$((n+1))\"\necho \"$CONSUL_INDEX\" > \"$1/index-$((n+1))\"\n", 0o755)
	out := filepath.Join(dir, "runs")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return &recorder{dir: out}, []string{script, out}
}

// runs returns each run's stdin, in order.
func (r *recorder) runs() []string {
	var out []string
	for i := 1; ; i++ {
		b, err := os.ReadFile(filepath.Join(r.dir, "run-"+strconv.Itoa(i)))
		if err != nil {
			return out
		}
		out = append(out, string(b))
	}
}

// waitRuns waits until exactly n runs happened and the last satisfies
// check; more than n runs fails at once.
func (r *recorder) waitRuns(t *testing.T, n int, check func(last string) error) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("handler run %d", n), func() error {
		runs := r.runs()
		if len(runs) > n {
			t.Fatalf("handler ran %d times, want %d: %q", len(runs), n, runs)
		}
		if len(runs) < n {
			return fmt.Errorf("%d runs so far", len(runs))
		}
		return check(runs[n-1])
	})
}

func kvValue(data string) (string, error) {
	var kv struct {
		Key   string
		Value []byte
	}
	if err := json.Unmarshal([]byte(data), &kv); err != nil {
		return "", fmt.Errorf("handler got %q: %v", data, err)
	}
	return string(kv.Value), nil
}

func wantValue(v string) func(string) error {
	return func(last string) error {
		got, err := kvValue(last)
		if err != nil {
			return err
		}
		if got != v {
			return fmt.Errorf("got value %q, want %q", got, v)
		}
		return nil
	}
}

func TestWatchAgainstAgent(t *testing.T) {
	p := devAgent(t)
	addr := p.HTTPAddr()
	c, err := NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := Options{Wait: 30 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	start := func(t *testing.T, plan Plan, h Handler) {
		if err := plan.Validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = plan.Run(ctx, c, h, opts); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}

	t.Run("key", func(t *testing.T) {
		put(t, addr, "/v1/kv/app/config", "v1")
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeKey, Key: "app/config"}, &ScriptHandler{Args: args})
		rec.waitRuns(t, 1, wantValue("v1"))
		put(t, addr, "/v1/kv/app/config", "v2")
		rec.waitRuns(t, 2, wantValue("v2"))
		// A write elsewhere does not run the handler: the next run seen
		// is the next change of this key.
		put(t, addr, "/v1/kv/app/other", "x")
		put(t, addr, "/v1/kv/app/config", "v3")
		rec.waitRuns(t, 3, wantValue("v3"))
		// A delete runs it with null.
		req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/kv/app/config", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rec.waitRuns(t, 4, func(last string) error {
			if strings.TrimSpace(last) != "null" {
				return fmt.Errorf("got %q, want null", last)
			}
			return nil
		})
		idx, _ := os.ReadFile(filepath.Join(rec.dir, "index-4"))
		if n, err := strconv.Atoi(strings.TrimSpace(string(idx))); err != nil || n < 1 {
			t.Errorf("CONSUL_INDEX = %q, want a positive index", idx)
		}
	})

	t.Run("missing key", func(t *testing.T) {
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeKey, Key: "later/key"}, &ScriptHandler{Args: args})
		rec.waitRuns(t, 1, func(last string) error {
			if strings.TrimSpace(last) != "null" {
				return fmt.Errorf("got %q, want null", last)
			}
			return nil
		})
		put(t, addr, "/v1/kv/later/key", "now")
		rec.waitRuns(t, 2, wantValue("now"))
	})

	t.Run("keyprefix", func(t *testing.T) {
		put(t, addr, "/v1/kv/pre/a", "1")
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeKeyPrefix, Prefix: "pre/"}, &ScriptHandler{Args: args})
		keys := func(n int) func(string) error {
			return func(last string) error {
				var pairs []struct{ Key string }
				if err := json.Unmarshal([]byte(last), &pairs); err != nil {
					return err
				}
				if len(pairs) != n {
					return fmt.Errorf("got %d keys, want %d: %s", len(pairs), n, last)
				}
				return nil
			}
		}
		rec.waitRuns(t, 1, keys(1))
		put(t, addr, "/v1/kv/pre/b", "2")
		rec.waitRuns(t, 2, keys(2))
		put(t, addr, "/v1/kv/elsewhere", "x")
		put(t, addr, "/v1/kv/pre/c", "3")
		rec.waitRuns(t, 3, keys(3))
	})

	t.Run("service", func(t *testing.T) {
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeService, Service: "web", Tags: []string{"v1"}, PassingOnly: true}, &ScriptHandler{Args: args})
		instances := func(ids ...string) func(string) error {
			return func(last string) error {
				var es []struct{ Service struct{ ID string } }
				if err := json.Unmarshal([]byte(last), &es); err != nil {
					return err
				}
				var got []string
				for _, e := range es {
					got = append(got, e.Service.ID)
				}
				if strings.Join(got, ",") != strings.Join(ids, ",") {
					return fmt.Errorf("got instances %v, want %v", got, ids)
				}
				return nil
			}
		}
		// A service with no instances is an empty list at start.
		rec.waitRuns(t, 1, instances())
		put(t, addr, "/v1/agent/service/register", `{"ID": "web1", "Name": "web", "Port": 8001, "Tags": ["v1"]}`)
		rec.waitRuns(t, 2, instances("web1"))
		// Not matching the tag: no run.
		put(t, addr, "/v1/agent/service/register", `{"ID": "web2", "Name": "web", "Port": 8002, "Tags": ["v2"]}`)
		put(t, addr, "/v1/agent/service/register", `{"ID": "web3", "Name": "web", "Port": 8003, "Tags": ["v1"]}`)
		rec.waitRuns(t, 3, instances("web1", "web3"))
		put(t, addr, "/v1/agent/service/deregister/web1", "")
		rec.waitRuns(t, 4, instances("web3"))
	})

	t.Run("services and nodes", func(t *testing.T) {
		// The server registers its own "consul" service in the catalog
		// a moment after it leads: wait for it, or it comes as one
		// more change (a CI run saw a third handler run).
		testutil.WaitFor(t, 20*time.Second, "the consul service in the catalog", func() error {
			resp, err := http.Get("http://" + addr + "/v1/catalog/services")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var m map[string][]string
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				return err
			}
			if _, ok := m["consul"]; !ok {
				return fmt.Errorf("services %v", m)
			}
			return nil
		})
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeServices}, &ScriptHandler{Args: args})
		rec.waitRuns(t, 1, func(string) error { return nil })
		put(t, addr, "/v1/agent/service/register", `{"ID": "db1", "Name": "db", "Port": 5432}`)
		rec.waitRuns(t, 2, func(last string) error {
			var m map[string][]string
			if err := json.Unmarshal([]byte(last), &m); err != nil {
				return err
			}
			if _, ok := m["db"]; !ok {
				return fmt.Errorf("db missing from %s", last)
			}
			return nil
		})
		var got []byte
		var mu sync.Mutex
		start(t, Plan{Type: TypeNodes}, HandlerFunc(func(_ context.Context, _ uint64, data []byte) error {
			mu.Lock()
			defer mu.Unlock()
			got = data
			return nil
		}))
		testutil.WaitFor(t, 20*time.Second, "nodes", func() error {
			mu.Lock()
			defer mu.Unlock()
			if !bytes.Contains(got, []byte(`"watch1"`)) {
				return fmt.Errorf("got %s", got)
			}
			return nil
		})
	})

	t.Run("checks", func(t *testing.T) {
		rec, args := newRecorder(t)
		start(t, Plan{Type: TypeChecks, State: "critical"}, &ScriptHandler{Args: args})
		rec.waitRuns(t, 1, func(string) error { return nil })
		put(t, addr, "/v1/agent/check/register", `{"CheckID": "ttl1", "Name": "ttl1", "TTL": "1h"}`)
		rec.waitRuns(t, 2, func(last string) error {
			if !strings.Contains(last, `"ttl1"`) {
				return fmt.Errorf("ttl1 missing from %s", last)
			}
			return nil
		})
	})

	t.Run("http handler", func(t *testing.T) {
		type hook struct {
			method, index, token string
			body                 []byte
		}
		hooks := make(chan hook, 10)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			hooks <- hook{r.Method, r.Header.Get("X-Consul-Index"), r.Header.Get("X-Token"), b}
		}))
		defer srv.Close()
		defs, err := ParseConfig([]any{map[string]any{"type": "key", "key": "hook/k", "handler_type": "http",
			"http_handler_config": map[string]any{"path": srv.URL + "/hook", "method": "PUT",
				"header": map[string]any{"X-Token": []any{"s3cret"}}, "timeout": "5s"}}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := defs[0].Handler()
		if err != nil {
			t.Fatal(err)
		}
		put(t, addr, "/v1/kv/hook/k", "v1")
		start(t, defs[0].Plan, h)
		select {
		case got := <-hooks:
			v, err := kvValue(string(got.body))
			if got.method != "PUT" || got.token != "s3cret" || got.index == "" || err != nil || v != "v1" {
				t.Errorf("hook got %+v (%v)", got, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no hook call")
		}
	})

	t.Run("handler failure logged", func(t *testing.T) {
		script := writeFile(t, filepath.Join(t.TempDir(), "fail.sh"), "#!/bin/sh\ncat >/dev/null\necho boom-from-handler\nexit 3\n", 0o755)
		start(t, Plan{Type: TypeKey, Key: "fail/key"}, &ScriptHandler{Args: []string{script}})
		put(t, addr, "/v1/kv/fail/key", "x")
		testutil.WaitFor(t, 20*time.Second, "the failure in the log", func() error {
			l := logs.String()
			if !strings.Contains(l, "handler failed") || !strings.Contains(l, "exit_code=3") || !strings.Contains(l, "boom-from-handler") {
				return fmt.Errorf("log so far: %s", l)
			}
			return nil
		})
	})
}

// TestFollowIndexRules drives Follow against a server whose index goes
// backwards and which fails once: the real agent does neither on demand.
func TestFollowIndexRules(t *testing.T) {
	var mu sync.Mutex
	var seen []string // the index parameter of each request
	step := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Query().Get("index"))
		step++
		s := step
		mu.Unlock()
		// Answers by step: index 10, 10 again (no change), a failure,
		// index 5 (backwards), 6, then block until the test ends.
		switch s {
		case 1, 2:
			w.Header().Set("X-Consul-Index", "10")
			fmt.Fprint(w, `["a"]`)
		case 3:
			http.Error(w, "no leader", http.StatusInternalServerError)
		case 4:
			w.Header().Set("X-Consul-Index", "5")
			fmt.Fprint(w, `["b"]`)
		case 5:
			w.Header().Set("X-Consul-Index", "6")
			fmt.Fprint(w, `["b"]`)
		default:
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	got := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Follow(ctx, c, Query{Path: "/v1/x"}, Options{MinBackoff: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))}, func(r Result) {
			calls = append(calls, string(r.Body))
			got <- struct{}{}
		})
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for a change")
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the blocking request", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < 6 {
			return fmt.Errorf("%d requests", len(seen))
		}
		return nil
	})
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Follow returned %v, want context.Canceled", err)
	}
	if strings.Join(calls, " ") != `["a"] ["b"]` {
		t.Errorf("fn got %q, want the two distinct contents", calls)
	}
	mu.Lock()
	defer mu.Unlock()
	// 0 at start; 10 (unchanged answer); 10 again after the failure; 0
	// after the index went backwards; then 6.
	if want := []string{"", "10", "10", "10", "", "6"}; strings.Join(seen[:6], ",") != strings.Join(want, ",") {
		t.Errorf("index parameters %q, want %q", seen[:6], want)
	}
}

func TestShape(t *testing.T) {
	p := Plan{Type: TypeKey, Key: "a"}
	val := base64.StdEncoding.EncodeToString([]byte("hi"))
	out, err := p.Shape(Result{Found: true, Body: []byte(`[{"Key":"a","Value":"` + val + `"}]`)})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := kvValue(string(out)); err != nil || v != "hi" {
		t.Errorf("got %q (%v), want the key's object", out, err)
	}
	out, _ = p.Shape(Result{})
	if strings.TrimSpace(string(out)) != "null" {
		t.Errorf("missing key: got %q, want null", out)
	}
	pp := Plan{Type: TypeKeyPrefix, Prefix: "a"}
	out, _ = pp.Shape(Result{})
	if strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("missing prefix: got %q, want []", out)
	}
}
