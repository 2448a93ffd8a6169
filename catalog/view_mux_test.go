package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/gossip"
	"github.com/outrigger/outrigger/httpapi"
	"github.com/outrigger/outrigger/kvstore"
)

// serverAgent is the httpapi.Agent of a single server.
type serverAgent struct{}

func (serverAgent) Members() []gossip.Member {
	return []gossip.Member{{Name: "s1", Addr: net.ParseIP("127.0.0.1"), Port: 8301, Status: gossip.StatusAlive,
		Tags: map[string]string{"role": "consul", "dc": "dc1", "id": "srv1", "port": "8300"}}}
}
func (a serverAgent) LocalMember() gossip.Member                { return a.Members()[0] }
func (serverAgent) Join(context.Context, []string) (int, error) { return 0, errors.New("no") }
func (serverAgent) Leave(context.Context) error                 { return nil }
func (serverAgent) Self() httpapi.Self {
	return httpapi.Self{Datacenter: "dc1", NodeName: "s1", NodeID: "srv1", Server: true}
}

// countingTransport counts requests by path, tracks those in flight, and
// when down fails new requests and aborts those in flight.
type countingTransport struct {
	mu       sync.Mutex
	total    map[string]int
	inflight map[string]int
	down     bool
	abort    chan struct{}
}

func newCountingTransport() *countingTransport {
	return &countingTransport{total: map[string]int{}, inflight: map[string]int{}, abort: make(chan struct{})}
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return nil, errors.New("test: servers down")
	}
	p := r.URL.Path
	c.total[p]++
	c.inflight[p]++
	abort := c.abort
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.inflight[p]--; c.mu.Unlock() }()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := http.DefaultTransport.RoundTrip(r.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	// Read the body here, so that the in-flight count covers it.
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, nil
}

func (c *countingTransport) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
	if down {
		close(c.abort)
		c.abort = make(chan struct{})
	}
}

func (c *countingTransport) counts(path string) (total, inflight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total[path], c.inflight[path]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type muxEnv struct {
	client *catalog.HTTPClient
	tr     *countingTransport
	view   *catalog.View
}

// startMuxEnv runs a real single-server store behind the real HTTP API,
// and a View reading it through a countingTransport.
func startMuxEnv(t *testing.T, mutate func(*catalog.ViewConfig)) *muxEnv {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := kvstore.New(kvstore.Config{NodeID: "srv1", InMemory: true, Timing: kvstore.FastTiming(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Shutdown() })
	if err := st.Bootstrap(nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the store to lead", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return st.VerifyLeader(ctx) == nil
	})
	srv, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0", Agent: serverAgent{}, Store: st, Registry: prometheus.NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + srv.Addr().String()
	e := &muxEnv{tr: newCountingTransport()}
	e.client = &catalog.HTTPClient{Transport: e.tr, BaseURL: func(bool) (string, error) { return base, nil }}
	cfg := catalog.ViewConfig{Client: e.client, Wait: 5 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	e.view, err = catalog.NewView(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.view.Close() })
	return e
}

func (e *muxEnv) register(t *testing.T, node, addr string, svc catalog.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.client.Register(ctx, &catalog.RegisterRequest{Node: node, Address: addr, Service: &svc,
		Checks: []catalog.HealthCheck{{CheckID: "serfHealth", Name: "Serf", Status: catalog.StatusPassing}}}); err != nil {
		t.Fatal(err)
	}
}

// Fifty services are followed by one outstanding request; a change to
// one of them reaches its watchers and its Service result.
func TestViewMultiplexesServices(t *testing.T) {
	t.Parallel()
	e := startMuxEnv(t, nil)
	e.register(t, "n1", "10.0.0.1", catalog.Service{ID: "web-1", Service: "web", Port: 80})
	e.register(t, "n2", "10.0.0.2", catalog.Service{ID: "web-2", Service: "web", Port: 80})
	e.register(t, "n2", "10.0.0.2", catalog.Service{ID: "api", Service: "api", Port: 9090})
	for i := range 20 {
		e.register(t, fmt.Sprintf("m%d", i), fmt.Sprintf("10.1.0.%d", i+1), catalog.Service{Service: fmt.Sprintf("svc%d", i), Port: 9000})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap, err := e.view.Service(ctx, "web")
	if err != nil || len(snap.Entries) != 2 || snap.Index == 0 || snap.Stale || !snap.KnownLeader {
		t.Fatalf("Service(web) = %+v, %v", snap, err)
	}
	ch, stop := e.view.Watch("api")
	defer stop()
	<-ch // the first result
	names := []string{"web", "api"}
	for i := range 48 { // 20 registered, 28 unknown
		names = append(names, fmt.Sprintf("svc%d", i))
	}
	for i, n := range names {
		snap, err := e.view.Service(ctx, n)
		if err != nil {
			t.Fatalf("Service(%s): %v", n, err)
		}
		if i >= 2 && (len(snap.Entries) == 1) != (i-2 < 20) {
			t.Fatalf("Service(%s) = %d entries", n, len(snap.Entries))
		}
	}
	if got := e.view.Services(); len(got) != 50 {
		t.Fatalf("%d subscriptions, want 50", len(got))
	}
	waitUntil(t, "one blocking health-watch request for all", func() bool {
		_, in := e.tr.counts(catalog.HealthWatchPath)
		return in == 1
	})
	total, _ := e.tr.counts(catalog.HealthWatchPath)
	if per, _ := e.tr.counts("/v1/health/service/web"); per != 0 {
		t.Fatalf("%d per-service reads; want none", per)
	}
	if total > 60 {
		t.Fatalf("%d health-watch requests for 50 services", total)
	}
	t.Logf("%d health-watch requests for 50 services", total)

	// A change to api wakes the one request; api's watchers hear of it.
	e.register(t, "n2", "10.0.0.2", catalog.Service{ID: "api", Service: "api", Port: 9999})
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("api's watcher not told of the change")
	}
	snap, err = e.view.Service(ctx, "api")
	if err != nil || len(snap.Entries) != 1 || snap.Entries[0].Service.Port != 9999 {
		t.Fatalf("Service(api) after the change = %+v, %v", snap, err)
	}
	// A service registered after it was first asked for shows up.
	e.register(t, "m40", "10.2.0.40", catalog.Service{Service: "svc40", Port: 9040})
	waitUntil(t, "svc40's new instance", func() bool {
		s, ok := e.view.Peek("svc40")
		return ok && len(s.Entries) == 1
	})
	waitUntil(t, "one blocking request again", func() bool {
		_, in := e.tr.counts(catalog.HealthWatchPath)
		return in == 1
	})
}

// With the servers unreachable the view keeps its results, marked stale,
// and recovers when they come back; unused services still expire.
func TestViewMultiplexedStaleAndExpiry(t *testing.T) {
	t.Parallel()
	e := startMuxEnv(t, func(c *catalog.ViewConfig) { c.IdleTimeout = 2 * time.Second })
	e.register(t, "n1", "10.0.0.1", catalog.Service{ID: "web-1", Service: "web", Port: 80})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.view.Service(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	_, stop := e.view.Watch("web") // kept: watched
	defer stop()
	if _, err := e.view.Service(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the blocking request", func() bool { _, in := e.tr.counts(catalog.HealthWatchPath); return in == 1 })

	e.tr.setDown(true)
	waitUntil(t, "web marked stale", func() bool {
		s, ok := e.view.Peek("web")
		return ok && s.Stale && s.Err != nil && len(s.Entries) == 1
	})
	if s, err := e.view.Service(ctx, "web"); err != nil || len(s.Entries) != 1 || !s.Stale {
		t.Fatalf("Service(web) while down = %+v, %v; want the last result, stale", s, err)
	}
	e.tr.setDown(false)
	waitUntil(t, "web fresh again", func() bool {
		s, ok := e.view.Peek("web")
		return ok && !s.Stale && s.Err == nil && len(s.Entries) == 1
	})

	// db is not used any more: it expires; web is watched: it stays.
	waitUntil(t, "db to expire", func() bool {
		got := e.view.Services()
		return len(got) == 1 && got[0] == "web"
	})
	if s, err := e.view.Service(ctx, "db"); err != nil || s.Stale {
		t.Fatalf("Service(db) after expiry = %+v, %v; want a fresh subscription", s, err)
	}
}

// Servers without the endpoint (404): the view follows each service with
// its own blocking read.
func TestViewFallsBackWithoutHealthWatch(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		if r.URL.Path != "/v1/health/service/web" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("index") != "" {
			select { // block, as a blocking read does
			case <-r.Context().Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
		w.Header().Set("X-Consul-Index", "5")
		io.WriteString(w, `[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web","Service":"web","Port":80},"Checks":[]}]`)
	}))
	defer srv.Close()
	v, err := catalog.NewView(catalog.ViewConfig{Client: &catalog.HTTPClient{BaseURL: func(bool) (string, error) { return srv.URL, nil }}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := v.Service(ctx, "web")
	if err != nil || len(s.Entries) != 1 {
		t.Fatalf("Service(web) = %+v, %v", s, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["POST "+catalog.HealthWatchPath] != 1 || hits["GET /v1/health/service/web"] < 1 {
		t.Fatalf("requests %v; want one health-watch (404), then per-service reads", hits)
	}
}
