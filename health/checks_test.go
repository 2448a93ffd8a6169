package health

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func okServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	return srv
}

func TestConfigValidate(t *testing.T) {
	d := DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	bad := Config{OutputMaxSize: 10, ReapInterval: -time.Second}
	want := "health: config: OutputMaxSize: 10 is below the minimum 64\nhealth: config: ReapInterval: -1s is negative"
	err := bad.Validate()
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Error("errors.Is(err, ErrInvalidConfig) = false")
	}
	if _, err := New(Config{OutputMaxSize: -1}); err == nil || err.Error() != "health: config: OutputMaxSize: -1 is negative" {
		t.Errorf("New: got %v", err)
	}
}

func TestChecksAddGetListRemove(t *testing.T) {
	h := newHarness(t, nil)
	srv := okServer(t)
	h.mustAdd(t, CheckDefinition{Name: "web", HTTP: srv.URL, Interval: 10 * time.Second, ServiceID: "web-1", Notes: "n"})
	h.mustAdd(t, CheckDefinition{ID: "app-ttl", Name: "App", TTL: time.Minute, Status: StatusPassing})

	st, ok := h.Get("web")
	if !ok {
		t.Fatal("Get(web): not found")
	}
	if st.ID != "web" || st.Name != "web" || st.ServiceID != "web-1" || st.Status != StatusCritical ||
		st.Notes != "n" || st.Type != TypeHTTP || st.Output != "" || st.Definition.Timeout != DefaultTimeout {
		t.Errorf("got %+v", st)
	}
	if st, _ := h.Get("app-ttl"); st.Status != StatusPassing || st.Type != TypeTTL {
		t.Errorf("TTL check: got %+v", st)
	}
	list := h.List()
	if len(list) != 2 || list[0].ID != "app-ttl" || list[1].ID != "web" {
		t.Errorf("List: got %v", list)
	}

	// Returned states are copies.
	st.Definition.Header = map[string][]string{"X": {"y"}}
	if again, _ := h.Get("web"); again.Definition.Header != nil {
		t.Error("changing a returned Definition changed the check")
	}

	if err := h.Remove("web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Get("web"); ok {
		t.Error("Get after Remove: still there")
	}
	err := h.Remove("web")
	if err == nil || err.Error() != `health: check "web": unknown check ID` || !errors.Is(err, ErrUnknownCheck) {
		t.Errorf("second Remove: got %v", err)
	}
}

func TestChecksAddErrors(t *testing.T) {
	h := newHarness(t, nil)
	err := h.Add(CheckDefinition{Name: "x", TCP: "nohost"})
	want := "health: check \"x\": TCP: \"nohost\" is not host:port: missing port in address\n" +
		`health: check "x": Interval: missing (required for tcp checks)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}

	err = h.Add(CheckDefinition{Name: "s", Args: []string{"/bin/true"}, Interval: time.Second})
	if err == nil || err.Error() != `health: check "s": Args: script checks are disabled (enable_script_checks)` {
		t.Errorf("script check: got %v", err)
	}
	if !errors.Is(err, ErrScriptChecksDisabled) || !errors.Is(err, ErrInvalidDefinition) {
		t.Errorf("script check: errors.Is ErrScriptChecksDisabled %v, ErrInvalidDefinition %v",
			errors.Is(err, ErrScriptChecksDisabled), errors.Is(err, ErrInvalidDefinition))
	}
	if len(h.List()) != 0 {
		t.Error("a refused check was added")
	}

	h.Close()
	err = h.Add(CheckDefinition{Name: "t", TTL: time.Second})
	if !errors.Is(err, ErrClosed) || err.Error() != `health: add "t": health checks are closed` {
		t.Errorf("Add after Close: got %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestChecksMinimumsAndDefaults(t *testing.T) {
	h := newHarness(t, nil)
	h.mustAdd(t, CheckDefinition{Name: "fast", TCP: "127.0.0.1:1", Interval: 100 * time.Millisecond,
		DeregisterCriticalServiceAfter: 10 * time.Second})
	st, _ := h.Get("fast")
	if st.ID != "fast" || st.Definition.Interval != time.Second || st.Definition.DeregisterCriticalServiceAfter != time.Minute ||
		st.Definition.Timeout != 10*time.Second {
		t.Errorf("got %+v", st.Definition)
	}
	if !h.logs.has("check definition adjusted", "Interval 100ms is below the minimum, using 1s") ||
		!h.logs.has("DeregisterCriticalServiceAfter 10s is below the minimum, using 1m0s") {
		t.Error("no warning logged for the raised minimums")
	}
	// The first run comes within the raised interval.
	h.clock.waitTimers(t, 1)
	if got := h.clock.pending(); len(got) != 1 || got[0] != time.Second-1 {
		t.Errorf("first run scheduled after %v, want [999.999999ms]", got)
	}
}

func TestStartDelayBounded(t *testing.T) {
	cs := &Checks{cfg: Config{randN: rand.Int64N}}
	for _, interval := range []time.Duration{time.Second, 10 * time.Second, time.Hour} {
		var maxSeen time.Duration
		for range 10000 {
			d := cs.startDelay(interval)
			if d < 0 || d >= interval {
				t.Fatalf("delay %v outside [0, %v)", d, interval)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < interval/2 {
			t.Errorf("interval %v: largest of 10000 delays %v; not spread over the interval", interval, maxSeen)
		}
	}
}

func TestChecksStartJitter(t *testing.T) {
	var asked []int64
	var mu sync.Mutex
	delays := []int64{int64(3 * time.Second), int64(7 * time.Second)}
	h := newHarness(t, func(c *Config) {
		c.randN = func(n int64) int64 {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, n)
			return delays[len(asked)-1]
		}
	})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	h.mustAdd(t, CheckDefinition{Name: "a", HTTP: srv.URL + "/a", Interval: 10 * time.Second})
	h.mustAdd(t, CheckDefinition{Name: "b", HTTP: srv.URL + "/b", Interval: 10 * time.Second})
	h.clock.waitTimers(t, 2)

	mu.Lock()
	if !slices.Equal(asked, []int64{int64(10 * time.Second), int64(10 * time.Second)}) {
		t.Errorf("random delay asked with bounds %v, want the interval", asked)
	}
	mu.Unlock()
	got := h.clock.pending()
	slices.Sort(got)
	if !slices.Equal(got, []time.Duration{3 * time.Second, 7 * time.Second}) {
		t.Errorf("first runs scheduled after %v, want [3s 7s]", got)
	}

	h.clock.Advance(3 * time.Second)
	h.waitStatus(t, "a", StatusPassing)
	h.clock.waitTimers(t, 2) // a re-armed for 10s, b still waiting
	if st, _ := h.Get("b"); st.Status != StatusCritical || hits.Load() != 1 {
		t.Errorf("b ran before its delay: %s, %d requests", st.Status, hits.Load())
	}
	h.clock.Advance(4 * time.Second)
	h.waitStatus(t, "b", StatusPassing)
}

func TestChecksRunAndNotify(t *testing.T) {
	h := newHarness(t, nil)
	srv := okServer(t)
	h.mustAdd(t, CheckDefinition{Name: "web", HTTP: srv.URL, Interval: 5 * time.Second})
	h.clock.waitTimers(t, 1)
	h.clock.Advance(5 * time.Second)
	st := h.waitStatus(t, "web", StatusPassing)
	if st.Output != "HTTP GET "+srv.URL+": 200 OK Output: ok" {
		t.Errorf("got output %q", st.Output)
	}
	waitFor(t, "OnUpdate calls", func() bool { return len(h.updates.statuses("web")) == 2 })
	if got := h.updates.statuses("web"); !slices.Equal(got, []string{StatusCritical, StatusPassing}) {
		t.Errorf("OnUpdate got %v, want [critical passing]", got)
	}

	// The same result again changes nothing: no call.
	h.clock.waitTimers(t, 1)
	h.clock.Advance(5 * time.Second)
	h.clock.waitTimers(t, 1) // the run finished and the next is armed
	if got := h.updates.statuses("web"); len(got) != 2 {
		t.Errorf("OnUpdate called for an unchanged state: %v", got)
	}
}

// TestChecksThresholdSequence drives an HTTP check through a scripted
// sequence of answers, one run per clock step.
func TestChecksThresholdSequence(t *testing.T) {
	codes := []int{200, 200, 500, 200, 500, 500, 200, 200}
	want := []string{"critical", "passing", "passing", "passing", "passing", "critical", "critical", "passing"}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(codes[n.Add(1)-1])
	}))
	defer srv.Close()

	h := newHarness(t, nil)
	h.mustAdd(t, CheckDefinition{Name: "web", HTTP: srv.URL, Interval: time.Second,
		SuccessBeforePassing: 2, FailuresBeforeCritical: 2})
	var got []string
	for range codes {
		h.clock.waitTimers(t, 1)
		h.clock.Advance(time.Second)
		h.clock.waitTimers(t, 1) // the run is recorded before the next is armed
		st, _ := h.Get("web")
		got = append(got, st.Status)
	}
	if !slices.Equal(got, want) {
		t.Errorf("answers %v:\ngot  %v\nwant %v", codes, got, want)
	}
	if !h.logs.has("threshold not reached") {
		t.Error("held-back results not logged")
	}
}

func TestChecksTTL(t *testing.T) {
	h := newHarness(t, nil)
	h.mustAdd(t, CheckDefinition{ID: "app", Name: "App", TTL: 30 * time.Second})

	check := func(status, output string) {
		t.Helper()
		st, _ := h.Get("app")
		if st.Status != status || st.Output != output {
			t.Errorf("got %s %q, want %s %q", st.Status, st.Output, status, output)
		}
	}
	check(StatusCritical, "")

	if err := h.Pass("app", "all good"); err != nil {
		t.Fatal(err)
	}
	check(StatusPassing, "all good")
	h.clock.Advance(30*time.Second - 1)
	check(StatusPassing, "all good")

	// An update restarts the TTL.
	if err := h.Warn("app", "disk 85%"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(29 * time.Second)
	check(StatusWarning, "disk 85%")
	h.clock.Advance(time.Second)
	check(StatusCritical, "TTL expired (last output before timeout follows): disk 85%")

	if err := h.Update("app", StatusPassing, "back"); err != nil {
		t.Fatal(err)
	}
	check(StatusPassing, "back")
	if err := h.Fail("app", "broken"); err != nil {
		t.Fatal(err)
	}
	check(StatusCritical, "broken")

	// Output is capped.
	if err := h.Update("app", StatusWarning, strings.Repeat("x", 10000)); err != nil {
		t.Fatal(err)
	}
	st, _ := h.Get("app")
	if len(st.Output) > DefaultOutputMaxSize || !strings.HasSuffix(st.Output, "x ... (truncated, 10000 bytes in all)") {
		t.Errorf("got %d bytes ending %q", len(st.Output), st.Output[len(st.Output)-40:])
	}

	// Without any output, expiry says just that.
	h.mustAdd(t, CheckDefinition{ID: "quiet", Name: "Quiet", TTL: 10 * time.Second, Status: StatusPassing})
	h.clock.Advance(10 * time.Second)
	if st, _ := h.Get("quiet"); st.Status != StatusCritical || st.Output != "TTL expired" {
		t.Errorf("got %s %q, want critical \"TTL expired\"", st.Status, st.Output)
	}

	// OnUpdate saw the changes in order (coalesced while it was busy),
	// ending with the latest.
	all := []string{"critical", "passing", "warning", "critical", "passing", "critical", "warning"}
	waitFor(t, "the last OnUpdate call", func() bool {
		got := h.updates.statuses("app")
		return len(got) > 0 && got[len(got)-1] == StatusWarning
	})
	if got := h.updates.statuses("app"); !isSubsequence(got, all) {
		t.Errorf("OnUpdate got %v, want a subsequence of %v", got, all)
	}
}

func TestChecksTTLErrors(t *testing.T) {
	h := newHarness(t, nil)
	srv := okServer(t)
	h.mustAdd(t, CheckDefinition{Name: "web", HTTP: srv.URL, Interval: time.Second})
	h.mustAdd(t, CheckDefinition{Name: "app", TTL: time.Minute})

	tests := []struct {
		err    error
		want   string
		target error
	}{
		{h.Pass("web", ""), `health: check "web": not a TTL check (type http)`, ErrNotTTL},
		{h.Pass("nope", ""), `health: check "nope": unknown check ID`, ErrUnknownCheck},
		{h.Update("app", "ok", ""), `health: check "app": status "ok": invalid check status (want passing, warning or critical)`, ErrInvalidStatus},
		{h.Update("app", StatusMaintenance, ""), `health: check "app": status "maintenance": invalid check status (want passing, warning or critical)`, ErrInvalidStatus},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want || !errors.Is(tt.err, tt.target) {
			t.Errorf("got %v, want %q (%v)", tt.err, tt.want, tt.target)
		}
	}
}

func TestChecksReplace(t *testing.T) {
	h := newHarness(t, nil)
	def := CheckDefinition{Name: "app", TTL: time.Minute}
	h.mustAdd(t, def)
	if err := h.Pass("app", "up"); err != nil {
		t.Fatal(err)
	}

	// Re-adding without a Status keeps the current status and output, and
	// restarts the TTL.
	def.Notes = "v2"
	h.clock.Advance(50 * time.Second)
	h.mustAdd(t, def)
	if st, _ := h.Get("app"); st.Status != StatusPassing || st.Output != "up" || st.Notes != "v2" {
		t.Errorf("after re-add: got %+v", st)
	}
	h.clock.Advance(59 * time.Second)
	if st, _ := h.Get("app"); st.Status != StatusPassing {
		t.Errorf("old TTL timer still ran: %s %q", st.Status, st.Output)
	}
	h.clock.Advance(time.Second)
	if st, _ := h.Get("app"); st.Status != StatusCritical {
		t.Errorf("new TTL did not expire: %s", st.Status)
	}

	// An explicit Status wins.
	def.Status = StatusWarning
	h.mustAdd(t, def)
	if st, _ := h.Get("app"); st.Status != StatusWarning || st.Output != "" {
		t.Errorf("explicit status: got %s %q", st.Status, st.Output)
	}
	if n := len(h.List()); n != 1 {
		t.Errorf("%d checks after replacing, want 1", n)
	}
}

func TestChecksDeregisterCritical(t *testing.T) {
	type call struct{ service, check string }
	var mu sync.Mutex
	var calls []call
	h := newHarness(t, func(c *Config) {
		c.OnDeregister = func(service string, cause CheckState) {
			mu.Lock()
			calls = append(calls, call{service, cause.ID})
			mu.Unlock()
		}
	})
	got := func() []call {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}
	// reapRound advances to the next reap and waits until it is done (the
	// reaper has armed its next timer).
	reapRound := func() {
		t.Helper()
		waitFor(t, "reaper armed", func() bool { return slices.Contains(h.clock.pending(), DefaultReapInterval) })
		h.clock.Advance(DefaultReapInterval)
		waitFor(t, "reaper re-armed", func() bool { return slices.Contains(h.clock.pending(), DefaultReapInterval) })
	}

	h.mustAdd(t, CheckDefinition{ID: "web-ttl", Name: "w", ServiceID: "web", TTL: time.Hour, DeregisterCriticalServiceAfter: time.Minute})
	h.mustAdd(t, CheckDefinition{ID: "web-ttl2", Name: "w2", ServiceID: "web", TTL: time.Hour, DeregisterCriticalServiceAfter: time.Minute})
	h.mustAdd(t, CheckDefinition{ID: "db-ttl", Name: "d", ServiceID: "db", TTL: time.Hour})                               // no deregistration asked
	h.mustAdd(t, CheckDefinition{ID: "node-ttl", Name: "n", TTL: time.Hour, DeregisterCriticalServiceAfter: time.Minute}) // no service
	h.mustAdd(t, CheckDefinition{ID: "api-ttl", Name: "a", ServiceID: "api", TTL: time.Hour, DeregisterCriticalServiceAfter: time.Minute})
	if err := h.Pass("api-ttl", ""); err != nil {
		t.Fatal(err)
	}

	reapRound() // 30s critical
	reapRound() // 60s: not yet longer than 1m
	if c := got(); len(c) != 0 {
		t.Fatalf("deregistered too early: %v", c)
	}
	reapRound() // 90s
	if c := got(); !slices.Equal(c, []call{{"web", "web-ttl"}}) {
		t.Fatalf("got %v, want one call for web", c)
	}
	reapRound()
	if c := got(); len(c) != 1 {
		t.Errorf("called again in the same critical spell: %v", c)
	}

	// A new critical spell is reported again.
	if err := h.Pass("web-ttl", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.Fail("web-ttl", "down"); err != nil {
		t.Fatal(err)
	}
	reapRound()
	reapRound()
	reapRound()
	if c := got(); !slices.Equal(c, []call{{"web", "web-ttl"}, {"web", "web-ttl"}}) {
		t.Errorf("got %v, want a second call for web", c)
	}
}

func TestChecksMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) { c.Registerer = reg })
	srv := okServer(t)
	h.mustAdd(t, CheckDefinition{Name: "web", HTTP: srv.URL, Interval: time.Second})
	h.mustAdd(t, CheckDefinition{Name: "app", TTL: time.Minute})
	h.clock.waitTimers(t, 2)
	h.clock.Advance(time.Second)
	h.waitStatus(t, "web", StatusPassing)

	if got := testutil.ToFloat64(h.metrics.runs.WithLabelValues("http", "passing")); got != 1 {
		t.Errorf("runs{http,passing}: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.runs.WithLabelValues("http", "critical")); got != 0 {
		t.Errorf("runs{http,critical}: got %v, want 0", got)
	}
	want := `
# HELP outrigger_health_checks Checks held by this agent, by current status.
# TYPE outrigger_health_checks gauge
outrigger_health_checks{status="critical"} 1
outrigger_health_checks{status="passing"} 1
outrigger_health_checks{status="warning"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outrigger_health_checks"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "outrigger_health_check_duration_seconds")
	if err != nil || n != 4 { // one series per runner type
		t.Errorf("duration series: got %d, %v", n, err)
	}
	h.clock.Advance(time.Minute)
	if got := testutil.ToFloat64(h.metrics.ttlExpired); got != 1 {
		t.Errorf("ttl expired: got %v, want 1", got)
	}

	// One Checks per Registerer; Close frees it.
	if _, err := New(Config{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second New on the registry: got %v", err)
	}
	h.Close()
	cs, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	cs.Close()
}

// TestOnUpdateCallsBack: OnUpdate may call into Checks.
func TestOnUpdateCallsBack(t *testing.T) {
	var cs *Checks
	var ready sync.WaitGroup
	ready.Add(1)
	seen := make(chan string, 10)
	cfg := DefaultConfig()
	cfg.OnUpdate = func(s CheckState) {
		ready.Wait()
		got, _ := cs.Get(s.ID)
		seen <- got.Status
		_ = cs.List()
	}
	cs, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ready.Done()
	if err := cs.Add(CheckDefinition{Name: "app", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-seen:
		if s != StatusCritical {
			t.Errorf("got %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnUpdate not called")
	}
}

func TestNotifierCoalesces(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	n := newNotifier(func(s CheckState) {
		mu.Lock()
		got = append(got, s.ID+"="+s.Output)
		first := len(got) == 1
		mu.Unlock()
		if first {
			<-release
		}
	})
	ctx := t.Context()
	go n.run(ctx)
	n.push(CheckState{ID: "a", Output: "1"})
	waitFor(t, "first delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	n.push(CheckState{ID: "b", Output: "1"})
	n.push(CheckState{ID: "a", Output: "2"})
	n.push(CheckState{ID: "c", Output: "1"})
	n.push(CheckState{ID: "a", Output: "3"})
	n.drop("c")
	close(release)
	waitFor(t, "all deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a=1", "b=1", "a=3"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestChecksConcurrent exercises the locking under -race: TTL updates,
// reads, adds and removes from many goroutines, on the real clock.
func TestChecksConcurrent(t *testing.T) {
	logger, _ := newTestLogger(t)
	var calls atomic.Int64
	cs, err := New(Config{Logger: logger, OnUpdate: func(CheckState) { calls.Add(1) }, OnDeregister: func(string, CheckState) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("c%d", (g+i)%5)
				switch i % 5 {
				case 0:
					_ = cs.Add(CheckDefinition{ID: id, Name: id, TTL: time.Millisecond * time.Duration(1+i%3), ServiceID: "s"})
				case 1:
					_ = cs.Pass(id, strconv.Itoa(i))
				case 2:
					_, _ = cs.Get(id)
					_ = cs.List()
				case 3:
					_ = cs.Fail(id, "x")
				case 4:
					if i%10 == 4 {
						_ = cs.Remove(id)
					}
				}
			}
		})
	}
	wg.Wait()
	if calls.Load() == 0 {
		t.Error("no OnUpdate calls")
	}
}

func isSubsequence(sub, of []string) bool {
	i := 0
	for _, s := range of {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}
