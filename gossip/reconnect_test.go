package gossip

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// reconnectConfig makes a node reconnect every 100ms, and stops
// memberlist gossiping to members it declared dead (for 5s otherwise):
// that gossip reaches a member back within that time without the
// reconnect loop.
func reconnectConfig(i int, c *Config) {
	c.ReconnectInterval = 100 * time.Millisecond
	c.Tune = func(mc *memberlist.Config) {
		fastTimings(mc)
		mc.GossipToTheDeadTime = 0
	}
}

// partition cuts nd off from the members at addrs, both ways as far as nd
// sends anything; nil heals it.
func (nd *testNode) partition(addrs ...string) {
	if addrs == nil {
		nd.tr.blocked.Store(nil)
		return
	}
	f := func(addr string) bool { return slices.Contains(addrs, addr) }
	nd.tr.blocked.Store(&f)
}

func reconnectSuccesses(nodes ...*testNode) float64 {
	n := 0.0
	for _, nd := range nodes {
		n += testutil.ToFloat64(nd.met.reconnected)
	}
	return n
}

// A partition splits the cluster in two groups that each see the other
// failed; memberlist alone would never probe them again. When it heals,
// the reconnect loop joins the groups.
func TestReconnectHealsPartition(t *testing.T) {
	nodes := makeCluster(t, 4, reconnectConfig)
	left, right := nodes[:2], nodes[2:]
	addrs := func(ns []*testNode) []string {
		var out []string
		for _, nd := range ns {
			out = append(out, nd.addr)
		}
		return out
	}
	for _, nd := range left {
		nd.partition(addrs(right)...)
	}
	for _, nd := range right {
		nd.partition(addrs(left)...)
	}
	for _, nd := range right {
		waitStatus(t, left, nd.name, StatusFailed, 30*time.Second)
	}
	for _, nd := range left {
		waitStatus(t, right, nd.name, StatusFailed, 30*time.Second)
	}
	// Attempts across the partition fail and change nothing.
	waitFor(t, 10*time.Second, "reconnect attempts during the partition", func() error {
		for _, nd := range nodes {
			if n := testutil.ToFloat64(nd.met.reconnects); n < 2 {
				return fmt.Errorf("%s: %v attempts", nd.name, n)
			}
		}
		return nil
	})
	if n := reconnectSuccesses(nodes...); n != 0 {
		t.Fatalf("%v reconnects succeeded across the partition", n)
	}

	for _, nd := range nodes {
		nd.partition()
	}
	waitAllSee(t, nodes, 4)
	if n := reconnectSuccesses(nodes...); n < 1 {
		t.Errorf("healed with %v successful reconnects, want at least 1", n)
	}
	var logged bool
	for _, nd := range nodes {
		if _, ok := nd.logs.find("level=INFO", "reconnected to failed member", "failed_for="); ok {
			logged = true
		}
	}
	if !logged {
		t.Error("no reconnect logged")
	}
	if n, err := testutil.GatherAndCount(nodes[0].reg,
		"outrigger_gossip_reconnect_attempts_total", "outrigger_gossip_reconnect_successes_total"); err != nil || n != 2 {
		t.Errorf("reconnect series registered: %d, %v; want 2", n, err)
	}
}

// A group of agents restarted together meets only itself (here a group of
// one, with nothing to join); the members that saw it fail bring it back.
func TestReconnectRestartedMember(t *testing.T) {
	key := make([]byte, 32) // encrypted, as deployments are
	nodes := makeCluster(t, 3, func(i int, c *Config) {
		reconnectConfig(i, c)
		c.SecretKey = key
	})
	old := nodes[2]
	_, port := old.Addr()
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, nodes[:2], old.name, StatusFailed, 30*time.Second)

	cfg := testConfig(old.name)
	reconnectConfig(2, &cfg)
	cfg.SecretKey = key
	cfg.BindPort = port // no RetryJoin, no DataDir
	restarted := startNode(t, cfg)
	nodes[2] = restarted
	waitAllSee(t, nodes, 3)
	if n := reconnectSuccesses(nodes[:2]...); n < 1 {
		t.Errorf("%v successful reconnects, want at least 1", n)
	}
	if _, ok := restarted.logs.find("reconnected to failed member"); ok {
		t.Error("the restarted member reconnected, but it knew nobody")
	}
}

// Members that left are never reconnected, even when their address
// answers again; failed ones still are.
func TestReconnectSkipsLeftMembers(t *testing.T) {
	nodes := makeCluster(t, 4, reconnectConfig)
	stayers, leaver, failer := nodes[:2], nodes[2], nodes[3]
	_, port := leaver.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	leaver.Shutdown()
	failer.Shutdown()
	waitStatus(t, stayers, leaver.name, StatusLeft, 10*time.Second)
	waitStatus(t, stayers, failer.name, StatusFailed, 30*time.Second)

	// The left member's address answers again, with nothing to join.
	cfg := testConfig(leaver.name)
	cfg.BindPort = port
	back := startNode(t, cfg)

	// Reconnect attempts go on (to the failed member)...
	before := make([]float64, len(stayers))
	for i, nd := range stayers {
		before[i] = testutil.ToFloat64(nd.met.reconnects)
	}
	waitFor(t, 10*time.Second, "reconnect attempts with the left member's address up", func() error {
		for i, nd := range stayers {
			if n := testutil.ToFloat64(nd.met.reconnects) - before[i]; n < 5 {
				return fmt.Errorf("%s: %v attempts", nd.name, n)
			}
		}
		return nil
	})
	// ...but none reached the left member's address.
	if n := reconnectSuccesses(stayers...); n != 0 {
		t.Errorf("%v reconnects succeeded", n)
	}
	if n := back.NumAlive(); n != 1 {
		t.Errorf("the left member's new run sees %d alive, want only itself", n)
	}
	for _, nd := range stayers {
		if m, _ := nd.Member(leaver.name); m.Status != StatusLeft {
			t.Errorf("%s sees %s %s, want left", nd.name, leaver.name, m.Status)
		}
	}
}

// A member that is leaving or left does not reconnect.
func TestReconnectStopsAfterLeave(t *testing.T) {
	nodes := makeCluster(t, 2, reconnectConfig)
	nodes[1].Shutdown()
	waitStatus(t, nodes[:1], nodes[1].name, StatusFailed, 30*time.Second)
	waitFor(t, 10*time.Second, "a reconnect attempt", func() error {
		if n := testutil.ToFloat64(nodes[0].met.reconnects); n < 1 {
			return fmt.Errorf("%v attempts", n)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes[0].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	// What the next tick does; with the member still failed and nobody
	// else alive it would otherwise always try.
	if nodes[0].reconnect(context.Background()) {
		t.Errorf("reconnect attempted after Leave")
	}
}

func TestReconnectCandidates(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tb := newMemberTable("self")
	at := func(name string, port uint16) Member {
		return Member{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: port}
	}
	for i, name := range []string{"self", "alive", "failed", "old", "left", "leaving", "moved"} {
		tb.alive(at(name, uint16(1000+i)), uint64(i+1), now.Add(-3*time.Hour))
	}
	tb.gone(at("failed", 1002), 3, false, now.Add(-time.Minute))
	tb.gone(at("old", 1003), 4, false, now.Add(-2*time.Hour)) // past the timeout, about to be reaped
	tb.leaveIntent("left", 5, now)
	tb.gone(at("left", 1004), 5, false, now)
	tb.leaveIntent("leaving", 6, now)
	tb.gone(at("moved", 1006), 7, false, now.Add(-time.Minute))
	tb.alive(at("other", 1006), 8, now) // took moved's address over

	failed, alive := tb.reconnectCandidates(now, time.Hour)
	var names []string
	for _, m := range failed {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"failed"}) {
		t.Errorf("candidates %q, want [failed]", names)
	}
	if alive != 4 { // self, alive, leaving, other
		t.Errorf("alive %d, want 4", alive)
	}
}

func TestPickReconnect(t *testing.T) {
	ms := []Member{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	never := func() float64 { t.Fatal("random number drawn"); return 0 }
	if _, ok := pickReconnect(nil, 5, never, nil); ok {
		t.Error("picked a member from none")
	}
	fixed := func(f float64) func() float64 { return func() float64 { return f } }
	idx := func(i int) func(int) int { return func(n int) int { return i } }
	tests := []struct {
		n, alive int
		draw     float64
		want     string // "" = no attempt
	}{
		{1, 4, 0.24, "a"}, // chance 1/4
		{1, 4, 0.25, ""},
		{2, 4, 0.49, "b"}, // chance 2/4
		{2, 4, 0.5, ""},
		{3, 2, 0.99, "c"}, // more failed than alive: always
		{1, 0, 0.99, "a"}, // alive counts as at least 1
	}
	for _, tt := range tests {
		m, ok := pickReconnect(ms[:tt.n], tt.alive, fixed(tt.draw), idx(tt.n-1))
		if got := map[bool]string{true: m.Name}[ok]; got != tt.want {
			t.Errorf("%d failed, %d alive, draw %v: picked %q, want %q", tt.n, tt.alive, tt.draw, got, tt.want)
		}
	}
}
