package health

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Checks holds the checks of one agent and runs them. Its methods are
// safe for concurrent use.
type Checks struct {
	cfg     Config
	log     *slog.Logger
	clock   clock
	metrics *metrics
	notify  *notifier // nil without Config.OnUpdate

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the notifier and the reaper

	mu     sync.Mutex
	checks map[string]*check
	closed bool
}

// check is one registered check. Fields other than the immutable ones are
// guarded by Checks.mu.
type check struct {
	// Immutable after Add.
	probe  prober // nil for TTL checks
	limit  int    // output cap
	log    *slog.Logger
	cancel context.CancelFunc // stops the run loop; nil for TTL checks
	done   chan struct{}      // closed when the run loop returns; nil for TTL checks

	state         CheckState
	th            thresholds
	criticalSince time.Time // when the status became critical; zero otherwise
	reaped        bool      // OnDeregister already told about this critical spell
	removed       bool

	ttlTimer   timer
	ttlGen     uint64 // invalidates a TTL timer that fires after a reset
	lastOutput string // last TTL update's output, quoted on expiry
}

// New returns an empty Checks. Close it to stop its checks.
func New(cfg Config) (*Checks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cs := &Checks{
		cfg:    cfg,
		log:    cfg.Logger,
		clock:  cfg.clock,
		checks: map[string]*check{},
	}
	cs.metrics = newMetrics(cs)
	if cfg.Registerer != nil {
		if err := cs.metrics.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	cs.ctx, cs.cancel = context.WithCancel(context.Background())
	if cfg.OnUpdate != nil {
		cs.notify = newNotifier(cfg.OnUpdate)
		cs.wg.Go(func() { cs.notify.run(cs.ctx) })
	}
	if cfg.OnDeregister != nil {
		cs.wg.Go(cs.reapLoop)
	}
	return cs, nil
}

// Add validates def, registers it and starts it: a TTL check's deadline
// runs from now; any other check first runs after a random delay of up to
// its Interval. An existing check with the same ID is stopped and
// replaced; its status and output carry over unless def gives a Status.
//
// Errors: a *DefinitionError (errors.Is ErrInvalidDefinition), with
// ErrScriptChecksDisabled for a script check without
// Config.EnableScriptChecks; ErrClosed after Close.
func (cs *Checks) Add(def CheckDefinition) error {
	if err := def.Validate(); err != nil {
		return err
	}
	typ := def.Type()
	if typ == TypeScript && !cs.cfg.EnableScriptChecks {
		return &DefinitionError{Check: def.label(), Field: "Args", Msg: ErrScriptChecksDisabled.Error(), Err: ErrScriptChecksDisabled}
	}
	def, notes := def.normalized()
	log := cs.log.With("check", def.ID, "type", typ)
	for _, n := range notes {
		log.Warn("check definition adjusted", "change", n)
	}
	limit := cs.cfg.OutputMaxSize
	if def.OutputMaxSize > 0 {
		limit = min(limit, def.OutputMaxSize)
	}
	status := def.Status
	if status == "" {
		status = StatusCritical
	}
	ch := &check{
		probe: newProber(&def, limit),
		limit: limit,
		log:   log,
		th:    newThresholds(&def),
		state: CheckState{
			ID:         def.ID,
			Name:       def.Name,
			ServiceID:  def.ServiceID,
			Status:     status,
			Notes:      def.Notes,
			Type:       typ,
			Definition: def,
		},
	}

	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return fmt.Errorf("health: add %q: %w", def.ID, ErrClosed)
	}
	old := cs.checks[def.ID]
	if old != nil {
		cs.stopLocked(old)
		if def.Status == "" {
			ch.state.Status = old.state.Status
			ch.state.Output = old.state.Output
			ch.criticalSince = old.criticalSince
			ch.reaped = old.reaped
		}
	}
	if ch.state.Status == StatusCritical && ch.criticalSince.IsZero() {
		ch.criticalSince = cs.clock.Now()
	}
	cs.checks[def.ID] = ch
	if typ == TypeTTL {
		cs.armTTLLocked(ch)
	} else {
		ctx, cancel := context.WithCancel(cs.ctx)
		ch.cancel = cancel
		ch.done = make(chan struct{})
		go cs.loop(ctx, ch, cs.startDelay(def.Interval))
	}
	cs.publishLocked(ch)
	cs.mu.Unlock()

	if old != nil {
		old.wait()
		log.Info("check replaced")
	} else {
		log.Debug("check added")
	}
	return nil
}

// Remove stops and forgets the check. It returns once a run under way
// has been cancelled (a script's process group killed). Removing an
// unknown ID returns ErrUnknownCheck.
func (cs *Checks) Remove(id string) error {
	cs.mu.Lock()
	ch := cs.checks[id]
	if ch == nil {
		cs.mu.Unlock()
		return fmt.Errorf("health: check %q: %w", id, ErrUnknownCheck)
	}
	delete(cs.checks, id)
	cs.stopLocked(ch)
	cs.mu.Unlock()
	ch.wait()
	ch.log.Debug("check removed")
	return nil
}

// Get returns the check's current state.
func (cs *Checks) Get(id string) (CheckState, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.checks[id]
	if ch == nil {
		return CheckState{}, false
	}
	return ch.snapshot(), true
}

// List returns every check's state, sorted by ID.
func (cs *Checks) List() []CheckState {
	cs.mu.Lock()
	out := make([]CheckState, 0, len(cs.checks))
	for _, ch := range cs.checks {
		out = append(out, ch.snapshot())
	}
	cs.mu.Unlock()
	slices.SortFunc(out, func(a, b CheckState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Close stops every check and waits for runs under way to be cancelled.
// Pending OnUpdate calls are dropped. Later calls return ErrClosed (Close
// itself returns nil).
func (cs *Checks) Close() error {
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return nil
	}
	cs.closed = true
	all := make([]*check, 0, len(cs.checks))
	for id, ch := range cs.checks {
		all = append(all, ch)
		cs.stopLocked(ch)
		delete(cs.checks, id)
	}
	cs.mu.Unlock()
	for _, ch := range all {
		ch.wait()
	}
	cs.cancel()
	cs.wg.Wait()
	if cs.cfg.Registerer != nil {
		cs.metrics.unregister(cs.cfg.Registerer)
	}
	return nil
}

// startDelay is the random wait before a check's first run, in
// [0, interval): checks registered together (an agent starting with a
// hundred services) spread over their interval instead of firing at once.
func (cs *Checks) startDelay(interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(cs.cfg.randN(int64(interval)))
}

// loop runs one check until ctx ends: after the start delay, then
// Interval after each run finishes.
func (cs *Checks) loop(ctx context.Context, ch *check, delay time.Duration) {
	defer close(ch.done)
	interval := ch.state.Definition.Interval // immutable
	for {
		t := cs.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		cs.runOnce(ctx, ch)
		delay = interval
	}
}

func (cs *Checks) runOnce(ctx context.Context, ch *check) {
	def := &ch.state.Definition // immutable
	rctx, cancel := context.WithTimeout(ctx, def.Timeout)
	start := time.Now() // real time: the latency of real I/O
	r := ch.probe.probe(rctx)
	elapsed := time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return // removed or closed during the run; its result means nothing
	}
	r.output = capHead(r.output, ch.limit, -1)
	cs.metrics.observeRun(ch.state.Type, r.status, elapsed)
	ch.log.Debug("check ran", "result", r.status, "took", elapsed)
	cs.record(ch, r)
}

// record applies one run's result through the thresholds.
func (cs *Checks) record(ch *check, r result) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch.removed {
		return
	}
	status, ok := ch.th.observe(r.status)
	if !ok {
		ch.log.Info("check result not applied yet: threshold not reached",
			"result", r.status, "status", ch.state.Status,
			"successes", ch.th.successes, "success_before_passing", ch.th.successBeforePassing,
			"failures", ch.th.failures, "failures_before_critical", ch.th.failuresBeforeCritical)
		return
	}
	cs.setLocked(ch, status, r.output)
}

// setLocked changes a check's status and output and tells OnUpdate.
func (cs *Checks) setLocked(ch *check, status, output string) {
	st := &ch.state
	if st.Status == status && st.Output == output {
		return
	}
	if st.Status != status {
		level := slog.LevelInfo
		if status != StatusPassing {
			level = slog.LevelWarn
		}
		ch.log.Log(context.Background(), level, "check is now "+status, "was", st.Status)
		if status == StatusCritical {
			ch.criticalSince = cs.clock.Now()
		} else {
			ch.criticalSince = time.Time{}
			ch.reaped = false
		}
	}
	st.Status, st.Output = status, output
	cs.publishLocked(ch)
}

// publishLocked queues the check's state for OnUpdate. Queueing under
// Checks.mu orders it before a Remove of the same check, which drops it.
func (cs *Checks) publishLocked(ch *check) {
	if cs.notify != nil {
		cs.notify.push(ch.snapshot())
	}
}

// stopLocked marks the check removed and stops its loop or TTL timer;
// the caller waits for the loop outside the lock.
func (cs *Checks) stopLocked(ch *check) {
	ch.removed = true
	if ch.cancel != nil {
		ch.cancel()
	}
	if ch.ttlTimer != nil {
		ch.ttlTimer.Stop()
	}
	if cs.notify != nil {
		cs.notify.drop(ch.state.ID)
	}
}

// wait returns when the check's run loop has returned.
func (ch *check) wait() {
	if ch.done != nil {
		<-ch.done
	}
}

// snapshot copies the state, maps and slices included, so callers cannot
// change a running check.
func (ch *check) snapshot() CheckState {
	s := ch.state
	s.Definition.Header = cloneHeader(s.Definition.Header)
	s.Definition.Args = slices.Clone(s.Definition.Args)
	return s
}
