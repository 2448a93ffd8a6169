package kvstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// tWriter sends each log record to t.Log, and drops records once the test
// is over (raft goroutines may log while shutting down).
type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger routes logs to t.Log; KVSTORE_TEST_LOG=debug shows raft's
// debug lines too.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	level := slog.LevelInfo
	if os.Getenv("KVSTORE_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type clusterOpts struct {
	tcp    bool // real TCP on 127.0.0.1 instead of raft's in-memory transport
	onDisk bool // bolt log store and file snapshots instead of memory
	tweak  func(*Config)
}

type testNode struct {
	cfg   Config
	store *Store
	trans *raft.InmemTransport // in-memory transport only
	down  bool
}

// cluster is n in-process servers bootstrapped together.
type cluster struct {
	t     testing.TB
	opts  clusterOpts
	nodes []*testNode
}

func newCluster(t testing.TB, n int, opts clusterOpts) *cluster {
	t.Helper()
	logger := testLogger(t)
	c := &cluster{t: t, opts: opts}
	for i := 0; i < n; i++ {
		cfg := Config{
			NodeID:   fmt.Sprintf("n%d", i),
			Timing:   FastTiming(),
			Logger:   logger.With("node", fmt.Sprintf("n%d", i)),
			InMemory: !opts.onDisk,
		}
		if opts.onDisk {
			cfg.DataDir = t.TempDir()
		}
		if opts.tcp {
			cfg.BindAddr = "127.0.0.1:0"
		}
		if opts.tweak != nil {
			opts.tweak(&cfg)
		}
		c.nodes = append(c.nodes, &testNode{cfg: cfg})
	}
	t.Cleanup(c.shutdown)
	for i := range c.nodes {
		c.start(i)
	}
	var servers []raft.Server
	for _, nd := range c.nodes {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(nd.cfg.NodeID), Address: raft.ServerAddress(nd.store.Addr())})
	}
	for _, nd := range c.nodes {
		if err := nd.store.Bootstrap(servers); err != nil {
			t.Fatalf("bootstrap %s: %v", nd.cfg.NodeID, err)
		}
	}
	return c
}

// start (re)starts node i with its config, keeping its data directory and
// address.
func (c *cluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	cfg := nd.cfg
	if !c.opts.tcp {
		addr := raft.ServerAddress(cfg.NodeID)
		_, nd.trans = raft.NewInmemTransport(addr)
		cfg.Transport = nd.trans
		for j, other := range c.nodes {
			if j == i || other.trans == nil || other.down && other.store != nil {
				continue
			}
			nd.trans.Connect(other.trans.LocalAddr(), other.trans)
			other.trans.Connect(addr, nd.trans)
		}
	}
	s, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	if c.opts.tcp {
		// Keep the chosen port for restarts.
		nd.cfg.BindAddr = s.Addr()
	}
	nd.store, nd.down = s, false
}

func (c *cluster) stop(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.down {
		return
	}
	nd.down = true
	if err := nd.store.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", nd.cfg.NodeID, err)
	}
	if nd.trans != nil {
		for _, other := range c.nodes {
			if other.trans != nil && other != nd {
				other.trans.Disconnect(nd.trans.LocalAddr())
			}
		}
	}
}

func (c *cluster) shutdown() {
	for i := range c.nodes {
		if c.nodes[i].store != nil {
			c.stop(i)
		}
	}
}

func (c *cluster) live() []*Store {
	var out []*Store
	for _, nd := range c.nodes {
		if !nd.down {
			out = append(out, nd.store)
		}
	}
	return out
}

func (c *cluster) index(s *Store) int {
	for i, nd := range c.nodes {
		if nd.store == s {
			return i
		}
	}
	return -1
}

// leaderAmong waits until one of the given nodes is a leader that can
// serve linearizable reads, and returns it.
func (c *cluster) leaderAmong(timeout time.Duration, idx ...int) *Store {
	c.t.Helper()
	var leader *Store
	waitUntil(c.t, timeout, "a ready leader", func() bool {
		for _, i := range idx {
			s := c.nodes[i].store
			if c.nodes[i].down || !s.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := s.VerifyLeader(ctx)
			cancel()
			if err == nil {
				leader = s
				return true
			}
		}
		return false
	})
	return leader
}

func (c *cluster) leader() *Store {
	c.t.Helper()
	var idx []int
	for i, nd := range c.nodes {
		if !nd.down {
			idx = append(idx, i)
		}
	}
	return c.leaderAmong(10*time.Second, idx...)
}

// partition cuts the in-memory links between group and every other node.
func (c *cluster) partition(group ...int) {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i, a := range c.nodes {
		for j, b := range c.nodes {
			if in[i] != in[j] && a.trans != nil && b.trans != nil {
				a.trans.Disconnect(b.trans.LocalAddr())
			}
		}
	}
}

// heal reconnects every pair of running nodes.
func (c *cluster) heal() {
	for i, a := range c.nodes {
		for j, b := range c.nodes {
			if i != j && !a.down && !b.down {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
}

// apply applies cmd through whichever node leads, retrying while
// leadership moves (a loaded test machine may lose a leader at any time).
// Retried commands must be idempotent.
func (c *cluster) apply(cmd *Command) *Result {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := c.leader()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res, err := l.Apply(ctx, cmd)
		cancel()
		if err == nil {
			return res
		}
		retry := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrTimeout)
		if !retry || time.Now().After(deadline) {
			c.t.Fatalf("apply %s: %v", cmd.Type, err)
		}
		c.t.Logf("retrying %s after: %v", cmd.Type, err)
	}
}

// set writes key=value through whichever node leads.
func (c *cluster) set(key, value string) *Result {
	c.t.Helper()
	return c.apply(&Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: key, Value: []byte(value)}})
}

// waitValue waits until every running node holds key=value.
func (c *cluster) waitValue(key, value string) {
	c.t.Helper()
	waitUntil(c.t, 15*time.Second, fmt.Sprintf("%s=%s on every node", key, value), func() bool {
		for _, s := range c.live() {
			e, _ := s.State().Get(key)
			if e == nil || string(e.Value) != value {
				return false
			}
		}
		return true
	})
}

// waitConverged waits until every running node applied the same index and
// holds the same keys.
func (c *cluster) waitConverged() {
	c.t.Helper()
	waitUntil(c.t, 15*time.Second, "replicas to converge", func() bool {
		live := c.live()
		want, _ := live[0].State().List("")
		for _, s := range live[1:] {
			got, _ := s.State().List("")
			if len(got) != len(want) {
				return false
			}
			for i := range got {
				if got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) || got[i].ModifyIndex != want[i].ModifyIndex {
					return false
				}
			}
		}
		return true
	})
}

func TestClusterReplication(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts clusterOpts
	}{
		{"inmem", clusterOpts{}},
		{"tcp", clusterOpts{tcp: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, tc.opts)
			for i := 0; i < 30; i++ {
				c.set(fmt.Sprintf("k/%02d", i), "v")
			}
			c.waitConverged()
			l := c.leader()
			ctx := context.Background()

			servers, err := l.Configuration()
			if err != nil || len(servers) != 3 {
				t.Fatalf("Configuration() = %v, %v; want 3 servers", servers, err)
			}
			if l.LastContact() != 0 {
				t.Fatalf("leader LastContact = %s, want 0", l.LastContact())
			}
			for _, s := range c.live() {
				if s == l {
					continue
				}
				_, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "x"}})
				var nle *NotLeaderError
				if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.LeaderAddr != l.Addr() || nle.LeaderID != l.ID() {
					t.Fatalf("Apply on follower: err %v, want NotLeaderError naming %s at %s", err, l.ID(), l.Addr())
				}
				if err := s.VerifyLeader(ctx); !errors.Is(err, ErrNotLeader) {
					t.Fatalf("VerifyLeader on follower: %v, want ErrNotLeader", err)
				}
				if addr, id := s.Leader(); addr != l.Addr() || id != l.ID() {
					t.Fatalf("follower's Leader() = %s %s, want %s %s", addr, id, l.Addr(), l.ID())
				}
				if lc := s.LastContact(); lc <= 0 || lc > 5*time.Second {
					t.Fatalf("follower LastContact = %s", lc)
				}
			}
		})
	}
}

func TestLeaderFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts clusterOpts
	}{
		{"inmem", clusterOpts{}},
		{"tcp", clusterOpts{tcp: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, tc.opts)
			c.set("before", "1")
			old := c.leader()
			c.stop(c.index(old))
			l := c.leader()
			if l == old {
				t.Fatal("stopped leader still leads")
			}
			c.set("after", "2")
			c.waitValue("before", "1")
			c.waitValue("after", "2")
		})
	}
}

func TestPartitionedLeader(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.set("k", "1")
	old := c.leader()
	oldIdx := c.index(old)
	c.partition(oldIdx)

	// The isolated leader can neither write nor confirm reads.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := old.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "k", Value: []byte("minority")}})
	cancel()
	if err == nil {
		t.Fatal("write on the isolated leader succeeded")
	}
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrLeadershipLost) {
		t.Fatalf("write on the isolated leader: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	err = old.VerifyLeader(ctx)
	cancel()
	if err == nil {
		t.Fatal("VerifyLeader on the isolated leader succeeded")
	}

	// The majority elects a leader and goes on.
	var rest []int
	for i := range c.nodes {
		if i != oldIdx {
			rest = append(rest, i)
		}
	}
	l := c.leaderAmong(10*time.Second, rest...)
	if _, err := l.Apply(context.Background(), &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "k", Value: []byte("majority")}}); err != nil {
		t.Fatalf("write on the majority: %v", err)
	}
	if e, _ := old.State().Get("k"); string(e.Value) != "1" {
		t.Fatalf("isolated node sees k=%s before healing, want 1", e.Value)
	}

	c.heal()
	c.waitValue("k", "majority")
	c.waitConverged()
}

func TestSnapshotInstallToLaggingFollower(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{onDisk: true, tweak: func(cfg *Config) {
		cfg.SnapshotThreshold = 32
		cfg.TrailingLogs = 8
		cfg.SnapshotInterval = 50 * time.Millisecond
	}})
	l := c.leader()
	lag := (c.index(l) + 1) % 3
	c.partition(lag)
	for i := 0; i < 200; i++ {
		c.set(fmt.Sprintf("k/%03d", i), fmt.Sprint(i))
	}
	// The catalog travels in the snapshot too.
	c.apply(&Command{Type: CmdCatalogRegister, Register: &CatalogRegistration{
		Node: Node{Node: "n1", Address: "10.0.0.1"}, Service: &NodeService{Service: "web", Port: 80},
		Checks: []*HealthCheck{{CheckID: "web", ServiceID: "web", Status: HealthPassing}}}})
	if err := c.leader().Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.heal()
	c.waitConverged()
	follower := c.nodes[lag].store
	if got := follower.Stats()["last_snapshot_index"]; got == "0" || got == "" {
		t.Fatalf("lagging follower caught up without a snapshot (last_snapshot_index %q)", got)
	}
	if n := follower.State().Len(); n != 200 {
		t.Fatalf("follower has %d keys, want 200", n)
	}
	waitUntil(t, 15*time.Second, "the catalog on the lagging follower", func() bool {
		csn, _ := follower.State().CheckServiceNodes("web", nil, true)
		return len(csn) == 1 && csn[0].Service.Port == 80 && len(csn[0].Checks) == 1
	})
	if want, got := c.leader().State().ServiceIndex("web"), follower.State().ServiceIndex("web"); got != want {
		t.Fatalf("follower's index of web = %d, leader's %d", got, want)
	}
}

func TestFullRestartOnDisk(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{tcp: true, onDisk: true, tweak: func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
	}})
	// A fixed ID keeps the create idempotent if c.apply retries it.
	sess := c.apply(&Command{Type: CmdSessionCreate, Session: Session{ID: "3f0c8d2e-0000-4000-8000-000000000001", Name: "s"}})
	const n = 150
	for i := 0; i < n; i++ {
		if i == n/2 {
			c.waitConverged()
			for _, s := range c.live() {
				if err := s.Snapshot(); err != nil {
					t.Fatalf("snapshot %s: %v", s.ID(), err)
				}
			}
		}
		c.set(fmt.Sprintf("k/%03d", i), fmt.Sprint(i))
	}
	c.apply(&Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "lock", Session: sess.Session.ID}})
	c.waitConverged()
	want, wantIdx := c.leader().State().List("")

	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.leader()
	waitUntil(t, 15*time.Second, "every key back on every node", func() bool {
		for _, s := range c.live() {
			got, idx := s.State().List("")
			if len(got) != len(want) || idx < wantIdx {
				return false
			}
		}
		return true
	})
	for _, s := range c.live() {
		got, _ := s.State().List("")
		for i := range want {
			if got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) || got[i].ModifyIndex != want[i].ModifyIndex || got[i].Session != want[i].Session {
				t.Fatalf("%s after restart: %+v, want %+v", s.ID(), got[i], want[i])
			}
		}
		if x, _ := s.State().Session(sess.Session.ID); x == nil {
			t.Fatalf("%s lost session %s", s.ID(), sess.Session.ID)
		}
	}
}

// TestMembership grows a cluster from one bootstrapped server with
// AddVoter and shrinks it with RemoveServer.
func TestMembership(t *testing.T) {
	logger := testLogger(t)
	var stores []*Store
	var transports []*raft.InmemTransport
	for i := 0; i < 3; i++ {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("m%d", i)))
		for _, other := range transports {
			trans.Connect(other.LocalAddr(), other)
			other.Connect(addr, trans)
		}
		transports = append(transports, trans)
		s, err := New(Config{NodeID: fmt.Sprintf("m%d", i), InMemory: true, Transport: trans, Timing: FastTiming(), Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown() })
		stores = append(stores, s)
	}
	if err := stores[0].Bootstrap(nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "m0 to lead", func() bool { return stores[0].VerifyLeader(context.Background()) == nil })
	ctx := context.Background()
	if err := stores[1].AddVoter(ctx, "m2", stores[2].Addr()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a non-member: %v, want ErrNotLeader", err)
	}
	for _, s := range stores[1:] {
		if err := stores[0].AddVoter(ctx, s.ID(), s.Addr()); err != nil {
			t.Fatalf("AddVoter %s: %v", s.ID(), err)
		}
	}
	if _, err := stores[0].Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "k", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "k on every server", func() bool {
		for _, s := range stores {
			if e, _ := s.State().Get("k"); e == nil {
				return false
			}
		}
		return true
	})
	servers, err := stores[2].Configuration()
	if err != nil || len(servers) != 3 {
		t.Fatalf("Configuration on m2 = %v, %v; want 3 servers", servers, err)
	}
	if err := stores[0].RemoveServer(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "m2 out of the configuration", func() bool {
		servers, err := stores[0].Configuration()
		return err == nil && len(servers) == 2
	})
}

// LeaderContext names the leader on every server, and its context ends on
// each of them when another leader is elected (here: the leader stops).
func TestLeaderContext(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	old := c.leader()
	type seen struct {
		s   *Store
		ctx context.Context
	}
	var views []seen
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range c.live() {
		for {
			addr, ctx := s.LeaderContext()
			if addr == old.Addr() {
				if ctx.Err() != nil {
					t.Fatalf("%s: the context of the current leader has ended", s.ID())
				}
				views = append(views, seen{s, ctx})
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: LeaderContext names %q, want the leader %s", s.ID(), addr, old.Addr())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.stop(c.index(old))
	l := c.leader()
	for _, v := range views {
		if v.s == old {
			continue
		}
		select {
		case <-v.ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the old leader's context did not end after %s was elected", v.s.ID(), l.ID())
		}
		if addr, ctx := v.s.LeaderContext(); addr != l.Addr() || ctx.Err() != nil {
			t.Errorf("%s: LeaderContext after the election: %q (ended: %v), want %s and a live context", v.s.ID(), addr, ctx.Err(), l.Addr())
		}
	}
}
