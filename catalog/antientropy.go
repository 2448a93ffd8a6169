package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Anti-entropy defaults, as in Consul.
const (
	// DefaultSyncInterval is the base interval of full syncs.
	DefaultSyncInterval = time.Minute
	// DefaultCheckUpdateInterval is how long a change of a check's output
	// alone may wait before it is pushed (Consul's check_update_interval).
	// Checks whose output changes on every run would otherwise write to
	// Raft on every run.
	DefaultCheckUpdateInterval = 5 * time.Minute
	// DefaultRetryMin and DefaultRetryMax bound the back-off between
	// attempts while no server can be reached.
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
	// scaleThreshold is the cluster size above which the full-sync
	// stagger grows with log2 of the size.
	scaleThreshold = 128
)

// AntiEntropyConfig configures an AntiEntropy. Zero values mean the
// documented default.
type AntiEntropyConfig struct {
	// Node is this agent's node: Node.Node and Node.Address are required.
	Node Node
	// Local is the state to copy to the servers. Required.
	Local *LocalState
	// Client reaches the servers' catalog. Required.
	Client Client
	// ClusterSize returns the number of nodes in the cluster (gossip
	// members), to spread full syncs of large clusters. If nil, 1.
	ClusterSize func() int
	// Interval is the base interval of full syncs; see Run. If zero,
	// DefaultSyncInterval.
	Interval time.Duration
	// CheckUpdateInterval delays pushing a check whose output alone
	// changed. If zero, DefaultCheckUpdateInterval; if negative, output
	// changes are pushed at once like any other.
	CheckUpdateInterval time.Duration
	// RetryMin and RetryMax bound the back-off after a failed run. If
	// zero, DefaultRetryMin and DefaultRetryMax.
	RetryMin time.Duration
	RetryMax time.Duration
	// Logger receives this package's logs. If nil, nothing is logged.
	Logger *slog.Logger
	// Registerer, if set, gets the outrigger_catalog_sync_* and
	// outrigger_catalog_local_* metrics.
	Registerer prometheus.Registerer

	// clock and randN are replaced by tests.
	clock clock
	randN func(n int64) int64 // uniform in [0, n), n > 0
}

// Validate checks every field and returns one *ConfigError per bad field
// (joined with errors.Join).
func (c *AntiEntropyConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{field, fmt.Sprintf(format, args...)})
	}
	if c.Node.Node == "" {
		bad("Node.Node", "missing")
	}
	if c.Node.Address == "" {
		bad("Node.Address", "missing")
	}
	if c.Local == nil {
		bad("Local", "missing")
	}
	if c.Client == nil {
		bad("Client", "missing")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"Interval", c.Interval}, {"RetryMin", c.RetryMin}, {"RetryMax", c.RetryMax}} {
		if d.v < 0 {
			bad(d.field, "%v is negative", d.v)
		}
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		bad("RetryMin", "%v is above RetryMax %v", c.RetryMin, c.RetryMax)
	}
	return errors.Join(errs...)
}

func (c AntiEntropyConfig) withDefaults() AntiEntropyConfig {
	if c.Interval == 0 {
		c.Interval = DefaultSyncInterval
	}
	if c.CheckUpdateInterval == 0 {
		c.CheckUpdateInterval = DefaultCheckUpdateInterval
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
		if c.RetryMax > 0 {
			c.RetryMin = min(c.RetryMin, c.RetryMax)
		}
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.ClusterSize == nil {
		c.ClusterSize = func() int { return 1 }
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

// AntiEntropy keeps the servers' catalog entries for this node equal to
// the agent's LocalState: it pushes every local change at once, and
// periodically compares the servers' view of the node with the local
// state and repairs the differences both ways. See Run.
type AntiEntropy struct {
	cfg     AntiEntropyConfig
	log     *slog.Logger
	metrics *syncMetrics

	// syncMu makes runs one at a time: Run's and direct SyncFull or
	// SyncChanges calls.
	syncMu sync.Mutex

	mu         sync.Mutex
	node       Node
	nodeInSync bool
	nodeGen    uint64
	status     SyncStatus

	trigger chan struct{}
	running atomic.Bool
}

// SyncStatus is anti-entropy's progress, for the agent's status output.
type SyncStatus struct {
	// LastFullSync is when the last successful full sync ended.
	LastFullSync time.Time
	// LastSync is when the last successful run of either kind ended.
	LastSync time.Time
	// LastError is the error of the last failed run, nil after a success.
	LastError error
	// Failures counts runs that failed in a row.
	Failures int
	// Pending is how many local entries the servers do not have yet.
	Pending int
}

// NewAntiEntropy checks cfg and returns an AntiEntropy; Run starts it.
func NewAntiEntropy(cfg AntiEntropyConfig) (*AntiEntropy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &AntiEntropy{
		cfg:     cfg,
		log:     cfg.Logger,
		node:    cloneNode(cfg.Node),
		trigger: make(chan struct{}, 1),
	}
	a.metrics = newSyncMetrics(a)
	if err := registerAll(cfg.Registerer, "AntiEntropy", a.metrics.collectors()); err != nil {
		return nil, err
	}
	return a, nil
}

// Close unregisters the metrics. Stop Run by cancelling its context.
func (a *AntiEntropy) Close() error {
	unregisterAll(a.cfg.Registerer, a.metrics.collectors())
	return nil
}

// Run syncs until ctx ends, and then returns nil. It starts with a full
// sync; after that it pushes local changes as they happen (SyncChanges)
// and runs a full sync every Interval plus a random stagger of up to
// Interval × scale, where scale is 1 up to 128 nodes and grows by one
// per doubling above (Consul's schedule: a 1000-node cluster staggers
// full syncs over up to 5 minutes). A check whose output alone changed
// is pushed CheckUpdateInterval after the change.
//
// When a run fails because no server answers (or they answer with a
// server error), Run backs off — RetryMin doubling up to RetryMax, plus
// a random stagger as above — and retries with a full sync, so a server
// that lost entries while the agent could not reach it gets them back.
// Local changes made meanwhile wait for that retry; nothing local is
// dropped. A request the servers refuse (4xx) is logged, and retried at
// the next run. Run returns an error only if it is already running.
func (a *AntiEntropy) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("catalog: anti-entropy: already running")
	}
	defer a.running.Store(false)
	changes, stop := a.cfg.Local.Watch()
	defer stop()

	clk := a.cfg.clock
	full := true
	failures := 0
	var nextFull time.Time
	for {
		var err error
		if full {
			err = a.SyncFull(ctx)
		} else {
			err = a.SyncChanges(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil && transient(err):
			failures++
			wait = a.backoff(failures)
			full = true
			a.log.Warn("catalog sync failed; will retry", "err", err, "failures", failures, "retry_in", wait)
		default:
			if err != nil {
				a.log.Warn("catalog sync: servers refused a registration", "err", err)
			}
			if failures > 0 {
				a.log.Info("catalog sync recovered", "after_failures", failures)
			}
			failures = 0
			if full {
				nextFull = clk.Now().Add(a.fullSyncWait())
			}
			full = false
			wait = max(nextFull.Sub(clk.Now()), 0)
		}
		full = a.wait(ctx, changes, wait, failures > 0) || full
		if ctx.Err() != nil {
			return nil
		}
	}
}

// wait blocks until the next run is due: after d (a full sync, or the
// retry when backingOff), on TriggerFull, on a local change (not while
// backing off: the retry pushes it), or when a deferred output change
// falls due. It reports whether the next run must be a full sync.
func (a *AntiEntropy) wait(ctx context.Context, changes <-chan struct{}, d time.Duration, backingOff bool) (full bool) {
	clk := a.cfg.clock
	t := clk.NewTimer(d)
	defer t.Stop()
	var deferred <-chan time.Time
	if !backingOff {
		if _, due := a.cfg.Local.pendingOps(clk.Now(), a.cfg.CheckUpdateInterval); !due.IsZero() {
			dt := clk.NewTimer(max(due.Sub(clk.Now()), 0))
			defer dt.Stop()
			deferred = dt.C()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
			return true
		case <-a.trigger:
			return true
		case <-changes:
			if !backingOff {
				return false
			}
		case <-deferred:
			return false
		}
	}
}

// TriggerFull asks Run for a full sync now, cutting any back-off short:
// call it when the agent (re)joins the cluster or sees a server come
// back.
func (a *AntiEntropy) TriggerFull() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// SetNode changes the node's registration (address, metadata, ...) and
// triggers a full sync to push it.
func (a *AntiEntropy) SetNode(n Node) {
	a.mu.Lock()
	a.node = cloneNode(n)
	a.nodeInSync = false
	a.nodeGen++
	a.mu.Unlock()
	a.TriggerFull()
}

// Status reports anti-entropy's progress.
func (a *AntiEntropy) Status() SyncStatus {
	a.mu.Lock()
	s := a.status
	a.mu.Unlock()
	s.Pending = a.cfg.Local.pendingCount()
	return s
}

// SyncFull reads what the servers hold for this node, marks every
// difference from the local state, and pushes the fixes: entries the
// servers lack or hold differently are registered, entries they hold
// that the agent does not own are deregistered (except the serfHealth
// check and the servers' own "consul" service, which the servers
// manage). Run calls it; it is exported for the agent's startup and
// tests.
func (a *AntiEntropy) SyncFull(ctx context.Context) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	err := a.syncFullLocked(ctx)
	a.finish("full", err)
	return err
}

func (a *AntiEntropy) syncFullLocked(ctx context.Context) error {
	a.mu.Lock()
	name, gen := a.node.Node, a.nodeGen
	a.mu.Unlock()
	remote, err := a.cfg.Client.NodeServices(ctx, name)
	a.metrics.requests.WithLabelValues("read", result(err)).Inc()
	if err != nil {
		return fmt.Errorf("catalog: full sync: read node %q: %w", name, err)
	}
	a.cfg.Local.reconcile(remote, a.cfg.clock.Now())
	a.mu.Lock()
	if a.nodeGen == gen {
		a.nodeInSync = remote.Node != nil && sameNode(a.node, *remote.Node)
	}
	a.mu.Unlock()
	if err := a.push(ctx); err != nil {
		return fmt.Errorf("catalog: full sync: %w", err)
	}
	return nil
}

// SyncChanges pushes what the servers lack according to the local
// bookkeeping, without reading from them. Run calls it on every local
// change.
func (a *AntiEntropy) SyncChanges(ctx context.Context) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	err := a.push(ctx)
	if err != nil {
		err = fmt.Errorf("catalog: sync changes: %w", err)
	}
	a.finish("changes", err)
	return err
}

func (a *AntiEntropy) finish(kind string, err error) {
	a.metrics.runs.WithLabelValues(kind, result(err)).Inc()
	now := a.cfg.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.status.LastError = err
		a.status.Failures++
		return
	}
	a.status.LastError, a.status.Failures, a.status.LastSync = nil, 0, now
	if kind == "full" {
		a.status.LastFullSync = now
	}
	a.metrics.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}

// push makes the writes pendingOps lists. It stops at the first
// transient error (the servers are unreachable: the rest would fail too)
// and carries on past refusals, returning them joined.
func (a *AntiEntropy) push(ctx context.Context) error {
	clk := a.cfg.clock
	ops, _ := a.cfg.Local.pendingOps(clk.Now(), a.cfg.CheckUpdateInterval)
	a.mu.Lock()
	node, nodeInSync, nodeGen := a.node, a.nodeInSync, a.nodeGen
	a.mu.Unlock()

	var refused []error
	do := func(op string, what string, f func() error) (ok bool, stop error) {
		err := f()
		a.metrics.requests.WithLabelValues(op, result(err)).Inc()
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case transient(err):
			return false, fmt.Errorf("%s: %w", what, err)
		}
		refused = append(refused, fmt.Errorf("%s: %w", what, err))
		return false, nil
	}
	register := func(svc *Service, checks []HealthCheck) error {
		req := &RegisterRequest{
			Datacenter:      node.Datacenter,
			ID:              node.ID,
			Node:            node.Node,
			Address:         node.Address,
			TaggedAddresses: node.TaggedAddresses,
			NodeMeta:        node.Meta,
			Service:         svc,
			SkipNodeUpdate:  nodeInSync,
		}
		for _, c := range checks {
			c.Node = node.Node
			req.Checks = append(req.Checks, c)
		}
		err := a.cfg.Client.Register(ctx, req)
		if err == nil && !nodeInSync {
			nodeInSync = a.markNodeSynced(nodeGen)
		}
		return err
	}

	for _, op := range ops {
		var ok bool
		var err error
		switch op.kind {
		case opDeregisterService:
			ok, err = do("deregister", "deregister service "+op.id, func() error {
				return a.cfg.Client.Deregister(ctx, &DeregisterRequest{Datacenter: node.Datacenter, Node: node.Node, ServiceID: op.id})
			})
		case opDeregisterCheck:
			ok, err = do("deregister", "deregister check "+op.id, func() error {
				return a.cfg.Client.Deregister(ctx, &DeregisterRequest{Datacenter: node.Datacenter, Node: node.Node, CheckID: op.id})
			})
		case opRegisterService:
			ok, err = do("register", "register service "+op.id, func() error { return register(op.service, op.checks) })
		case opRegisterCheck:
			ok, err = do("register", "register check "+op.id, func() error { return register(nil, op.checks) })
		}
		if err != nil {
			return err
		}
		if ok {
			a.cfg.Local.markSynced(op)
			a.log.Debug("catalog sync", "op", op.kind.String(), "id", op.id)
		}
	}
	if !nodeInSync {
		if _, err := do("register", "register node "+node.Node, func() error { return register(nil, nil) }); err != nil {
			return err
		}
	}
	return errors.Join(refused...)
}

// markNodeSynced records that the node's registration went through,
// unless SetNode changed it meanwhile.
func (a *AntiEntropy) markNodeSynced(gen uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodeGen == gen {
		a.nodeInSync = true
	}
	return a.nodeInSync
}

// scaleFactor is Consul's: 1 up to 128 nodes, then one more per doubling.
func scaleFactor(nodes int) int {
	if nodes <= scaleThreshold {
		return 1
	}
	return int(math.Ceil(math.Log2(float64(nodes))-math.Log2(scaleThreshold))) + 1
}

// stagger returns a random duration in [0, d × scale).
func (a *AntiEntropy) stagger(d time.Duration) time.Duration {
	n := int64(d) * int64(scaleFactor(a.cfg.ClusterSize()))
	if n <= 0 {
		return 0
	}
	return time.Duration(a.cfg.randN(n))
}

// fullSyncWait is the time to the next periodic full sync.
func (a *AntiEntropy) fullSyncWait() time.Duration {
	return a.cfg.Interval + a.stagger(a.cfg.Interval)
}

// backoff is the wait after the n-th failure in a row.
func (a *AntiEntropy) backoff(n int) time.Duration {
	d := a.cfg.RetryMin
	for i := 1; i < n && d < a.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.cfg.RetryMax)
	return d + a.stagger(d)
}

func sameNode(a, b Node) bool {
	return a.Node == b.Node && (a.ID == "" || a.ID == b.ID) && a.Address == b.Address &&
		(a.Datacenter == "" || b.Datacenter == "" || a.Datacenter == b.Datacenter) &&
		mapsEqual(a.TaggedAddresses, b.TaggedAddresses) && mapsEqual(a.Meta, b.Meta)
}

func cloneNode(n Node) Node {
	n.TaggedAddresses = maps.Clone(n.TaggedAddresses)
	n.Meta = maps.Clone(n.Meta)
	return n
}
