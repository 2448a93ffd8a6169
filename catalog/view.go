package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// View defaults.
const (
	// DefaultIdleTimeout is how long a subscription lives unused.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultWait is the wait of the view's blocking queries (Consul's
	// default; the servers cap it at 10 minutes).
	DefaultWait = 5 * time.Minute
	// DefaultViewRetryMax caps the back-off of a subscription whose
	// servers are unreachable: discovery should recover soon after they
	// come back.
	DefaultViewRetryMax = 30 * time.Second
	// requestSlack is added to Wait (and the servers' jitter of Wait/16)
	// to bound a blocking query whose connection died silently.
	requestSlack = 15 * time.Second
)

// ViewConfig configures a View. Zero values mean the documented default.
type ViewConfig struct {
	// Client reads the servers' /v1/health/service. Required. If it is a
	// MultiHealthClient (HTTPClient is), the View follows all its
	// services with one blocking request to the health-watch endpoint,
	// and falls back to one blocking read per service if the servers
	// lack it.
	Client HealthClient
	// IdleTimeout is how long a subscription lives after its last use
	// (Service call or end of its last Watch); a subscription being
	// watched never expires. If zero, DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Wait is the wait of each blocking query. If zero, DefaultWait.
	Wait time.Duration
	// RequireLeader makes the reads default-consistency ones, answered by
	// the leader. By default they are ?stale, so any server answers and
	// discovery keeps working without a leader.
	RequireLeader bool
	// RetryMin and RetryMax bound the back-off of a subscription that
	// cannot reach the servers. If zero, DefaultRetryMin and
	// DefaultViewRetryMax.
	RetryMin time.Duration
	RetryMax time.Duration
	// Logger receives this package's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the outrigger_catalog_view_* metrics.
	Registerer prometheus.Registerer

	// clock and randN are replaced by tests.
	clock clock
	randN func(n int64) int64
}

// Validate checks every field and returns one *ConfigError per bad field
// (joined with errors.Join).
func (c *ViewConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{field, fmt.Sprintf(format, args...)})
	}
	if c.Client == nil {
		bad("Client", "missing")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"IdleTimeout", c.IdleTimeout}, {"Wait", c.Wait}, {"RetryMin", c.RetryMin}, {"RetryMax", c.RetryMax}} {
		if d.v < 0 {
			bad(d.field, "%v is negative", d.v)
		}
	}
	if c.Wait > 10*time.Minute {
		bad("Wait", "%v is above the servers' maximum of 10m", c.Wait)
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		bad("RetryMin", "%v is above RetryMax %v", c.RetryMin, c.RetryMax)
	}
	return errors.Join(errs...)
}

func (c ViewConfig) withDefaults() ViewConfig {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Wait == 0 {
		c.Wait = DefaultWait
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
		if c.RetryMax > 0 {
			c.RetryMin = min(c.RetryMin, c.RetryMax)
		}
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(DefaultViewRetryMax, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.randN == nil {
		c.randN = rand.Int64N
	}
	return c
}

// Snapshot is the view's result for one service.
type Snapshot struct {
	// Service is the name as first asked for.
	Service string
	// Entries are the instances with their nodes and checks, as the
	// servers returned them (every instance, healthy or not: see Healthy
	// and WithTags). Shared by every reader: do not modify.
	Entries []ServiceEntry
	// Index is the result's X-Consul-Index.
	Index uint64
	// Fetched is when the servers last answered with a change, or
	// without one after the result had been stale (or, following one
	// service per request, after any answer).
	Fetched time.Time
	// LastContact and KnownLeader are what the answering server said: how
	// long since it heard from the leader, and whether it knew one.
	LastContact time.Duration
	KnownLeader bool
	// Stale means the latest attempt to reach the servers failed: Entries
	// are the last known, kept until the servers answer again. Err says
	// why.
	Stale bool
	Err   error
}

// Age is how old the result may be at now: the answering server's
// LastContact while the view is in contact with the servers (a blocking
// query is then waiting for the next change), plus the time since the
// last answer once it is Stale.
func (s Snapshot) Age(now time.Time) time.Duration {
	if !s.Stale {
		return s.LastContact
	}
	return max(now.Sub(s.Fetched), 0) + s.LastContact
}

// Healthy returns the entries DNS would answer with (see Healthy).
func (s Snapshot) Healthy(onlyPassing bool) []ServiceEntry { return Healthy(s.Entries, onlyPassing) }

// WithTags returns the entries having every tag (see WithTags).
func (s Snapshot) WithTags(tags ...string) []ServiceEntry { return WithTags(s.Entries, tags...) }

// View is the agent's local, read-only view of the services it uses: a
// subscription per service, started by the first Service or Watch call,
// kept fresh by blocking queries to the servers (one for every service
// with a MultiHealthClient, one per service otherwise), kept when the servers
// are unreachable, and dropped after IdleTimeout without use. Reads of a
// subscribed service make no network request. Safe for concurrent use.
type View struct {
	cfg     ViewConfig
	log     *slog.Logger
	metrics *viewMetrics
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// mux, when the Client is a MultiHealthClient, follows every
	// subscription with one blocking request; perService (under mu) is
	// set once the servers turned out not to support it.
	mux *viewMux

	mu         sync.RWMutex
	subs       map[string]*subscription // by fold(name)
	closed     bool
	perService bool
}

type subscription struct {
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed at the first outcome, result or error
	done   chan struct{} // closed when the subscription has ended (end)

	state    atomic.Pointer[subState]
	lastUsed atomic.Int64 // clock UnixNano
	// watchers is guarded by View.mu.
	watchers  map[chan struct{}]struct{}
	readyOnce sync.Once
	endOnce   sync.Once
}

// end closes done: the subscription expired or the View closed.
func (s *subscription) end() { s.endOnce.Do(func() { close(s.done) }) }

type subState struct {
	snap Snapshot
	have bool
}

// NewView checks cfg and returns a running View; Close stops it.
func NewView(cfg ViewConfig) (*View, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	v := &View{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, subs: map[string]*subscription{}}
	v.metrics = newViewMetrics(v)
	if err := registerAll(cfg.Registerer, "View", v.metrics.collectors()); err != nil {
		cancel()
		return nil, err
	}
	if mc, ok := cfg.Client.(MultiHealthClient); ok {
		v.mux = newViewMux(v, mc)
		v.wg.Add(1)
		go v.mux.run()
	}
	v.wg.Add(1)
	go v.expireLoop()
	return v, nil
}

// Close stops every subscription and waits for their loops to end.
func (v *View) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	v.mu.Lock()
	for _, s := range v.subs {
		s.end()
	}
	v.mu.Unlock()
	unregisterAll(v.cfg.Registerer, v.metrics.collectors())
	return nil
}

// Service returns the current result for a service, subscribing to it
// on first use and then waiting (up to ctx) for the servers' first
// answer. Once subscribed it answers at once from memory. If the
// servers cannot be reached and there is no result yet, it returns an
// error wrapping ErrNoResult without waiting further (the subscription
// keeps trying). Names are case-insensitive.
func (v *View) Service(ctx context.Context, name string) (Snapshot, error) {
	for attempt := 0; ; attempt++ {
		s, err := v.subscribe(name)
		if err != nil {
			return Snapshot{}, err
		}
		if st := s.state.Load(); st != nil {
			if st.have {
				return st.snap, nil
			}
			return Snapshot{}, fmt.Errorf("catalog: view: service %q: %w: %v", name, ErrNoResult, st.snap.Err)
		}
		select {
		case <-s.ready:
		case <-s.done:
			// Expired or closed before its first answer.
			if attempt > 0 {
				return Snapshot{}, fmt.Errorf("catalog: view: service %q: %w", name, ErrNoResult)
			}
		case <-ctx.Done():
			return Snapshot{}, fmt.Errorf("catalog: view: service %q: %w", name, ctx.Err())
		}
	}
}

// Peek returns the current result for a service if it is subscribed and
// has one, without subscribing or counting as a use.
func (v *View) Peek(name string) (Snapshot, bool) {
	v.mu.RLock()
	s := v.subs[fold(name)]
	v.mu.RUnlock()
	if s == nil {
		return Snapshot{}, false
	}
	st := s.state.Load()
	if st == nil || !st.have {
		return Snapshot{}, false
	}
	return st.snap, true
}

// Watch subscribes to a service and returns a channel that receives a
// value whenever its result changes (coalesced: at most one pending),
// and a function to stop watching. For a new subscription the first
// result counts as a change; read results with Service. A watched
// subscription does not expire; its idle time starts when the watch is
// cancelled. If the View is closed the channel never fires.
func (v *View) Watch(name string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ch, func() {}
	}
	s := v.subs[fold(name)]
	if s == nil {
		s = v.startLocked(name)
	}
	s.watchers[ch] = struct{}{} // before the first result can arrive
	v.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			v.mu.Lock()
			delete(s.watchers, ch)
			s.lastUsed.Store(v.cfg.clock.Now().UnixNano())
			v.mu.Unlock()
		})
	}
}

// Services returns the names of the subscribed services, sorted.
func (v *View) Services() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.subs))
	for _, s := range v.subs {
		out = append(out, s.name)
	}
	slices.Sort(out)
	return out
}

// subscribe returns the subscription for name, starting one if needed,
// and counts it as used (for the idle timeout).
func (v *View) subscribe(name string) (*subscription, error) {
	key := fold(name)
	now := v.cfg.clock.Now().UnixNano()
	v.mu.RLock()
	s, closed := v.subs[key], v.closed
	if s != nil {
		s.lastUsed.Store(now) // under the read lock, so expiry sees it
	}
	v.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("catalog: view: %w", ErrClosed)
	}
	if s != nil {
		return s, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("catalog: view: %w", ErrClosed)
	}
	if s := v.subs[key]; s != nil {
		s.lastUsed.Store(now)
		return s, nil
	}
	return v.startLocked(name), nil
}

// startLocked starts a subscription; v.mu is held for writing.
func (v *View) startLocked(name string) *subscription {
	ctx, cancel := context.WithCancel(v.ctx)
	s := &subscription{
		name: name, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), done: make(chan struct{}),
		watchers: map[chan struct{}]struct{}{},
	}
	s.lastUsed.Store(v.cfg.clock.Now().UnixNano())
	v.subs[fold(name)] = s
	v.metrics.subscribed.Inc()
	v.log.Debug("view: subscribed", "service", name)
	if v.mux != nil && !v.perService {
		v.mux.add(s)
		return s
	}
	v.wg.Add(1)
	go v.follow(s)
	return s
}

// follow keeps s fresh with blocking queries until s is cancelled.
func (v *View) follow(s *subscription) {
	defer v.wg.Done()
	defer s.end()
	var index uint64
	failures := 0
	for {
		ctx, cancel := context.WithTimeout(s.ctx, v.cfg.Wait+v.cfg.Wait/16+requestSlack)
		start := time.Now() // real time: the servers' wait is real
		entries, meta, err := v.cfg.Client.ServiceHealth(ctx, s.name, QueryOptions{Index: index, Wait: v.cfg.Wait, Stale: !v.cfg.RequireLeader})
		took := time.Since(start)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		v.metrics.fetches.WithLabelValues(result(err)).Inc()
		if err != nil {
			failures++
			if failures == 1 {
				v.log.Warn("view: read failed; serving the last result", "service", s.name, "err", err)
			}
			v.fail(s, err)
			// Start over at index 0: the first answer after recovery
			// comes back at once and ends the staleness.
			index = 0
			if !v.sleep(s.ctx, v.backoff(failures)) {
				return
			}
			continue
		}
		if failures > 0 {
			v.log.Info("view: reads succeed again", "service", s.name, "after_failures", failures)
		}
		failures = 0
		if meta.Index < index {
			// The index went backwards (servers restored from a
			// snapshot, or another cluster): take the result, start over.
			index = 0
		}
		v.succeed(s, entries, meta)
		var pause time.Duration
		switch {
		case meta.Index == 0:
			// The servers give no index to block on: poll.
			pause = v.cfg.RetryMax
		case index > 0 && meta.Index == index && took < v.cfg.Wait/4:
			// A blocking query that returns early with nothing new, now
			// and then, is allowed; one that never blocks must not make
			// this loop spin.
			pause = v.cfg.RetryMin
		}
		if pause > 0 && !v.sleep(s.ctx, pause) {
			return
		}
		index = meta.Index
	}
}

// succeed stores an answer and tells the watchers if it differs.
func (v *View) succeed(s *subscription, entries []ServiceEntry, meta QueryMeta) {
	old := s.state.Load()
	snap := Snapshot{
		Service:     s.name,
		Entries:     entries,
		Index:       meta.Index,
		Fetched:     v.cfg.clock.Now(),
		LastContact: meta.LastContact,
		KnownLeader: meta.KnownLeader,
	}
	changed := true
	if old != nil && old.have {
		if (meta.Index != 0 && old.snap.Index == meta.Index) || reflect.DeepEqual(old.snap.Entries, entries) {
			snap.Entries = old.snap.Entries // keep sharing the slice readers hold
			changed = false
		}
	}
	s.state.Store(&subState{snap: snap, have: true})
	s.readyOnce.Do(func() { close(s.ready) })
	if changed {
		v.notify(s)
	}
}

// fail records a failed attempt: the last result stays, marked stale.
func (v *View) fail(s *subscription, err error) {
	st := subState{}
	if old := s.state.Load(); old != nil {
		st = *old
	}
	st.snap.Service = s.name
	st.snap.Stale, st.snap.Err = true, err
	s.state.Store(&st)
	s.readyOnce.Do(func() { close(s.ready) })
}

func (v *View) notify(s *subscription) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (v *View) sleep(ctx context.Context, d time.Duration) bool {
	t := v.cfg.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// backoff is the wait after the n-th failure in a row: RetryMin
// doubling up to RetryMax, between half and all of it at random.
func (v *View) backoff(n int) time.Duration {
	d := v.cfg.RetryMin
	for i := 1; i < n && d < v.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, v.cfg.RetryMax)
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	return time.Duration(half + v.cfg.randN(half+1))
}

// expireLoop drops unused subscriptions, checking four times per
// IdleTimeout.
func (v *View) expireLoop() {
	defer v.wg.Done()
	every := max(v.cfg.IdleTimeout/4, time.Millisecond)
	for v.sleep(v.ctx, every) {
		v.expire()
	}
}

func (v *View) expire() {
	cutoff := v.cfg.clock.Now().Add(-v.cfg.IdleTimeout).UnixNano()
	v.mu.Lock()
	defer v.mu.Unlock()
	for key, s := range v.subs {
		if len(s.watchers) == 0 && s.lastUsed.Load() <= cutoff {
			s.cancel()
			if v.mux != nil && !v.perService {
				s.end() // no follow loop of its own to do it
			}
			delete(v.subs, key)
			v.metrics.expired.Inc()
			v.log.Debug("view: subscription expired", "service", s.name)
		}
	}
}

// stats counts subscriptions, the stale ones, and the oldest result's
// age, for the metrics.
func (v *View) stats() (subs, stale int, maxAge time.Duration) {
	now := v.cfg.clock.Now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, s := range v.subs {
		subs++
		st := s.state.Load()
		if st == nil {
			continue
		}
		if st.snap.Stale {
			stale++
		}
		if st.have {
			maxAge = max(maxAge, st.snap.Age(now))
		}
	}
	return subs, stale, maxAge
}
