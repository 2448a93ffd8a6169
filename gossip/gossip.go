package gossip

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// leaveTimeout bounds Leave when its context has no deadline.
const leaveTimeout = 5 * time.Second

// updateTimeout bounds SetTags' wait for the update to be gossiped.
const updateTimeout = 5 * time.Second

// Gossip is this agent's membership in the cluster. Create it with New,
// then call Start; Leave and Shutdown end it. All methods are safe for
// concurrent use.
type Gossip struct {
	cfg   Config // defaults applied
	log   *slog.Logger
	ml    *memberlist.Memberlist
	tr    *netTransport
	table *memberTable
	subs  *fanout
	met   *metrics
	peers *peerStore // nil without DataDir
	now   func() time.Time
	runID uint64                           // tells this run from earlier ones under the same name
	bcast *memberlist.TransmitLimitedQueue // leave intents
	// joinTimeout bounds the wait for one reconnect join: memberlist's
	// TCP dial and then its push/pull exchange each take up to TCPTimeout.
	joinTimeout time.Duration

	metaMu sync.Mutex
	meta   []byte // encoded tags, served to memberlist

	retryDone chan error    // cap 1; see RetryJoinDone
	dirty     chan struct{} // cap 1; membership changed since peers.json was written

	mu       sync.Mutex // guards started, closed, cancel and wg.Add
	started  bool
	closed   bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	leaveMu  sync.Mutex
	shutOnce sync.Once
}

// New validates cfg, binds the gossip port and creates the memberlist
// instance, which starts answering probes and accepting joins at once.
// Call Start to run the retry-join, reconnect and reaper loops.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	runID := rand.Uint64() | 1 // never 0, the run ID of members without metadata
	meta, err := encodeMeta(runID, cfg.Tags)
	if err != nil { // checked by Validate
		return nil, fmt.Errorf("gossip: Tags: %w", err)
	}
	g := &Gossip{
		cfg:       cfg,
		log:       cfg.Logger,
		table:     newMemberTable(cfg.NodeName),
		now:       time.Now,
		runID:     runID,
		meta:      meta,
		retryDone: make(chan error, 1),
		dirty:     make(chan struct{}, 1),
	}
	g.met = newMetrics(g)
	g.subs = newFanout(func(first bool) {
		g.met.dropped.Inc()
		if first {
			g.log.Warn("event subscriber is not keeping up; dropping its events", "queued", maxQueuedEvents)
		}
	})
	if cfg.DataDir != "" {
		if g.peers, err = openPeerStore(cfg.DataDir); err != nil {
			return nil, err
		}
	}

	mlLog := log.New(newLogAdapter(g.log, g.met.rejected.Inc), "", 0)
	if g.tr, err = newTransport(cfg.BindAddr, cfg.BindPort, mlLog); err != nil {
		return nil, err
	}
	mc := cfg.memberlistConfig()
	g.bcast = &memberlist.TransmitLimitedQueue{NumNodes: g.table.numAlive, RetransmitMult: mc.RetransmitMult}
	g.joinTimeout = 2*mc.TCPTimeout + time.Second
	mc.Transport = g.tr
	mc.Logger = mlLog
	mc.Events = &eventDelegate{g: g}
	mc.Delegate = &delegate{g: g}
	mc.BindPort = g.tr.bindPort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = g.tr.bindPort
	}
	// memberlist calls the delegates from here on, before Create returns:
	// they must not use g.ml.
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = g.tr.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	g.ml = ml
	if cfg.Registerer != nil {
		if err := g.met.register(cfg.Registerer); err != nil {
			_ = ml.Shutdown()
			return nil, err
		}
	}
	return g, nil
}

// Start runs the background work until ctx ends or Shutdown: joining
// RetryJoin and the peers remembered in DataDir (retried with back-off,
// see RetryJoinDone), reconnecting to failed members, reaping old failed
// and left members, and saving the known peers. Calls after the first, or
// after Shutdown, do nothing.
func (g *Gossip) Start(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started || g.closed {
		return
	}
	g.started = true
	ctx, g.cancel = context.WithCancel(ctx)
	g.wg.Add(4)
	go func() { defer g.wg.Done(); g.retryJoinLoop(ctx) }()
	go func() { defer g.wg.Done(); g.reconnectLoop(ctx) }()
	go func() { defer g.wg.Done(); g.reapLoop(ctx) }()
	go func() { defer g.wg.Done(); g.persistLoop(ctx) }()
}

// RetryJoinDone delivers the outcome of Start's retry-join loop once: nil
// when a join succeeded (or there was nothing to join), an error wrapping
// ErrRetryJoinExhausted after RetryMax failed attempts, or the context's
// error if Start's context ended first. Consul exits when retry-join gives
// up; the agent can do the same by watching this.
func (g *Gossip) RetryJoinDone() <-chan error { return g.retryDone }

// Join contacts each address (host[:port], port DefaultPort if omitted)
// and syncs state with it. It returns how many were reached; the error is
// nil if at least one was. Failures caused by a gossip key mismatch wrap
// ErrKeyMismatch. ctx ends the wait; an attempt in flight finishes in the
// background within memberlist's TCP timeout. Join logs only a partial
// success; failures are for the caller to report (the retry-join loop logs
// every failed attempt).
func (g *Gossip) Join(ctx context.Context, addrs []string) (int, error) {
	if g.isClosed() {
		return 0, fmt.Errorf("gossip: join: %w", ErrShutdown)
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("gossip: join: %w", ErrNoAddrs)
	}
	var errs joinErrors
	n := 0
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		addr, err := normalizeAddr(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := g.joinOne(ctx, addr); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		if len(errs) > 0 {
			g.log.Warn("join reached only some addresses", "joined", n, "err", errs)
		}
		return n, nil
	}
	return 0, fmt.Errorf("gossip: join: %w", errs)
}

// joinOne runs one memberlist join (a TCP push/pull) and explains key
// errors.
func (g *Gossip) joinOne(ctx context.Context, addr string) error {
	ch := make(chan error, 1)
	go func() {
		_, err := g.ml.Join([]string{addr})
		ch <- err
	}()
	var err error
	select {
	case err = <-ch:
	case <-ctx.Done():
		return fmt.Errorf("join %s: %w", addr, ctx.Err())
	}
	if err == nil {
		return nil
	}
	// memberlist wraps per-address errors ("failed to join ADDR: cause")
	// in a multierror whose text spans lines; keep the inner one.
	if u, ok := err.(interface{ WrappedErrors() []error }); ok && len(u.WrappedErrors()) == 1 {
		err = u.WrappedErrors()[0]
	}
	if _, isKey := keyErrorReason(err.Error()); isKey {
		return fmt.Errorf("%w (%w)", err, ErrKeyMismatch)
	}
	return err
}

// joinErrors lists one error per address, on one line.
type joinErrors []error

func (e joinErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e joinErrors) Unwrap() []error { return e }

// Leave tells the cluster this member is leaving and waits until the
// message has been gossiped (or ctx's deadline, 5s without one). Others
// then see StatusLeft and EventLeave; locally the member is StatusLeaving
// meanwhile and StatusLeft after. The member keeps answering gossip until
// Shutdown. Leaving twice is a no-op.
//
// Two messages go out: first this package's leave intent, which makes
// others mark the member leaving, then memberlist's own leave, after which
// they see it gone and, since it was leaving, left. Half the time allowed
// goes to each. (memberlist tells a leave from a failure internally but
// does not pass that on to its event delegate.)
func (g *Gossip) Leave(ctx context.Context) error {
	g.leaveMu.Lock()
	defer g.leaveMu.Unlock()
	if g.isClosed() {
		return fmt.Errorf("gossip: leave: %w", ErrShutdown)
	}
	if self, _ := g.table.get(g.cfg.NodeName); self.Status == StatusLeft {
		return nil
	}
	start := g.now()
	g.table.setLocalStatus(StatusLeaving, start)
	g.log.Info("leaving the cluster")

	deadline := start.Add(leaveTimeout)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	err := g.sendLeaveIntent(ctx, start.Add(time.Until(deadline)/2))
	if err == nil {
		err = g.memberlistLeave(ctx, time.Until(deadline))
	}
	// memberlist has marked itself left, or will once the intent is out:
	// neither can be undone.
	g.table.setLocalStatus(StatusLeft, g.now())
	g.markDirty()
	if err != nil {
		g.log.Warn("leave message may not have reached the cluster", "err", err)
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("left the cluster")
	return nil
}

// sendLeaveIntent announces the leave: directly by UDP to every member
// believed alive, and by gossip, which reaches those the direct packets
// miss (a lost packet, a member we do not know yet). It waits until the
// gossip has been sent as often as memberlist sends its own broadcasts,
// or until the deadline (then the leave proceeds: members the intent
// missed see a failure, turned into a leave if the intent reaches them
// later).
func (g *Gossip) sendLeaveIntent(ctx context.Context, deadline time.Time) error {
	var peers []Member
	for _, m := range g.table.list() {
		if m.Name != g.cfg.NodeName && m.Status == StatusAlive {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	msg := encodeLeaveIntent(g.runID, g.cfg.NodeName)
	sent := make(chan struct{})
	g.bcast.QueueBroadcast(&intentBroadcast{node: g.cfg.NodeName, msg: msg, notify: sent})
	for _, m := range peers {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		to := &memberlist.Node{Name: m.Name, Addr: m.Addr, Port: m.Port}
		if err := g.ml.SendBestEffort(to, msg); err != nil {
			g.log.Debug("cannot send leave intent", "to", m.Name, "err", err)
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	tick := time.NewTicker(leavePoll)
	defer tick.Stop()
	for {
		select {
		case <-sent:
			return nil
		case <-t.C:
			g.log.Debug("leave intent not fully gossiped before its deadline")
			return nil
		case <-tick.C:
			if !g.anyPeerAlive() {
				return nil // nobody left to tell
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// leavePoll is how often a leave that waits for its messages to be
// gossiped checks whether any peer is still alive to receive them.
const leavePoll = 50 * time.Millisecond

// anyPeerAlive reports whether a member other than this one is alive. When
// the whole cluster stops at once, the last members to leave have nobody
// to gossip their leave to, and would wait out the whole leave timeout (5
// s) for broadcasts that cannot go out.
func (g *Gossip) anyPeerAlive() bool {
	for _, m := range g.table.list() {
		if m.Name != g.cfg.NodeName && m.Status == StatusAlive {
			return true
		}
	}
	return false
}

// memberlistLeave runs memberlist's Leave, which blocks until its leave
// message has been gossiped or the timeout passes.
func (g *Gossip) memberlistLeave(ctx context.Context, timeout time.Duration) error {
	ch := make(chan error, 1)
	go func() {
		defer func() {
			if recover() != nil { // memberlist panics on Leave after Shutdown
				ch <- ErrShutdown
			}
		}()
		ch <- g.ml.Leave(max(timeout, time.Millisecond))
	}()
	tick := time.NewTicker(leavePoll)
	defer tick.Stop()
	for {
		select {
		case err := <-ch:
			return err
		case <-tick.C:
			// memberlist has marked itself left and queued its message;
			// with no peer alive it would wait for a broadcast that
			// cannot go out (its goroutine ends at the timeout).
			if !g.anyPeerAlive() {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shutdown stops gossiping at once, without a leave message: others will
// see this member fail. It stops Start's loops, saves the known peers,
// and closes subscribers' channels. Safe to call more than once.
func (g *Gossip) Shutdown() error {
	var err error
	g.shutOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		cancel := g.cancel
		g.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		if err = g.ml.Shutdown(); err != nil {
			err = fmt.Errorf("gossip: shutdown: %w", err)
		}
		g.wg.Wait()
		g.savePeers()
		g.subs.close()
		if g.cfg.Registerer != nil {
			g.met.unregister(g.cfg.Registerer)
		}
		g.log.Debug("gossip shut down")
	})
	return err
}

func (g *Gossip) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Members returns every member known, including failed and left ones until
// they are reaped, sorted by name. The result is a copy.
func (g *Gossip) Members() []Member { return g.table.list() }

// Member returns one member by name.
func (g *Gossip) Member(name string) (Member, bool) { return g.table.get(name) }

// LocalMember returns this agent's own member entry.
func (g *Gossip) LocalMember() Member {
	m, _ := g.table.get(g.cfg.NodeName)
	return m
}

// NumAlive counts members with StatusAlive, this one included unless it is
// leaving or left.
func (g *Gossip) NumAlive() int { return g.table.numAlive() }

// Subscribe returns a channel of membership events (join, leave, failed,
// update, reap) and a function that unsubscribes and closes it. buf is the
// channel's capacity. A slow subscriber never blocks gossip: events wait
// in a per-subscriber queue of up to 16384; beyond that new events are
// dropped, counted (outrigger_gossip_events_dropped_total) and a warning
// is logged, and the subscriber should resynchronise from Members.
// Shutdown closes every subscription's channel.
func (g *Gossip) Subscribe(buf int) (<-chan Event, func()) { return g.subs.subscribe(buf) }

// SetTags replaces this member's tags and gossips them. The new tags apply
// locally at once; the error reports oversized tags, a member that left or
// was shut down, or that the update was not confirmed sent within 5s (it
// is still gossiped).
func (g *Gossip) SetTags(tags map[string]string) error {
	meta, err := encodeMeta(g.runID, tags)
	if err != nil {
		return &ConfigError{Field: "Tags", Msg: err.Error(), Err: err}
	}
	if g.isClosed() {
		return fmt.Errorf("gossip: set tags: %w", ErrShutdown)
	}
	if st := g.LocalMember().Status; st == StatusLeaving || st == StatusLeft {
		return fmt.Errorf("gossip: set tags: %w", ErrLeft)
	}
	g.metaMu.Lock()
	g.meta = meta
	g.metaMu.Unlock()
	if err := g.ml.UpdateNode(updateTimeout); err != nil {
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	return nil
}

// HealthScore is memberlist's awareness score: 0 when this member meets
// its probe deadlines, higher (up to the profile's maximum, 8 for lan)
// when it is too slow and may be wrongly suspecting others.
func (g *Gossip) HealthScore() int { return g.ml.GetHealthScore() }

// Addr returns the address and port gossip is bound to (the port chosen
// when BindPort was 0).
func (g *Gossip) Addr() (net.IP, int) { return g.tr.bindIP, g.tr.bindPort }

// Stats are counters for diagnostics and benchmarks.
type Stats struct {
	SentPacketBytes uint64 // UDP payload bytes sent
	SentStreamBytes uint64 // TCP bytes sent (push/pull, fallback pings)
}

// Stats returns the counters so far.
func (g *Gossip) Stats() Stats {
	p, s := g.tr.sent()
	return Stats{SentPacketBytes: p, SentStreamBytes: s}
}
