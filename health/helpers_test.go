package health

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: timers fire only in Advance, AfterFunc
// functions run inside Advance on the caller's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	d    time.Duration
	ch   chan time.Time
	f    func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration, ch chan time.Time, f func()) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), d: d, ch: ch, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) timer { return c.add(d, make(chan time.Time, 1), nil) }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) timer { return c.add(d, nil, f) }

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock and fires the timers that came due, earliest
// first.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if !t.when.After(now) {
			due = append(due, t)
			return true
		}
		return false
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.when.Compare(b.when) })
	for _, t := range due {
		if t.f != nil {
			t.f()
		} else {
			t.ch <- now
		}
	}
}

// pending returns the durations the waiting timers were set for.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ds []time.Duration
	for _, t := range c.timers {
		ds = append(ds, t.d)
	}
	return ds
}

// waitTimers waits until at least n timers are waiting: the check loops
// have armed their next run.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	waitFor(t, "timers armed", func() bool { return len(c.pending()) >= n })
}

var _ clock = (*fakeClock)(nil)

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLog routes logs to t.Log until the test ends.
type testLog struct {
	t     testing.TB
	mu    sync.Mutex
	ended bool
	lines []string
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLog) {
	tl := &testLog{t: t}
	t.Cleanup(func() {
		tl.mu.Lock()
		tl.ended = true
		tl.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})), tl
}

func (tl *testLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.lines = append(tl.lines, line)
	if !tl.ended {
		tl.t.Log(line)
	}
	return len(p), nil
}

func (tl *testLog) has(subs ...string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
outer:
	for _, l := range tl.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue outer
			}
		}
		return true
	}
	return false
}

// updates records OnUpdate calls.
type updates struct {
	mu     sync.Mutex
	states []CheckState
}

func (u *updates) record(s CheckState) {
	u.mu.Lock()
	u.states = append(u.states, s)
	u.mu.Unlock()
}

func (u *updates) statuses(id string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, s := range u.states {
		if s.ID == id {
			out = append(out, s.Status)
		}
	}
	return out
}

// harness is a Checks on a fake clock, start delay Interval-1ns (so
// Advance(Interval) starts every check), closed at cleanup.
type harness struct {
	*Checks
	clock   *fakeClock
	updates *updates
	logs    *testLog
}

func newHarness(t *testing.T, tune func(*Config)) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(), updates: &updates{}}
	cfg := DefaultConfig()
	cfg.Logger, h.logs = newTestLogger(t)
	cfg.OnUpdate = h.updates.record
	cfg.clock = h.clock
	cfg.randN = func(n int64) int64 { return n - 1 }
	if tune != nil {
		tune(&cfg)
	}
	cs, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	h.Checks = cs
	return h
}

func (h *harness) mustAdd(t *testing.T, def CheckDefinition) {
	t.Helper()
	if err := h.Add(def); err != nil {
		t.Fatalf("Add: %v", err)
	}
}

// waitStatus waits for the check to reach status and returns its state.
func (h *harness) waitStatus(t *testing.T, id, status string) CheckState {
	t.Helper()
	var st CheckState
	waitFor(t, "check "+id+" "+status, func() bool {
		var ok bool
		st, ok = h.Get(id)
		return ok && st.Status == status
	})
	return st
}

// runProbe runs def's prober once, as Checks would.
func runProbe(t *testing.T, def CheckDefinition) result {
	t.Helper()
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	def, _ = def.normalized()
	ctx, cancel := context.WithTimeout(t.Context(), def.Timeout)
	defer cancel()
	r := newProber(&def, DefaultOutputMaxSize).probe(ctx)
	r.output = capHead(r.output, DefaultOutputMaxSize, -1)
	return r
}
