package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testNode = Node{ID: "0b7e5d2c-0000-4000-8000-000000000001", Node: "n1", Address: "10.0.0.1", Datacenter: "dc1",
	TaggedAddresses: map[string]string{"lan": "10.0.0.1"}, Meta: map[string]string{"rack": "r1"}}

type aeHarness struct {
	ae  *AntiEntropy
	clk *fakeClock
	reg *prometheus.Registry
}

// startAE runs an AntiEntropy for testNode against f with a fake clock
// and no random stagger.
func startAE(t *testing.T, f *fakeServers, l *LocalState, mutate func(*AntiEntropyConfig)) *aeHarness {
	t.Helper()
	h := &aeHarness{clk: newFakeClock(), reg: prometheus.NewRegistry()}
	l.now = h.clk.Now
	cfg := AntiEntropyConfig{
		Node: testNode, Local: l, Client: f.client(),
		Logger: testLogger(t), Registerer: h.reg,
		clock: h.clk, randN: zeroRand,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ae, err := NewAntiEntropy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ae = ae
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ae.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		ae.Close()
	})
	return h
}

func (h *aeHarness) runs(kind, res string) float64 {
	return testutil.ToFloat64(h.ae.metrics.runs.WithLabelValues(kind, res))
}

func TestAntiEntropyPushesChangesAtOnce(t *testing.T) {
	f := newFakeServers(t)
	l := NewLocalState()
	h := startAE(t, f, l, nil)

	waitFor(t, "node registered", func() bool { _, ok := f.node("n1"); return ok })
	n, _ := f.node("n1")
	if n.ID != testNode.ID || n.Address != "10.0.0.1" || n.Meta["rack"] != "r1" || n.TaggedAddresses["lan"] != "10.0.0.1" || n.Datacenter != "dc1" {
		t.Errorf("node on the servers: %+v", n)
	}

	l.AddService(svc("web", "web", "v1"), []HealthCheck{chk("web-http", StatusCritical)}, false)
	waitFor(t, "service registered", func() bool {
		_, okS := f.service("n1", "web")
		c, okC := f.check("n1", "web-http")
		return okS && okC && c.Node == "n1" && c.ServiceID == "web"
	})
	l.UpdateCheck("web-http", StatusPassing, "HTTP GET: 200 OK")
	waitFor(t, "status pushed", func() bool { c, _ := f.check("n1", "web-http"); return c.Status == StatusPassing })
	if c, _ := f.check("n1", "web-http"); c.Output != "HTTP GET: 200 OK" {
		t.Errorf("output %q pushed with the status", c.Output)
	}

	l.EnableNodeMaintenance("reboot")
	waitFor(t, "maintenance pushed", func() bool { c, ok := f.check("n1", NodeMaintCheckID); return ok && c.Notes == "reboot" })
	l.DisableNodeMaintenance()
	waitFor(t, "maintenance removed", func() bool { _, ok := f.check("n1", NodeMaintCheckID); return !ok })

	l.RemoveService("web")
	waitFor(t, "service deregistered", func() bool {
		_, okS := f.service("n1", "web")
		_, okC := f.check("n1", "web-http")
		return !okS && !okC
	})
	waitFor(t, "nothing pending", func() bool { return h.ae.Status().Pending == 0 })

	f.mu.Lock()
	for i, w := range f.writes[1:] {
		if !w.SkipNodeUpdate {
			t.Errorf("write %d re-sent the node: %+v", i+1, w)
		}
	}
	f.mu.Unlock()
	if got := h.runs("full", "ok"); got != 1 {
		t.Errorf("full syncs: %v, want 1 (no time passed)", got)
	}
	if st := h.ae.Status(); st.LastError != nil || st.LastFullSync.IsZero() {
		t.Errorf("status %+v", st)
	}
}

func TestAntiEntropyFullSyncRepairs(t *testing.T) {
	f := newFakeServers(t)
	l := NewLocalState()
	l.AddService(svc("web", "web"), []HealthCheck{chk("web-http", StatusPassing)}, false)
	h := startAE(t, f, l, nil)
	waitFor(t, "initial sync", func() bool { _, ok := f.check("n1", "web-http"); return ok })

	// Behind the agent's back: its service vanishes from the servers, a
	// stray service and check appear on its node, and the servers'
	// serfHealth check is there as always.
	f.remove("n1", "web", "")
	f.put("n1", "10.0.0.1", svc("stray", "stray"),
		HealthCheck{CheckID: SerfCheckID, Name: "Serf Health Status", Status: StatusPassing},
		HealthCheck{CheckID: "stray-check", Name: "x", Status: StatusCritical})
	f.put("n1", "10.0.0.1", svc("consul", "consul"))

	h.clk.waitTimer(t, DefaultSyncInterval)
	h.clk.Advance(DefaultSyncInterval)
	waitFor(t, "repaired", func() bool {
		_, web := f.service("n1", "web")
		_, webCheck := f.check("n1", "web-http")
		_, stray := f.service("n1", "stray")
		_, strayCheck := f.check("n1", "stray-check")
		n, _ := f.node("n1")
		return web && webCheck && !stray && !strayCheck && n.Meta["rack"] == "r1"
	})
	if _, ok := f.check("n1", SerfCheckID); !ok {
		t.Error("serfHealth removed")
	}
	if _, ok := f.service("n1", "consul"); !ok {
		t.Error("the servers' consul service removed")
	}
	waitFor(t, "second full sync counted", func() bool { return h.runs("full", "ok") == 2 })
	if _, ok := l.Service("stray"); ok {
		t.Error("a stray service became local")
	}
}

func TestAntiEntropyServerDownThenBack(t *testing.T) {
	f := newFakeServers(t)
	l := NewLocalState()
	l.AddService(svc("web", "web"), nil, false)
	h := startAE(t, f, l, func(c *AntiEntropyConfig) { c.Interval = time.Hour })
	waitFor(t, "initial sync", func() bool { _, ok := f.service("n1", "web"); return ok })

	f.setDown(true)
	l.AddService(svc("db", "db"), []HealthCheck{chk("db-tcp", StatusPassing)}, false)
	l.RemoveService("web")
	h.clk.waitTimer(t, DefaultRetryMin)
	st := h.ae.Status()
	if st.Failures != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "connection refused") {
		t.Errorf("status while down: %+v", st)
	}
	if _, ok := l.Service("db"); !ok {
		t.Fatal("local registration lost")
	}
	if st.Pending != 3 { // db, db-tcp, web's tombstone
		t.Errorf("pending %d, want 3", st.Pending)
	}
	// Back-off doubles while the servers stay away, and local changes do
	// not cut it short.
	h.clk.Advance(DefaultRetryMin)
	h.clk.waitTimer(t, 2*DefaultRetryMin)
	l.UpdateCheck("db-tcp", StatusCritical, "refused")
	h.clk.Advance(2 * DefaultRetryMin)
	h.clk.waitTimer(t, 4*DefaultRetryMin)
	if got := h.runs("full", "error") + h.runs("changes", "error"); got != 3 {
		t.Errorf("failed runs %v, want 3 (one per back-off step)", got)
	}

	// Meanwhile the servers lost the node altogether (restored from an
	// old snapshot), then come back.
	f.remove("n1", "", "")
	f.setDown(false)
	advanceUntil(t, h.clk, time.Second, "re-synced", func() bool {
		_, web := f.service("n1", "web")
		_, db := f.service("n1", "db")
		c, _ := f.check("n1", "db-tcp")
		_, node := f.node("n1")
		return !web && db && node && c.Status == StatusCritical
	})
	waitFor(t, "status clean", func() bool { st := h.ae.Status(); return st.Failures == 0 && st.LastError == nil && st.Pending == 0 })

	// TriggerFull cuts a back-off short.
	f.setDown(true)
	l.AddService(svc("cache", "cache"), nil, false)
	h.clk.waitTimer(t, DefaultRetryMin)
	f.setDown(false)
	h.ae.TriggerFull()
	waitFor(t, "synced on trigger", func() bool { _, ok := f.service("n1", "cache"); return ok })
}

func TestAntiEntropyDefersOutputChanges(t *testing.T) {
	f := newFakeServers(t)
	l := NewLocalState()
	l.AddService(svc("web", "web"), []HealthCheck{chk("web-http", StatusPassing)}, false)
	l.UpdateCheck("web-http", StatusPassing, "t=1")
	h := startAE(t, f, l, func(c *AntiEntropyConfig) { c.Interval = time.Hour })
	waitFor(t, "initial sync", func() bool { c, _ := f.check("n1", "web-http"); return c.Output == "t=1" })
	waitFor(t, "initial sync recorded", func() bool { return h.ae.Status().Pending == 0 })

	l.UpdateCheck("web-http", StatusPassing, "t=2")
	// Another change, pushed at once, shows the output change was held.
	l.AddCheck(chk("mem", StatusPassing))
	waitFor(t, "other change pushed", func() bool { _, ok := f.check("n1", "mem"); return ok })
	if c, _ := f.check("n1", "web-http"); c.Output != "t=1" {
		t.Fatalf("output pushed at once: %q", c.Output)
	}
	h.clk.waitTimer(t, DefaultCheckUpdateInterval)
	h.clk.Advance(DefaultCheckUpdateInterval)
	waitFor(t, "output pushed after the interval", func() bool { c, _ := f.check("n1", "web-http"); return c.Output == "t=2" })

	// A status change goes at once, output and all.
	l.UpdateCheck("web-http", StatusWarning, "t=3")
	waitFor(t, "status pushed", func() bool { c, _ := f.check("n1", "web-http"); return c.Status == StatusWarning && c.Output == "t=3" })
}

func TestAntiEntropyRefusedRegistration(t *testing.T) {
	f := newFakeServers(t)
	f.refuse["bad"] = true
	l := NewLocalState()
	l.AddService(svc("bad", "bad"), nil, false)
	l.AddService(svc("good", "good"), nil, false)
	h := startAE(t, f, l, nil)
	waitFor(t, "good synced", func() bool { _, ok := f.service("n1", "good"); return ok })
	waitFor(t, "refusal reported", func() bool {
		err := h.ae.Status().LastError
		var se *StatusError
		return errors.As(err, &se) && se.Code == 400 && strings.Contains(err.Error(), "register service bad")
	})
	// A refusal starts no back-off: the next wait is the full-sync one.
	h.clk.waitTimer(t, DefaultSyncInterval)
	f.mu.Lock()
	f.refuse["bad"] = false
	f.mu.Unlock()
	h.ae.TriggerFull()
	waitFor(t, "bad synced once accepted", func() bool { _, ok := f.service("n1", "bad"); return ok })
}

func TestAntiEntropySetNode(t *testing.T) {
	f := newFakeServers(t)
	l := NewLocalState()
	h := startAE(t, f, l, nil)
	waitFor(t, "node registered", func() bool { _, ok := f.node("n1"); return ok })
	n := testNode
	n.Address = "10.0.0.99"
	h.ae.SetNode(n)
	waitFor(t, "new address pushed", func() bool { n, _ := f.node("n1"); return n.Address == "10.0.0.99" })
}

func TestAntiEntropySchedule(t *testing.T) {
	for _, tt := range []struct{ nodes, want int }{{1, 1}, {128, 1}, {129, 2}, {256, 2}, {257, 3}, {1000, 4}, {10000, 8}} {
		if got := scaleFactor(tt.nodes); got != tt.want {
			t.Errorf("scaleFactor(%d) = %d, want %d", tt.nodes, got, tt.want)
		}
	}
	size := 1000
	maxRand := func(n int64) int64 { return n - 1 }
	cfg := AntiEntropyConfig{Node: testNode, Local: NewLocalState(), Client: newFakeServers(t).client(),
		ClusterSize: func() int { return size }, randN: maxRand}
	ae, err := NewAntiEntropy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ae.fullSyncWait(), 5*time.Minute-1; got != want {
		t.Errorf("full sync wait at 1000 nodes: %v, want %v", got, want)
	}
	size = 10
	if got, want := ae.fullSyncWait(), 2*time.Minute-1; got != want {
		t.Errorf("full sync wait at 10 nodes: %v, want %v", got, want)
	}
	ae.cfg.randN = zeroRand
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {50, time.Minute}} {
		if got := ae.backoff(tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
	ae.running.Store(true)
	if err := ae.Run(context.Background()); err == nil {
		t.Error("Run while running: no error")
	}
}

func TestAntiEntropyConfig(t *testing.T) {
	_, err := NewAntiEntropy(AntiEntropyConfig{Interval: -time.Second, RetryMin: time.Minute, RetryMax: time.Second})
	want := "catalog: config: Node.Node: missing\n" +
		"catalog: config: Node.Address: missing\n" +
		"catalog: config: Local: missing\n" +
		"catalog: config: Client: missing\n" +
		"catalog: config: Interval: -1s is negative\n" +
		"catalog: config: RetryMin: 1m0s is above RetryMax 1s"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Error("errors.Is(err, ErrInvalidConfig) is false")
	}

	reg := prometheus.NewRegistry()
	cfg := AntiEntropyConfig{Node: testNode, Local: NewLocalState(), Client: newFakeServers(t).client(), Registerer: reg}
	ae, err := NewAntiEntropy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAntiEntropy(cfg); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second registration: %v", err)
	}
	ae.Close()
	if _, err := NewAntiEntropy(cfg); err != nil {
		t.Errorf("after Close: %v", err)
	}
}
