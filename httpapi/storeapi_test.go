package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/kvstore"
)

// tLogWriter sends log lines to t.Log until the test ends (raft logs
// while shutting down, after the test returned).
type tLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLog(t testing.TB) *slog.Logger {
	w := &tLogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; !cond(); delay = min(delay*2, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(delay)
	}
}

// newTestStore starts a single in-memory Raft server, as -dev does. With
// bootstrap it waits until the server leads; without, it never will.
func newTestStore(t testing.TB, bootstrap bool) *kvstore.Store {
	t.Helper()
	st, err := kvstore.New(kvstore.Config{NodeID: "srv1", InMemory: true, Timing: kvstore.FastTiming(), Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	if !bootstrap {
		return st
	}
	if err := st.Bootstrap(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the store to lead", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return st.VerifyLeader(ctx) == nil
	})
	return st
}

// storeAgent is the fake agent of a server whose gossip member carries
// the store's Raft ID.
func storeAgent() *fakeAgent {
	a := testAgent()
	a.members[0].Tags["id"] = "srv1"
	a.members[0].Tags["port"] = "8300"
	return a
}

// kvEnv is an httpapi.Server over a store, and a Consul client for it.
type kvEnv struct {
	base   string
	client *consul.Client
	store  *kvstore.Store
	reg    *prometheus.Registry
}

func startKV(t *testing.T, st *kvstore.Store, tweak func(*Config)) *kvEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{Addr: "127.0.0.1:0", Agent: storeAgent(), Store: st, Registry: reg, Logger: testLog(t)}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := consul.NewClient(&consul.Config{Address: s.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	return &kvEnv{base: "http://" + s.Addr().String(), client: c, store: st, reg: reg}
}

// call makes one HTTP request and returns the status, body and headers.
func call(t testing.TB, method, url string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	return callWith(t, method, url, body, nil)
}

// callWith is call with extra request headers.
func callWith(t testing.TB, method, url string, body io.Reader, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// blockedQueries reads the blocking-query gauge.
func (e *kvEnv) blockedQueries(t testing.TB) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outrigger_http_blocking_queries" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no outrigger_http_blocking_queries metric")
	return 0
}

// waitBlocked waits until n queries are blocked.
func (e *kvEnv) waitBlocked(t testing.TB, n float64) {
	t.Helper()
	waitFor(t, 10*time.Second, "blocked queries", func() bool { return e.blockedQueries(t) == n })
}

// contents is everything a client can see in the store, for checking that
// a refused request changed nothing.
func contents(t testing.TB, st *kvstore.Store) string {
	t.Helper()
	entries, _ := st.State().List("")
	sessions, _ := st.State().Sessions()
	b, err := json.Marshal(struct {
		E []*kvstore.Entry
		S []*kvstore.Session
	}{entries, sessions})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeRouter routes every request to target, or per mode when byMode is set.
type fakeRouter struct {
	target string
	byMode map[RouteMode]string
}

func (f fakeRouter) Route(_ *http.Request, mode RouteMode) (string, error) {
	if f.byMode != nil {
		return f.byMode[mode], nil
	}
	return f.target, nil
}

// recorded is one request a backend saw.
type recorded struct {
	method, path, query, body string
	header                    http.Header
}

// recordingBackend stands in for a server's internal HTTP listener.
func recordingBackend(t *testing.T) (*httptest.Server, <-chan recorded) {
	t.Helper()
	got := make(chan recorded, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Clone()}
		w.Header().Set("X-Consul-Index", "77")
		w.Header().Set("X-Consul-LastContact", "0")
		_, _ = io.WriteString(w, `"from the server"`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func next(t *testing.T, ch <-chan recorded) recorded {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw no request")
		return recorded{}
	}
}

// On a client agent (no store) every store endpoint is forwarded to the
// server the router names, with its body, and the answer relayed.
func TestForwardWithoutStore(t *testing.T) {
	backend, got := recordingBackend(t)
	target := strings.TrimPrefix(backend.URL, "http://")
	e := startKV(t, nil, func(c *Config) {
		c.Router = fakeRouter{target: target}
		c.ForwardTransport = &http.Transport{}
	})
	cases := []struct {
		method, path, body string
	}{
		{"GET", "/v1/kv/cfg/x?stale", ""},
		{"GET", "/v1/kv/cfg/?recurse&index=3&wait=1s", ""},
		{"PUT", "/v1/kv/cfg/x?flags=3", "value"},
		{"DELETE", "/v1/kv/cfg/?recurse", ""},
		{"PUT", "/v1/txn", `[{"KV":{"Verb":"get","Key":"a"}}]`},
		{"PUT", "/v1/session/create", `{"TTL":"10s"}`},
		{"PUT", "/v1/session/renew/abc", ""},
		{"GET", "/v1/session/list", ""},
		{"GET", "/v1/operator/raft/configuration", ""},
		{"DELETE", "/v1/operator/raft/peer?id=x", ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, body, hdr := call(t, tc.method, e.base+tc.path, strings.NewReader(tc.body))
			if code != 200 || body != `"from the server"` || hdr.Get("X-Consul-Index") != "77" {
				t.Fatalf("got %d %q index %q, want the backend's answer", code, body, hdr.Get("X-Consul-Index"))
			}
			r := next(t, got)
			u, _ := url.Parse(tc.path)
			if r.method != tc.method || r.path != u.Path || r.query != u.RawQuery || r.body != tc.body {
				t.Errorf("backend saw %s %s?%s %q, want %s %s %q", r.method, r.path, r.query, r.body, tc.method, tc.path, tc.body)
			}
			if h := r.header.Get(hopsHeader); h != "1" {
				t.Errorf("%s = %q, want 1", hopsHeader, h)
			}
			if strings.HasPrefix(tc.path, "/v1/session/create") && r.header.Get(originNodeHeader) != "n1" {
				t.Errorf("%s = %q, want this agent's node n1", originNodeHeader, r.header.Get(originNodeHeader))
			}
		})
	}

	t.Run("no store and nowhere to forward", func(t *testing.T) {
		e := startKV(t, nil, func(c *Config) {
			c.Router = fakeRouter{target: ""}
			c.ForwardTransport = &http.Transport{}
		})
		code, body, _ := call(t, "GET", e.base+"/v1/kv/x", nil)
		if code != 500 || !strings.Contains(body, "no K/V store on this agent") {
			t.Errorf("got %d %q, want 500 naming the missing store", code, body)
		}
	})
}

// A server that is not the leader refuses a write it was handed as a stale
// transaction, without applying it, and sends it on to the leader.
func TestTxnWriteOnFollowerIsRerouted(t *testing.T) {
	backend, got := recordingBackend(t)
	st := newTestStore(t, false) // never leads
	e := startKV(t, st, func(c *Config) {
		c.Router = fakeRouter{byMode: map[RouteMode]string{
			RouteAnyServer: "",
			RouteLeader:    strings.TrimPrefix(backend.URL, "http://"),
		}}
		c.ForwardTransport = &http.Transport{}
	})
	body := `[{"KV":{"Verb":"set","Key":"k","Value":"dg=="}}]`
	code, resp, _ := call(t, "PUT", e.base+"/v1/txn?stale", strings.NewReader(body))
	if code != 200 || resp != `"from the server"` {
		t.Fatalf("got %d %q, want the leader's answer", code, resp)
	}
	if r := next(t, got); r.body != body || r.header.Get(hopsHeader) != "1" {
		t.Errorf("leader saw body %q hops %q, want the whole body and hop 1", r.body, r.header.Get(hopsHeader))
	}
	if e, _ := st.State().Get("k"); e != nil {
		t.Errorf("the follower applied the write: %+v", e)
	}
}

// Without a leader, default and consistent reads fail and stale reads are
// answered from local state, saying so in the headers.
func TestReadsWithoutLeader(t *testing.T) {
	st := newTestStore(t, false)
	e := startKV(t, st, nil)
	for _, q := range []string{"", "?consistent"} {
		code, body, _ := call(t, "GET", e.base+"/v1/kv/x"+q, nil)
		if code != 500 || !strings.Contains(body, "No cluster leader") {
			t.Errorf("GET%s: got %d %q, want 500 No cluster leader", q, code, body)
		}
	}
	code, body, hdr := call(t, "GET", e.base+"/v1/kv/x?stale", nil)
	if code != 404 || body != "" {
		t.Fatalf("stale GET: got %d %q, want 404 with an empty body", code, body)
	}
	want := map[string]string{"X-Consul-Index": "1", "X-Consul-KnownLeader": "false", "X-Consul-Effective-Consistency": "stale"}
	for k, v := range want {
		if hdr.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, hdr.Get(k), v)
		}
	}
	if hdr.Get("X-Consul-LastContact") == "" {
		t.Error("no X-Consul-LastContact")
	}
	// The Consul client reads it too.
	_, qm, err := e.client.KV().Get("x", &consul.QueryOptions{AllowStale: true})
	if err != nil || qm.KnownLeader {
		t.Errorf("client stale Get: meta %+v, err %v", qm, err)
	}
	code, body, _ = call(t, "PUT", e.base+"/v1/kv/x", strings.NewReader("v"))
	if code != 500 || !strings.Contains(body, "No cluster leader") {
		t.Errorf("PUT: got %d %q, want 500 No cluster leader", code, body)
	}
}

func TestReadMetaOnEveryRead(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	if _, err := e.client.KV().Put(&consul.KVPair{Key: "m", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v1/kv/m", "/v1/kv/missing", "/v1/kv/?recurse", "/v1/kv/?keys", "/v1/kv/m?raw",
		"/v1/session/list", "/v1/session/node/n1", "/v1/session/info/none",
		"/v1/operator/raft/configuration",
	} {
		for mode, q := range map[string]string{"leader": "", "consistent": "consistent", "stale": "stale"} {
			u := e.base + path
			if q != "" {
				u += map[bool]string{true: "&", false: "?"}[strings.Contains(path, "?")] + q
			}
			code, _, hdr := call(t, "GET", u, nil)
			if code != 200 && code != 404 {
				t.Errorf("GET %s: %d", u, code)
			}
			got := map[string]string{}
			for _, k := range []string{"X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact", "X-Consul-Effective-Consistency"} {
				got[k] = hdr.Get(k)
			}
			want := map[string]string{"X-Consul-Index": got["X-Consul-Index"], "X-Consul-KnownLeader": "true",
				"X-Consul-LastContact": "0", "X-Consul-Effective-Consistency": mode}
			if got["X-Consul-Index"] == "" || got["X-Consul-Index"] == "0" || !reflect.DeepEqual(got, want) {
				t.Errorf("GET %s: headers %v, want %v with an index ≥ 1", u, got, want)
			}
		}
	}
}
