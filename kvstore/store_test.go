package kvstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// newDevStore starts a single in-memory server, as -dev does, and waits
// until it leads.
func newDevStore(t *testing.T, tweak func(*Config)) *Store {
	t.Helper()
	cfg := Config{NodeID: "dev", InMemory: true, Timing: FastTiming(), Logger: testLogger(t)}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	if err := s.Bootstrap(nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "dev store to lead", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.VerifyLeader(ctx) == nil
	})
	return s
}

func TestConfigValidate(t *testing.T) {
	base := func() Config { return Config{NodeID: "n1", DataDir: "/tmp/x", BindAddr: "127.0.0.1:8300"} }
	cases := []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"in memory needs no dir", func(c *Config) { c.DataDir = ""; c.InMemory = true }, ""},
		{"no node ID", func(c *Config) { c.NodeID = "" }, "NodeID"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bad bind", func(c *Config) { c.BindAddr = "nope" }, "BindAddr"},
		{"unspecified bind without advertise", func(c *Config) { c.BindAddr = "0.0.0.0:8300" }, "Advertise"},
		{"unspecified bind with advertise", func(c *Config) { c.BindAddr = "0.0.0.0:8300"; c.Advertise = "10.0.0.1:8300" }, ""},
		{"lease above heartbeat", func(c *Config) { c.Timing = FastTiming(); c.Timing.LeaderLeaseTimeout = time.Hour }, "Timing.LeaderLeaseTimeout"},
		{"tiny timing", func(c *Config) { c.Timing = Timing{HeartbeatTimeout: 1} }, "Timing.HeartbeatTimeout"},
		{"max append entries", func(c *Config) { c.MaxAppendEntries = 5000 }, "MaxAppendEntries"},
		{"negative tombstone TTL", func(c *Config) { c.TombstoneTTL = -1 }, "TombstoneTTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
	d := DefaultConfig()
	if d.Timing != DefaultTiming() || d.SnapshotThreshold != 8192 || d.BindAddr != "0.0.0.0:8300" || d.MinSessionTTL != 10*time.Second {
		t.Fatalf("DefaultConfig() = %+v", d)
	}
}

func TestDevStore(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newDevStore(t, func(c *Config) { c.Registerer = reg })
	ctx := context.Background()

	if err := s.Bootstrap(nil); err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	res, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "a", Value: []byte("1")}})
	if err != nil || !res.OK {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	// Apply returns after the write is visible locally.
	if e, idx := s.State().Get("a"); e == nil || idx != res.Index {
		t.Fatalf("Get after Apply = %+v at %d, want the write at %d", e, idx, res.Index)
	}
	res, err = s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbCAS, Key: "a", Index: 1}})
	if err != nil || res.OK {
		t.Fatalf("stale cas = %+v, %v; want OK false, no error", res, err)
	}

	t.Run("validation", func(t *testing.T) {
		_, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "big", Value: make([]byte, MaxValueSize+1)}})
		if !errors.Is(err, ErrValueTooLarge) {
			t.Fatalf("oversized value: %v", err)
		}
		_, err = s.Apply(ctx, &Command{Type: CmdSessionCreate, Session: Session{TTL: time.Second}})
		if !errors.Is(err, ErrInvalidSessionTTL) {
			t.Fatalf("TTL below MinSessionTTL: %v", err)
		}
		_, err = s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "l", Session: "missing"}})
		if !errors.Is(err, ErrInvalidSession) {
			t.Fatalf("acquire with a missing session: %v", err)
		}
	})

	t.Run("session IDs", func(t *testing.T) {
		res, err := s.Apply(ctx, &Command{Type: CmdSessionCreate, Session: Session{Name: "x"}})
		if err != nil || res.Session == nil || len(res.Session.ID) != 36 {
			t.Fatalf("session create = %+v, %v; want a generated UUID", res, err)
		}
		if _, err := s.RenewSession(ctx, "missing"); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("renew of a missing session: %v", err)
		}
	})

	t.Run("verify coalesces", func(t *testing.T) {
		before := counterValue(t, reg, "outrigger_kvstore_verify_leader_rounds_total")
		const n = 64
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs <- s.VerifyLeader(ctx)
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		rounds := counterValue(t, reg, "outrigger_kvstore_verify_leader_rounds_total") - before
		if rounds < 1 || rounds > n {
			t.Fatalf("%d concurrent VerifyLeader calls took %v rounds, want between 1 and %d", n, rounds, n)
		}
		t.Logf("%d concurrent VerifyLeader calls shared %v rounds", n, rounds)
	})

	t.Run("metrics", func(t *testing.T) {
		if v := counterValue(t, reg, "outrigger_kvstore_is_leader"); v != 1 {
			t.Fatalf("is_leader = %v, want 1", v)
		}
		if v := counterValue(t, reg, "outrigger_kvstore_keys"); v != 1 {
			t.Fatalf("keys = %v, want 1", v)
		}
	})
}

// counterValue reads one unlabelled counter or gauge from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestSessionTTL(t *testing.T) {
	s := newDevStore(t, func(c *Config) { c.MinSessionTTL = 10 * time.Millisecond })
	ctx := context.Background()

	create := func(ttl time.Duration) string {
		t.Helper()
		res, err := s.Apply(ctx, &Command{Type: CmdSessionCreate, Session: Session{TTL: ttl}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Session.ID
	}
	exists := func(id string) bool {
		x, _ := s.State().Session(id)
		return x != nil
	}

	expiring := create(100 * time.Millisecond)
	if res, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "lock", Value: []byte("v"), Session: expiring}}); err != nil || !res.OK {
		t.Fatalf("acquire = %+v, %v", res, err)
	}
	renewed := create(300 * time.Millisecond)

	// Keep renewing one session while the other expires (after 2×TTL).
	stopRenew := make(chan struct{})
	renewErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopRenew:
				renewErr <- nil
				return
			case <-tick.C:
				if _, err := s.RenewSession(ctx, renewed); err != nil {
					renewErr <- err
					return
				}
			}
		}
	}()
	waitUntil(t, 10*time.Second, "the unrenewed session to expire", func() bool { return !exists(expiring) })
	if e, _ := s.State().Get("lock"); e == nil || e.Session != "" {
		t.Fatalf("lock after its session expired = %+v, want released", e)
	}
	// The renewed session outlived 2×TTL of the other by renewal alone.
	if !exists(renewed) {
		t.Fatal("renewed session expired")
	}
	close(stopRenew)
	if err := <-renewErr; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the session to expire once renewals stop", func() bool { return !exists(renewed) })
}

func TestTombstoneReaping(t *testing.T) {
	s := newDevStore(t, func(c *Config) { c.TombstoneTTL = 50 * time.Millisecond })
	ctx := context.Background()
	for _, k := range []string{"web/a", "web/b"} {
		if _, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: k}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(ctx, &Command{Type: CmdKV, KV: KVOp{Verb: VerbDelete, Key: "web/b"}}); err != nil {
		t.Fatal(err)
	}
	idx := s.State().PrefixIndex("web/")
	waitUntil(t, 10*time.Second, "tombstones to be reaped", func() bool { return s.State().load().tombs.Len() == 0 })
	if got := s.State().PrefixIndex("web/"); got < idx {
		t.Fatalf("PrefixIndex(web/) went from %d to %d after reaping", idx, got)
	}
}

// TestVerifierCoalescing checks the rule that keeps coalesced reads
// linearizable: a caller never shares a round that started before it
// arrived, and callers arriving during a round share the next one.
func TestVerifierCoalescing(t *testing.T) {
	gate := make(chan error)
	var mu sync.Mutex
	rounds := 0
	v := &verifier{run: func() error {
		mu.Lock()
		rounds++
		mu.Unlock()
		return <-gate
	}}
	roundsNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return rounds
	}
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- v.verify(ctx) }()
	waitUntil(t, 5*time.Second, "the first round to start", func() bool { return roundsNow() == 1 })

	// These arrive while round 1 is in flight.
	const n = 10
	later := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { later <- v.verify(ctx) }()
	}
	waitUntil(t, 5*time.Second, "late callers to join the pending round", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.pending != nil && v.pending.waiters == n
	})

	gate <- nil // round 1 ends
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the second round to start", func() bool { return roundsNow() == 2 })
	select {
	case err := <-later:
		t.Fatalf("a late caller returned (%v) before the round after its arrival ended", err)
	default:
	}
	boom := errors.New("lost quorum")
	gate <- boom // round 2 fails: every caller sharing it sees the error
	for i := 0; i < n; i++ {
		if err := <-later; !errors.Is(err, boom) {
			t.Fatalf("late caller got %v, want %v", err, boom)
		}
	}
	if got := roundsNow(); got != 2 {
		t.Fatalf("%d rounds for %d callers, want 2", got, n+1)
	}
}

// neverFuture is a raft future that is never answered, as raft leaves a
// barrier queued in its batched apply channel when it shuts down.
type neverFuture struct{}

func (neverFuture) Error() error { select {} }

// Waiting on a future raft never answers ends when the store shuts down
// (a leader's barrier wait once held Shutdown for ever).
func TestWaitEndsAtShutdown(t *testing.T) {
	s := &Store{shutdownCh: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.wait(neverFuture{}) }()
	close(s.shutdownCh)
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("wait = %v, want raft.ErrRaftShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait on an unanswered future did not end at shutdown")
	}
}
