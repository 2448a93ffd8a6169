package catalog

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const webPath = "/v1/health/service/web"

type viewHarness struct {
	v   *View
	clk *fakeClock
	reg *prometheus.Registry
}

func startView(t *testing.T, f *fakeServers, mutate func(*ViewConfig)) *viewHarness {
	t.Helper()
	h := &viewHarness{clk: newFakeClock(), reg: prometheus.NewRegistry()}
	cfg := ViewConfig{Client: f.client(), Logger: testLogger(t), Registerer: h.reg, clock: h.clk, randN: zeroRand}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewView(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.v = v
	t.Cleanup(func() { v.Close() })
	return h
}

func (h *viewHarness) gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func passing(id string) HealthCheck { return HealthCheck{CheckID: id, Name: id, Status: StatusPassing} }

// twoWebs registers web on two nodes.
func twoWebs(f *fakeServers) {
	f.put("n2", "10.0.0.2", Service{ID: "web", Service: "web", Port: 80, Tags: []string{"v1"}}, passing("serfHealth"))
	f.put("n3", "10.0.0.3", Service{ID: "web", Service: "web", Port: 80}, passing("serfHealth"))
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestViewFirstUseSubscribes(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	f.put("n4", "10.0.0.4", Service{ID: "db", Service: "db"})
	h := startView(t, f, nil)

	if got := h.v.Services(); len(got) != 0 {
		t.Fatalf("subscriptions before any use: %v", got)
	}
	if _, ok := h.v.Peek("web"); ok {
		t.Fatal("Peek subscribed or found something")
	}
	snap, err := h.v.Service(ctxTimeout(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Entries) != 2 || snap.Index == 0 || snap.Stale || snap.Err != nil || !snap.KnownLeader ||
		snap.LastContact != 7*time.Millisecond || !snap.Fetched.Equal(h.clk.Now()) || snap.Service != "web" {
		t.Fatalf("snapshot %+v", snap)
	}
	if got := snap.Entries[0]; got.Node.Node != "n2" || got.Address() != "10.0.0.2" || len(got.Checks) != 1 {
		t.Errorf("entry %+v", got)
	}
	if got := h.v.Services(); !slices.Equal(got, []string{"web"}) {
		t.Errorf("subscriptions %v", got)
	}
	if n := f.count("GET /v1/health/service/db"); n != 0 {
		t.Errorf("db was read %d times without being used", n)
	}
	q := f.query(webPath)
	if !strings.Contains(q, "stale") {
		t.Errorf("query %q: want ?stale", q)
	}

	// Once subscribed, reads come from memory: the blocking query waits,
	// and a thousand reads make no request.
	waitFor(t, "blocking query waiting", func() bool { return f.waiting(webPath) == 1 })
	if q := f.query(webPath); !strings.Contains(q, "index=") || !strings.Contains(q, "wait=300000ms") {
		t.Errorf("blocking query %q", q)
	}
	before := f.count("GET " + webPath)
	for range 1000 {
		s, err := h.v.Service(context.Background(), "WEB")
		if err != nil || &s.Entries[0] != &snap.Entries[0] {
			t.Fatalf("read from memory: %v, fresh slice %v", err, &s.Entries[0] != &snap.Entries[0])
		}
	}
	if after := f.count("GET " + webPath); after != before {
		t.Errorf("reads made %d requests", after-before)
	}
	if got := h.gauge(t, "outrigger_catalog_view_subscriptions"); got != 1 {
		t.Errorf("subscriptions gauge %v", got)
	}
}

func TestViewWatchPropagatesChanges(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	h := startView(t, f, func(c *ViewConfig) { c.Wait = 20 * time.Millisecond })
	ch, cancel := h.v.Watch("web")
	defer cancel()
	wait(t, ch, "first result")
	snap, err := h.v.Service(context.Background(), "web")
	if err != nil || len(snap.Entries) != 2 {
		t.Fatalf("%v, %+v", err, snap)
	}

	// Blocking queries returning at their wait with nothing new, and
	// writes to other services, wake nobody.
	f.put("n4", "10.0.0.4", Service{ID: "db", Service: "db"})
	base := f.count("GET " + webPath)
	waitFor(t, "several empty returns", func() bool { return f.count("GET "+webPath) >= base+3 })
	if fired(ch) {
		t.Fatal("watcher woken without a change")
	}

	f.put("n5", "10.0.0.5", Service{ID: "web", Service: "web", Port: 8080}, HealthCheck{CheckID: "c", Name: "c", Status: StatusCritical})
	wait(t, ch, "change")
	snap2, _ := h.v.Service(context.Background(), "web")
	if len(snap2.Entries) != 3 || snap2.Index <= snap.Index {
		t.Fatalf("after change: %d entries, index %d (was %d)", len(snap2.Entries), snap2.Index, snap.Index)
	}
	if got := snap2.Healthy(false); len(got) != 2 {
		t.Errorf("healthy: %d, want 2", len(got))
	}
	if got := snap2.WithTags("V1"); len(got) != 1 || got[0].Node.Node != "n2" {
		t.Errorf("tagged: %+v", got)
	}
	// The old snapshot is untouched.
	if len(snap.Entries) != 2 {
		t.Error("old snapshot changed")
	}

	// An index that goes backwards (servers rebuilt) is taken and
	// followed from there.
	f.resetIndex(2)
	f.put("n6", "10.0.0.6", Service{ID: "web", Service: "web"})
	wait(t, ch, "change after the index went backwards")
	waitFor(t, "new index taken", func() bool {
		s, _ := h.v.Service(context.Background(), "web")
		return s.Index == 3 && len(s.Entries) == 4
	})
}

func TestViewServersDown(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	h := startView(t, f, nil)
	snap, err := h.v.Service(ctxTimeout(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "blocking query waiting", func() bool { return f.waiting(webPath) == 1 })

	f.setDown(true)
	waitFor(t, "marked stale", func() bool { s, _ := h.v.Peek("web"); return s.Stale })
	fetched := snap.Fetched
	h.clk.Advance(30 * time.Second)
	s, err := h.v.Service(context.Background(), "web")
	if err != nil || len(s.Entries) != 2 || !s.Stale || s.Err == nil || !s.Fetched.Equal(fetched) {
		t.Fatalf("while down: %v, %+v", err, s)
	}
	if age := s.Age(h.clk.Now()); age < 30*time.Second {
		t.Errorf("age %v, want at least 30s", age)
	}
	if got := h.gauge(t, "outrigger_catalog_view_stale_subscriptions"); got != 1 {
		t.Errorf("stale gauge %v", got)
	}
	if got := h.gauge(t, "outrigger_catalog_view_max_staleness_seconds"); got < 30 {
		t.Errorf("staleness gauge %v", got)
	}

	// What changed meanwhile arrives when the servers are back.
	f.put("n5", "10.0.0.5", Service{ID: "web", Service: "web"})
	f.setDown(false)
	advanceUntil(t, h.clk, time.Second, "fresh again", func() bool {
		s, _ := h.v.Peek("web")
		return !s.Stale && len(s.Entries) == 3
	})
	if s, _ := h.v.Peek("web"); s.Err != nil || s.Age(h.clk.Now()) != 7*time.Millisecond {
		t.Errorf("after recovery: %+v", s)
	}
	if got := testutil.ToFloat64(h.v.metrics.fetches.WithLabelValues("error")); got < 1 {
		t.Errorf("failed fetches %v", got)
	}
}

func TestViewNoResultYet(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	f.setDown(true)
	h := startView(t, f, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 2 {
		if _, err := h.v.Service(ctx, "web"); !errors.Is(err, ErrNoResult) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("call %d: got %v, want ErrNoResult at once", i, err)
		}
	}
	f.setDown(false)
	advanceUntil(t, h.clk, time.Second, "first result", func() bool { _, ok := h.v.Peek("web"); return ok })
	if s, err := h.v.Service(ctx, "web"); err != nil || len(s.Entries) != 2 {
		t.Fatalf("%v, %+v", err, s)
	}
}

func TestViewIdleExpiry(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	f.put("n4", "10.0.0.4", Service{ID: "db", Service: "db"})
	h := startView(t, f, nil)
	sweep := DefaultIdleTimeout / 4
	tick := func() {
		t.Helper()
		h.clk.waitTimer(t, sweep)
		h.clk.Advance(sweep)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := h.v.Service(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	ch, cancel := h.v.Watch("db")
	wait(t, ch, "db result")

	tick()
	tick()
	// At 5m, a use pushes the expiry back.
	if _, err := h.v.Service(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	tick()
	tick()
	tick() // 12.5m: 7.5m since the last use
	if got := h.v.Services(); !slices.Equal(got, []string{"db", "web"}) {
		t.Fatalf("subscriptions %v, want both", got)
	}
	tick() // 15m: 10m since the last use
	waitFor(t, "web expired", func() bool { return slices.Equal(h.v.Services(), []string{"db"}) })
	waitFor(t, "web's blocking query cancelled", func() bool { return f.waiting(webPath) == 0 })

	// A watched subscription never expires; its idle time starts when
	// the watch ends.
	for range 8 {
		tick()
	}
	if got := h.v.Services(); !slices.Equal(got, []string{"db"}) {
		t.Fatalf("watched subscription gone: %v", got)
	}
	cancel()
	for range 3 {
		tick()
	}
	if got := h.v.Services(); len(got) != 1 {
		t.Fatalf("expired too early: %v", got)
	}
	tick()
	waitFor(t, "db expired", func() bool { return len(h.v.Services()) == 0 })
	if got := testutil.ToFloat64(h.v.metrics.expired); got != 2 {
		t.Errorf("expired counter %v", got)
	}

	// Using it again subscribes afresh.
	if s, err := h.v.Service(ctx, "web"); err != nil || len(s.Entries) != 2 {
		t.Fatalf("resubscribe: %v, %+v", err, s)
	}
	if got := testutil.ToFloat64(h.v.metrics.subscribed); got != 3 {
		t.Errorf("subscribed counter %v", got)
	}
}

func TestViewClose(t *testing.T) {
	f := newFakeServers(t)
	twoWebs(f)
	h := startView(t, f, nil)
	if _, err := h.v.Service(ctxTimeout(t, 10*time.Second), "web"); err != nil {
		t.Fatal(err)
	}
	h.v.Close()
	waitFor(t, "blocking query cancelled", func() bool { return f.waiting(webPath) == 0 })
	if _, err := h.v.Service(context.Background(), "web"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	h.v.Close()
}

func TestViewConfig(t *testing.T) {
	_, err := NewView(ViewConfig{IdleTimeout: -1, Wait: time.Hour})
	want := "catalog: config: Client: missing\n" +
		"catalog: config: IdleTimeout: -1ns is negative\n" +
		"catalog: config: Wait: 1h0m0s is above the servers' maximum of 10m"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestFilters(t *testing.T) {
	entry := func(node string, tags []string, statuses ...string) ServiceEntry {
		e := ServiceEntry{Node: Node{Node: node}, Service: Service{Service: "web", Tags: tags}}
		for i, s := range statuses {
			e.Checks = append(e.Checks, HealthCheck{CheckID: string(rune('a' + i)), Status: s})
		}
		return e
	}
	entries := []ServiceEntry{
		entry("ok", []string{"v1", "Primary"}, "passing", "passing"),
		entry("none", nil),
		entry("warn", []string{"v1"}, "passing", "warning"),
		entry("crit", []string{"v1"}, "warning", "critical"),
		{Node: Node{Node: "maint"}, Checks: []HealthCheck{{CheckID: NodeMaintCheckID, Status: "critical"}}},
		entry("odd", nil, "unknown"),
	}
	nodes := func(es []ServiceEntry) (out []string) {
		for _, e := range es {
			out = append(out, e.Node.Node)
		}
		return out
	}
	if got := nodes(Healthy(entries, false)); !slices.Equal(got, []string{"ok", "none", "warn"}) {
		t.Errorf("Healthy(false) = %v", got)
	}
	if got := nodes(Healthy(entries, true)); !slices.Equal(got, []string{"ok", "none"}) {
		t.Errorf("Healthy(true) = %v", got)
	}
	if got := nodes(WithTags(entries, "v1", "primary")); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("WithTags = %v", got)
	}
	all := entries[:2]
	if got := Healthy(all, true); &got[0] != &all[0] {
		t.Error("nothing filtered out, yet the slice was copied")
	}
	for _, tt := range []struct {
		e    ServiceEntry
		want string
	}{{entries[0], "passing"}, {entries[1], "passing"}, {entries[2], "warning"}, {entries[3], "critical"}, {entries[4], "maintenance"}, {entries[5], "critical"}} {
		if got := tt.e.AggregatedStatus(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.e.Node.Node, got, tt.want)
		}
	}
}

// spinClient answers at once, always with the same index: servers that
// do not block.
type spinClient struct{ calls atomic.Int64 }

func (c *spinClient) ServiceHealth(context.Context, string, QueryOptions) ([]ServiceEntry, QueryMeta, error) {
	c.calls.Add(1)
	return []ServiceEntry{}, QueryMeta{Index: 5}, nil
}

func TestViewDoesNotSpinOnServersThatDoNotBlock(t *testing.T) {
	c := &spinClient{}
	clk := newFakeClock()
	v, err := NewView(ViewConfig{Client: c, clock: clk, randN: zeroRand})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Service(ctxTimeout(t, 10*time.Second), "x"); err != nil {
		t.Fatal(err)
	}
	clk.waitTimer(t, DefaultRetryMin)
	if n := c.calls.Load(); n != 2 {
		t.Fatalf("%d calls before pausing, want 2", n)
	}
	clk.Advance(DefaultRetryMin)
	waitFor(t, "next call after the pause", func() bool { return c.calls.Load() == 3 })
	clk.waitTimer(t, DefaultRetryMin)
	if n := c.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
}
