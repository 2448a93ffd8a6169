package httpapi

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// blackHole accepts connections and never answers: a server cut off by a
// partition, as the forwarding agent sees it.
func blackHole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// leaderRouter routes leader-bound requests to its leader, and tracks it
// as a server's Store does: setLeader ends the context of the last one.
type leaderRouter struct {
	mu     sync.Mutex
	leader string
	ctx    context.Context
	cancel context.CancelFunc
}

func newLeaderRouter(leader string) *leaderRouter {
	l := &leaderRouter{leader: leader}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

func (l *leaderRouter) setLeader(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel()
	l.leader = addr
	l.ctx, l.cancel = context.WithCancel(context.Background())
}

func (l *leaderRouter) Route(*http.Request, RouteMode) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader, nil
}

func (l *leaderRouter) LeaderContext() (string, context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader, l.ctx
}

// A write forwarded to a server that never answers ends with a 504 saying
// its outcome is unknown, after ForwardTimeout; a blocking query is not
// cut short by it.
func TestForwardTimeout(t *testing.T) {
	t.Parallel()
	hole := blackHole(t)
	e := startKV(t, nil, func(c *Config) {
		c.Router = fakeRouter{target: hole}
		c.ForwardTransport = &http.Transport{}
		c.ForwardTimeout = 300 * time.Millisecond
	})
	start := time.Now()
	code, body, _ := call(t, "PUT", e.base+"/v1/kv/a", strings.NewReader("x"))
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "outcome is unknown") {
		t.Errorf("PUT through a silent server: %d %q, want 504 saying the outcome is unknown", code, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with a 300ms forward timeout", d)
	}

	// A blocking query waits past ForwardTimeout (the client's own
	// timeout ends it here).
	cl := &http.Client{Timeout: time.Second}
	start = time.Now()
	_, err := cl.Get(e.base + "/v1/kv/a?index=5&wait=10s")
	if err == nil || time.Since(start) < 900*time.Millisecond {
		t.Errorf("blocking query through a silent server ended after %v (%v), want it held past the forward timeout", time.Since(start), err)
	}
}

// A write forwarded to a leader that is replaced while it is in flight is
// abandoned at once with a 500 naming the cause.
func TestForwardLeaderChanged(t *testing.T) {
	t.Parallel()
	hole := blackHole(t)
	lr := newLeaderRouter(hole)
	e := startKV(t, nil, func(c *Config) {
		c.Router = lr
		c.ForwardTransport = &http.Transport{}
		c.ForwardTimeout = time.Minute
	})
	go func() {
		time.Sleep(200 * time.Millisecond)
		lr.setLeader("127.0.0.1:1")
	}()
	start := time.Now()
	code, body, _ := call(t, "PUT", e.base+"/v1/kv/a", strings.NewReader("x"))
	if code != http.StatusInternalServerError || !strings.Contains(body, "was replaced") {
		t.Errorf("PUT to a replaced leader: %d %q, want 500 saying the leader was replaced", code, body)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v; the leader changed after 200ms", d)
	}
}

// seqRouter answers its routes in turn, then the last one for ever.
type seqRouter struct {
	mu     sync.Mutex
	routes []string
}

func (s *seqRouter) Route(*http.Request, RouteMode) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.routes[0]
	if len(s.routes) > 1 {
		s.routes = s.routes[1:]
	}
	return r, nil
}

// When the leader it forwarded to is gone and the Router then says this
// agent may answer (it became the leader), the request is served here.
func TestForwardServesLocallyAfterElection(t *testing.T) {
	t.Parallel()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	e := startKV(t, newTestStore(t, true), func(c *Config) {
		c.Router = &seqRouter{routes: []string{deadAddr, ""}}
		c.ForwardTransport = &http.Transport{}
	})
	code, body, _ := call(t, "PUT", e.base+"/v1/kv/a", strings.NewReader("x"))
	if code != 200 || strings.TrimSpace(body) != "true" {
		t.Fatalf("PUT: %d %q, want it served here", code, body)
	}
	if ent, _ := e.store.State().Get("a"); ent == nil || string(ent.Value) != "x" {
		t.Errorf("stored %+v, want a=x", ent)
	}
}
