package kvstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Store is one server's replica of the K/V store: a Raft node running the
// FSM, and the leader's duties around it. Writes go through Apply on the
// leader; reads go to State(), after VerifyLeader unless stale reads are
// acceptable.
type Store struct {
	cfg    Config
	logger *slog.Logger
	state  *StateStore
	fsm    *FSM
	raft   *raft.Raft
	trans  raft.Transport
	bolt   *raftboltdb.BoltStore // nil when InMemory
	stable *closingStable        // guards bolt as raft's stable store; nil when InMemory
	m      *storeMetrics

	started  time.Time
	notifyCh chan bool

	// shutMu guards shutdown against starting new background tasks.
	shutMu     sync.Mutex
	shut       bool
	shutdownCh chan struct{}
	wg         sync.WaitGroup

	// Leadership, guarded by leaderMu. ready is closed once the barrier of
	// the current term is applied; leaderStop is closed when leadership
	// ends; changed is closed (and replaced) on every transition.
	leaderMu   sync.Mutex
	epoch      uint64
	ready      chan struct{}
	leaderStop chan struct{}
	changed    chan struct{}

	verifier verifier
	timers   sessionTimers

	// The leader last known (never "") and a context that ends when
	// another is known, guarded by ldMu; see LeaderContext.
	ldMu     sync.Mutex
	ldAddr   string
	ldCtx    context.Context
	ldCancel context.CancelFunc
}

// NotLeaderError is returned (wrapped) by leader-only methods on a
// follower. errors.Is(err, ErrNotLeader) holds; errors.As gives the
// leader to forward to. LeaderAddr is the Raft address; both are empty when
// no leader is known.
type NotLeaderError struct {
	LeaderAddr string
	LeaderID   string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "not leader (no known leader)"
	}
	return fmt.Sprintf("not leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

var _ error = (*NotLeaderError)(nil)

// New opens (or creates) the store described by cfg and starts its Raft
// node. A new server has no configuration: call Bootstrap on one server of
// a new cluster, or AddVoter on the leader for the others.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	s := &Store{
		cfg:        cfg,
		logger:     cfg.Logger,
		state:      NewStateStore(),
		started:    time.Now(),
		notifyCh:   make(chan bool, 16),
		shutdownCh: make(chan struct{}),
		changed:    make(chan struct{}),
	}
	s.fsm = NewFSM(s.state, s.logger)
	s.m = newStoreMetrics(s)
	s.fsm.observeBatch = func(n int) { s.m.batchSize.Observe(float64(n)) }
	s.verifier.run = s.verifyRound
	s.timers.expire = s.expireSession

	hlog := newHCLogAdapter(cfg.Logger, "raft")
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	cleanup := func() {
		if s.bolt != nil {
			s.bolt.Close()
		}
	}
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("kvstore: open: %w", err)
		}
		b, err := raftboltdb.New(raftboltdb.Options{
			Path:        filepath.Join(dir, "raft.db"),
			BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true},
			NoSync:      false,
		})
		if err != nil {
			return nil, fmt.Errorf("kvstore: open %s: %w", filepath.Join(dir, "raft.db"), err)
		}
		s.bolt = b
		cache, err := raft.NewLogCache(1024, b)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("kvstore: open: %w", err)
		}
		s.stable = &closingStable{s: b}
		logs, stable = cache, s.stable
		fs, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.RetainSnapshots, hlog)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("kvstore: open snapshots: %w", err)
		}
		snaps = fs
	}

	switch {
	case cfg.Transport != nil:
		s.trans = cfg.Transport
	case cfg.InMemory && cfg.BindAddr == "":
		_, s.trans = raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
	default:
		var adv net.Addr
		if cfg.Advertise != "" {
			a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
			if err != nil {
				cleanup()
				return nil, fmt.Errorf("kvstore: resolve Advertise %q: %w", cfg.Advertise, err)
			}
			adv = a
		}
		t, err := raft.NewTCPTransportWithLogger(cfg.BindAddr, adv, 3, 10*time.Second, hlog)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("kvstore: listen on %s: %w", cfg.BindAddr, err)
		}
		s.trans = t
	}

	rc := cfg.raftConfig()
	rc.NotifyCh = s.notifyCh
	r, err := raft.NewRaft(rc, s.fsm, logs, stable, snaps, s.trans)
	if err != nil {
		if c, ok := s.trans.(raft.WithClose); ok && cfg.Transport == nil {
			c.Close()
		}
		cleanup()
		return nil, fmt.Errorf("kvstore: start raft: %w", err)
	}
	s.raft = r
	if err := s.m.register(cfg.Registerer); err != nil {
		_ = s.Shutdown()
		return nil, err
	}
	s.ldCtx, s.ldCancel = context.WithCancel(context.Background())
	obs := make(chan raft.Observation, 64)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	s.wg.Add(2)
	go s.monitorLeadership()
	go s.followLeader(obs)
	return s, nil
}

// LeaderContext returns the Raft address of the leader last known ("" when
// none has been yet) and a context that ends as soon as another leader is
// known. A request forwarded to that leader is abandoned when it ends: its
// outcome is unknown, and waiting longer helps nobody. An election alone
// (no leader for a while) does not end it; the same leader re-elected
// neither.
func (s *Store) LeaderContext() (string, context.Context) {
	s.ldMu.Lock()
	defer s.ldMu.Unlock()
	return s.ldAddr, s.ldCtx
}

// followLeader keeps LeaderContext current from Raft's leader
// observations. The observer drops observations when obs is full, so a
// slow tick re-reads the leader as well.
func (s *Store) followLeader(obs chan raft.Observation) {
	defer s.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-obs:
		case <-tick.C:
		case <-s.shutdownCh:
			return
		}
		addr, _ := s.Leader()
		s.ldMu.Lock()
		if addr != "" && addr != s.ldAddr {
			s.ldCancel()
			s.ldAddr = addr
			s.ldCtx, s.ldCancel = context.WithCancel(context.Background())
		}
		s.ldMu.Unlock()
	}
}

// State returns the local state store, for stale reads and blocking
// queries.
func (s *Store) State() *StateStore { return s.state }

// ID returns this server's Raft ID.
func (s *Store) ID() string { return s.cfg.NodeID }

// Addr returns this server's Raft address (the listener's, with the port
// chosen when BindAddr had port 0).
func (s *Store) Addr() string { return string(s.trans.LocalAddr()) }

// Bootstrap makes this server the first of a new cluster with the given
// voters (itself alone when servers is empty). It is a no-op on a server
// that already has Raft state, so it is safe to call on every start.
func (s *Store) Bootstrap(servers []raft.Server) error {
	if len(servers) == 0 {
		servers = []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(s.cfg.NodeID), Address: s.trans.LocalAddr()}}
	}
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kvstore: bootstrap: %w", err)
	}
	return nil
}

// IsLeader reports whether this server is the Raft leader. A leader may
// not yet be ready to serve reads; VerifyLeader waits for that.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's Raft address and ID, or empty strings when
// no leader is known.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// WaitForLeader blocks until a leader is known (this server or another)
// or ctx ends, and returns it. Callers that forward or retry writes use it
// to ride out an election, as Consul's RPC hold timeout does.
func (s *Store) WaitForLeader(ctx context.Context) (addr, id string, err error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if addr, id := s.Leader(); addr != "" {
			return addr, id, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return "", "", fmt.Errorf("kvstore: wait for leader: %w: %v", ErrTimeout, ctx.Err())
		case <-s.shutdownCh:
			return "", "", fmt.Errorf("kvstore: wait for leader: %w", ErrShutdown)
		}
	}
}

func (s *Store) notLeader() *NotLeaderError {
	addr, id := s.Leader()
	if id == s.cfg.NodeID {
		// Raft still names us while stepping down.
		addr, id = "", ""
	}
	return &NotLeaderError{LeaderAddr: addr, LeaderID: id}
}

// LastContact returns how long ago this server heard from the leader: 0 on
// the leader, and the time since start when it never has.
func (s *Store) LastContact() time.Duration {
	if s.IsLeader() {
		return 0
	}
	lc := s.raft.LastContact()
	if lc.IsZero() {
		return time.Since(s.started)
	}
	return time.Since(lc)
}

// LastIndex returns the last Raft log index stored on this server.
func (s *Store) LastIndex() uint64 { return s.raft.LastIndex() }

// Stats returns raft's statistics (state, term, last_log_index,
// commit_index, applied_index, last_contact, num_peers, ...).
func (s *Store) Stats() map[string]string { return s.raft.Stats() }

// Configuration returns the servers of the current Raft configuration.
func (s *Store) Configuration() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("kvstore: configuration: %w", s.mapRaftErr(err))
	}
	return f.Configuration().Servers, nil
}

// AddVoter adds a server to the cluster, or updates its address. Leader
// only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if !s.IsLeader() {
		return fmt.Errorf("kvstore: add voter: %w", s.notLeader())
	}
	err := s.wait(s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.timeout(ctx)))
	if err != nil {
		return fmt.Errorf("kvstore: add voter %s: %w", id, s.mapRaftErr(err))
	}
	return nil
}

// RemoveServer removes a server from the cluster. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if !s.IsLeader() {
		return fmt.Errorf("kvstore: remove server: %w", s.notLeader())
	}
	err := s.wait(s.raft.RemoveServer(raft.ServerID(id), 0, s.timeout(ctx)))
	if err != nil {
		return fmt.Errorf("kvstore: remove server %s: %w", id, s.mapRaftErr(err))
	}
	return nil
}

// Snapshot makes a Raft snapshot now (it is also made automatically by
// SnapshotThreshold). Nothing new to snapshot is not an error.
func (s *Store) Snapshot() error {
	err := s.wait(s.raft.Snapshot())
	if err == nil || errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return fmt.Errorf("kvstore: snapshot: %w", s.mapRaftErr(err))
}

// wait waits for f's answer, or until the store shuts down. Raft leaves
// some futures it accepted unanswered when it shuts down (a barrier queued
// in the batched apply channel, for one): a bare f.Error() on one of those
// never returns, and held Shutdown, which waits for the leader's tasks,
// for ever. The goroutine waiting on such a future stays until the
// process ends.
func (s *Store) wait(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-s.shutdownCh:
		return raft.ErrRaftShutdown
	}
}

// timeout turns ctx's deadline into a raft timeout, capped by ApplyTimeout.
func (s *Store) timeout(ctx context.Context) time.Duration {
	d := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// mapRaftErr turns raft's errors into this package's sentinels.
func (s *Store) mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

// Apply proposes cmd and waits until it is applied on this server, which
// must be the leader. It validates cmd first, stamps it with the leader's
// clock, and gives a new session a random UUID when it has none.
//
// Errors: validation errors (ErrInvalidCommand, ErrKeyTooLarge,
// ErrValueTooLarge, ErrTooManyOps, ErrInvalidSessionTTL); ErrNotLeader
// (a *NotLeaderError; the command was not applied, forward it);
// ErrLeadershipLost and ErrTimeout (the outcome is unknown); ErrShutdown;
// and the state machine's own (ErrInvalidSession, ErrSessionExists). A cas
// that does not match, a lock held by another session and a rolled-back
// transaction are not errors: see Result.OK and Result.Errors.
func (s *Store) Apply(ctx context.Context, cmd *Command) (*Result, error) {
	start := time.Now()
	res, err := s.apply(ctx, cmd)
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrNotLeader):
		outcome = "not_leader"
	case errors.Is(err, ErrTimeout):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	typ := cmd.Type.String()
	s.m.applies.WithLabelValues(typ, outcome).Inc()
	if err == nil {
		s.m.applyDuration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	}
	return res, err
}

func (s *Store) apply(ctx context.Context, cmd *Command) (*Result, error) {
	if err := cmd.Validate(); err != nil {
		return nil, fmt.Errorf("kvstore: apply: %w", err)
	}
	c := *cmd
	if c.Type == CmdSessionCreate {
		if ttl := c.Session.TTL; ttl != 0 && ttl < s.cfg.MinSessionTTL {
			return nil, fmt.Errorf("kvstore: apply: %w: TTL %s below %s", ErrInvalidSessionTTL, ttl, s.cfg.MinSessionTTL)
		}
		if c.Session.ID == "" {
			c.Session.ID = s.newSessionID()
		}
	}
	if !s.IsLeader() {
		return nil, fmt.Errorf("kvstore: apply: %w", s.notLeader())
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kvstore: apply: %w: %v", ErrTimeout, err)
	}
	c.Time = s.cfg.Now().UnixNano()
	res, err := s.applyEncoded(ctx, EncodeCommand(&c))
	if err != nil {
		return nil, fmt.Errorf("kvstore: apply %s: %w", c.Type, err)
	}
	switch c.Type {
	case CmdSessionCreate:
		if res.Session != nil && res.Session.TTL > 0 {
			s.timers.reset(res.Session.ID, res.Session.TTL)
		}
	case CmdSessionDestroy:
		s.timers.stop(c.Session.ID)
	}
	return res, nil
}

// applyEncoded proposes encoded command bytes and waits for the result.
func (s *Store) applyEncoded(ctx context.Context, data []byte) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	f := s.raft.Apply(data, s.timeout(ctx))
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v (the command may still be applied)", ErrTimeout, ctx.Err())
	case <-s.shutdownCh:
		return nil, ErrShutdown
	}
	if err != nil {
		return nil, s.mapRaftErr(err)
	}
	out, ok := f.Response().(applyOutcome)
	if !ok {
		return nil, fmt.Errorf("%w: no result from the state machine", ErrInvalidCommand)
	}
	if out.err != nil {
		return nil, out.err
	}
	return out.res, nil
}

// newSessionID returns a random UUID not used by an existing session.
func (s *Store) newSessionID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		if x, _ := s.state.Session(id); x == nil {
			return id
		}
	}
}

// RenewSession restarts the TTL timer of a session and returns it. Leader
// only; renewals are not replicated (as in Consul, a new leader restarts
// every timer at full length).
func (s *Store) RenewSession(ctx context.Context, id string) (*Session, error) {
	if _, err := s.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("kvstore: renew session: %w", err)
	}
	sess, _ := s.state.Session(id)
	if sess == nil {
		return nil, fmt.Errorf("kvstore: renew session %q: %w", id, ErrSessionNotFound)
	}
	if sess.TTL > 0 {
		s.timers.reset(id, sess.TTL)
	}
	return sess, nil
}

// Shutdown stops the Raft node, the leader's tasks and the transport, and
// closes the log store. It does not leave the cluster (see RemoveServer).
// Safe to call more than once.
func (s *Store) Shutdown() error {
	s.shutMu.Lock()
	if s.shut {
		s.shutMu.Unlock()
		return nil
	}
	s.shut = true
	close(s.shutdownCh)
	s.shutMu.Unlock()

	var errs []error
	if err := s.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("kvstore: shutdown raft: %w", err))
	}
	s.timers.stopAll()
	s.wg.Wait()
	if s.bolt != nil {
		if err := s.stable.close(s.bolt.Close); err != nil {
			errs = append(errs, fmt.Errorf("kvstore: close log store: %w", err))
		}
	}
	s.m.unregister(s.cfg.Registerer)
	return errors.Join(errs...)
}

// goTask runs f in a goroutine that Shutdown waits for, unless shutting
// down already.
func (s *Store) goTask(f func()) {
	s.shutMu.Lock()
	defer s.shutMu.Unlock()
	if s.shut {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}
