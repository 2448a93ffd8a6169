package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// fastTimings shortens memberlist's loopback timings further so failure
// detection takes 1-4s instead of 5-20s, with enough slack for -race on a
// loaded two-core machine (a wrongly suspected member has at least 1.2s
// to refute).
func fastTimings(c *memberlist.Config) {
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 200 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.SuspicionMult = 4
	c.SuspicionMaxTimeoutMult = 3
	c.TCPTimeout = 2 * time.Second
	c.GossipToTheDeadTime = 5 * time.Second
}

// logCapture collects a node's log lines for assertions and mirrors them
// to t.Log. Lines arriving after the test ended (memberlist goroutines
// finishing) are kept but not passed to t.Log, which would panic.
type logCapture struct {
	t     testing.TB
	mu    sync.Mutex
	ended bool
	lines []string
}

func newLogCapture(t testing.TB) *logCapture {
	lc := &logCapture{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		lc.mu.Lock()
		lc.ended = true
		lc.mu.Unlock()
	})
	return lc
}

func (lc *logCapture) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.lines = append(lc.lines, line)
	if !lc.ended {
		lc.t.Log(line)
	}
	return len(p), nil
}

// logger returns a logger for node name. GOSSIP_TEST_DEBUG=1 adds
// memberlist's debug lines.
func (lc *logCapture) logger(name string) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("GOSSIP_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(lc, &slog.HandlerOptions{Level: level})).With("node", name)
}

// find returns the first captured line containing all of subs.
func (lc *logCapture) find(subs ...string) (string, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
outer:
	for _, l := range lc.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue outer
			}
		}
		return l, true
	}
	return "", false
}

// count returns how many captured lines contain s.
func (lc *logCapture) count(s string) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	n := 0
	for _, l := range lc.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

type testNode struct {
	*Gossip
	name string
	logs *logCapture
	reg  *prometheus.Registry
	addr string // ip:port
}

// testConfig is a loopback config on a random port with fast timings.
func testConfig(name string) Config {
	return Config{
		NodeName:         name,
		BindAddr:         "127.0.0.1",
		Profile:          ProfileLocal,
		Tags:             map[string]string{TagRole: "node", TagDatacenter: "dc1", TagID: "id-" + name},
		RetryInterval:    50 * time.Millisecond,
		RetryMaxInterval: 200 * time.Millisecond,
		Tune:             fastTimings,
	}
}

// startNode creates and starts a node; it is shut down when the test ends.
func startNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	logs := newLogCapture(t)
	reg := prometheus.NewRegistry()
	cfg.Logger = logs.logger(cfg.NodeName)
	cfg.Registerer = reg
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	g.Start(ctx)
	ip, port := g.Addr()
	return &testNode{Gossip: g, name: cfg.NodeName, logs: logs, reg: reg, addr: fmt.Sprintf("%s:%d", ip, port)}
}

// makeCluster starts n nodes named node0..node<n-1>, joins them to node0
// and waits until every node sees n alive members. mutate, if not nil,
// adjusts each node's config.
func makeCluster(t testing.TB, n int, mutate func(i int, c *Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		cfg := testConfig(fmt.Sprintf("node%d", i))
		if mutate != nil {
			mutate(i, &cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, nd := range nodes[1:] {
		if _, err := nd.Join(ctx, []string{nodes[0].addr}); err != nil {
			t.Fatalf("%s: join %s: %v", nd.name, nodes[0].addr, err)
		}
	}
	waitAllSee(t, nodes, n)
	return nodes
}

// waitAllSee waits until every node sees want alive members.
func waitAllSee(t testing.TB, nodes []*testNode, want int) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("every node sees %d alive", want), func() error {
		for _, nd := range nodes {
			if got := nd.NumAlive(); got != want {
				return fmt.Errorf("%s sees %d alive, want %d", nd.name, got, want)
			}
		}
		return nil
	})
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStatus waits until every observer sees member name with status st.
func waitStatus(t testing.TB, observers []*testNode, name string, st Status, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s seen %s", name, st), func() error {
		for _, o := range observers {
			m, ok := o.Member(name)
			if !ok {
				return fmt.Errorf("%s does not know %s", o.name, name)
			}
			if m.Status != st {
				return fmt.Errorf("%s sees %s %s, want %s", o.name, name, m.Status, st)
			}
		}
		return nil
	})
}

// waitEvent reads ch until an event of type typ about name arrives.
func waitEvent(t testing.TB, ch <-chan Event, typ EventType, name string, timeout time.Duration) Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed waiting for %s %s", typ, name)
			}
			if ev.Type == typ && ev.Member.Name == name {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s event for %s within %v", typ, name, timeout)
		}
	}
}
