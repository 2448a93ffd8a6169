package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger/outrigger/catalog"
	tu "github.com/outrigger/outrigger/internal/testutil"
)

// memSource is an in-memory Source: the services a test sets, with Watch
// signals on every change.
type memSource struct {
	mu       sync.Mutex
	svcs     map[string][]catalog.ServiceEntry
	watchers map[string]map[chan struct{}]struct{}
	reads    atomic.Int64
}

func newMemSource() *memSource {
	return &memSource{svcs: map[string][]catalog.ServiceEntry{}, watchers: map[string]map[chan struct{}]struct{}{}}
}

func (s *memSource) Service(ctx context.Context, name string) (catalog.Snapshot, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return catalog.Snapshot{Service: name, Entries: append([]catalog.ServiceEntry(nil), s.svcs[strings.ToLower(name)]...), Fetched: time.Now()}, nil
}

func (s *memSource) Watch(name string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	name = strings.ToLower(name)
	s.mu.Lock()
	if s.watchers[name] == nil {
		s.watchers[name] = map[chan struct{}]struct{}{}
	}
	s.watchers[name][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers[name], ch)
		s.mu.Unlock()
	}
}

func (s *memSource) set(name string, entries ...catalog.ServiceEntry) {
	name = strings.ToLower(name)
	s.mu.Lock()
	s.svcs[name] = entries
	for ch := range s.watchers[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// entry is an instance of service at addr ("host:port") on node.
func entry(service, id, node, addr string, opts ...func(*catalog.ServiceEntry)) catalog.ServiceEntry {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	e := catalog.ServiceEntry{
		Node:    catalog.Node{Node: node, Address: host},
		Service: catalog.Service{ID: id, Service: service, Port: p},
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func withTags(tags ...string) func(*catalog.ServiceEntry) {
	return func(e *catalog.ServiceEntry) { e.Service.Tags = tags }
}

func withMeta(kv ...string) func(*catalog.ServiceEntry) {
	return func(e *catalog.ServiceEntry) {
		e.Service.Meta = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Service.Meta[kv[i]] = kv[i+1]
		}
	}
}

func critical(e *catalog.ServiceEntry) {
	e.Checks = append(e.Checks, catalog.HealthCheck{Node: e.Node.Node, CheckID: "c", Status: catalog.StatusCritical, ServiceID: e.Service.ID})
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type testEnv struct {
	t   *testing.T
	src *memSource
	m   *Manager
	reg *prometheus.Registry
}

func newEnv(t *testing.T, tweak ...func(*Config)) *testEnv {
	t.Helper()
	src := newMemSource()
	reg := prometheus.NewRegistry()
	done := new(atomic.Bool)
	t.Cleanup(func() { done.Store(true) })
	cfg := Config{
		Source:       src,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t, done}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer:   reg,
		DrainTimeout: 5 * time.Second,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Close(ctx)
	})
	return &testEnv{t: t, src: src, m: m, reg: reg}
}

// upstream applies one sidecar with one upstream and returns its address.
func (env *testEnv) upstream(u Upstream) string {
	env.t.Helper()
	if u.LocalBindPort == 0 {
		u.LocalBindPort = tu.FreePort(env.t)
	}
	if err := env.m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "app-sidecar-proxy", Upstreams: []Upstream{u}}}}); err != nil {
		env.t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(u.LocalBindPort))
}

// tcpBackend answers each connection with its name and a newline, then
// echoes what it reads until EOF, then closes.
type tcpBackend struct {
	name  string
	ln    net.Listener
	conns atomic.Int64 // accepted
	open  atomic.Int64
}

func newTCPBackend(t *testing.T, name string) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{name: name, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.open.Add(1)
			go func() {
				defer b.open.Add(-1)
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				// Plain read/write (no splice: its pipes would count in
				// TestL4IdleConnectionsHoldNoPipes).
				io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
			}()
		}
	}()
	return b
}

func (b *tcpBackend) addr() string { return b.ln.Addr().String() }

// dialName connects through the proxy and returns the backend's name, and
// the connection (open).
func dialName(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

func name(t *testing.T, addr string) string {
	t.Helper()
	n, c := dialName(t, addr)
	if c != nil {
		c.Close()
	}
	return n
}

// httpBackend answers with its name in the body and in X-Backend, and
// records the last request's headers.
type httpBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	code atomic.Int64 // status to answer; 0 = 200
	last atomic.Pointer[http.Header]
}

func newHTTPBackend(t *testing.T, name string) *httpBackend {
	b := &httpBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h := r.Header.Clone()
		h.Set("X-Path", r.URL.Path)
		h.Set("X-Method", r.Method)
		b.last.Store(&h)
		w.Header().Set("X-Backend", name)
		if c := b.code.Load(); c != 0 {
			w.WriteHeader(int(c))
		}
		if r.Body != nil {
			body, _ := io.ReadAll(r.Body)
			if len(body) > 0 {
				fmt.Fprintf(w, "%s:%s", name, body)
				return
			}
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *httpBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	tu.WaitFor(t, 10*time.Second, what, cond)
}

type catalogEntry = catalog.ServiceEntry

// clustersNamed returns the running clusters with a display name.
func (m *Manager) clustersNamed(name string) []*cluster {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*cluster
	for _, c := range m.clusters {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}
