package kvstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// monitorLeadership follows raft's leadership notifications and starts and
// stops the leader's duties.
func (s *Store) monitorLeadership() {
	defer s.wg.Done()
	for {
		select {
		case leader := <-s.notifyCh:
			if leader {
				s.gainLeadership()
			} else {
				s.loseLeadership()
			}
		case <-s.shutdownCh:
			s.loseLeadership()
			return
		}
	}
}

func (s *Store) gainLeadership() {
	s.leaderMu.Lock()
	if s.leaderStop != nil {
		close(s.leaderStop)
	}
	s.epoch++
	epoch := s.epoch
	ready, stop := make(chan struct{}), make(chan struct{})
	s.ready, s.leaderStop = ready, stop
	close(s.changed)
	s.changed = make(chan struct{})
	s.leaderMu.Unlock()
	s.logger.Info("gained leadership", "epoch", epoch)
	s.goTask(func() { s.leaderLoop(epoch, ready, stop) })
}

func (s *Store) loseLeadership() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderStop == nil {
		return
	}
	close(s.leaderStop)
	s.leaderStop, s.ready = nil, nil
	close(s.changed)
	s.changed = make(chan struct{})
	s.logger.Info("lost leadership", "epoch", s.epoch)
}

// leaderLoop runs while this server leads: it first applies a barrier so
// the state store holds every entry committed by earlier leaders, then
// declares the leader ready for reads, starts session timers and reaps
// tombstones.
func (s *Store) leaderLoop(epoch uint64, ready, stop chan struct{}) {
	for attempt := 0; ; attempt++ {
		err := s.wait(s.raft.Barrier(s.cfg.ApplyTimeout))
		if err == nil {
			break
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		s.logger.Warn("leader barrier failed", "epoch", epoch, "error", err)
		select {
		case <-stop:
			return
		case <-s.shutdownCh:
			return
		case <-time.After(min(time.Duration(attempt+1)*50*time.Millisecond, time.Second)):
		}
		if !s.IsLeader() {
			return
		}
	}
	s.leaderMu.Lock()
	current := s.epoch == epoch && s.ready == ready
	if current {
		close(ready)
	}
	s.leaderMu.Unlock()
	if !current {
		return
	}
	s.logger.Info("leader ready", "epoch", epoch, "applied_index", s.state.Index())

	s.timers.startAll(epoch, s.state.sessionTTLs)
	defer s.timers.stopEpoch(epoch)

	tick := time.NewTicker(s.cfg.TombstoneTTL)
	defer tick.Stop()
	// Tombstones at or below mark are at least one TombstoneTTL old at the
	// next tick.
	mark := s.state.Index()
	for {
		select {
		case <-stop:
			return
		case <-s.shutdownCh:
			return
		case <-tick.C:
			if s.state.hasTombstonesUpTo(mark) {
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ApplyTimeout)
				_, err := s.Apply(ctx, &Command{Type: CmdReapTombstones, ReapIndex: mark})
				cancel()
				if err != nil {
					s.logger.Warn("reaping tombstones failed", "up_to", mark, "error", err)
					continue
				}
			}
			mark = s.state.Index()
		}
	}
}

// waitReady waits until this server is a leader whose post-election
// barrier is applied, and returns its leadership epoch.
func (s *Store) waitReady(ctx context.Context) (uint64, error) {
	for {
		s.leaderMu.Lock()
		ready, stop, changed, epoch := s.ready, s.leaderStop, s.changed, s.epoch
		s.leaderMu.Unlock()
		if ready == nil {
			if !s.IsLeader() {
				return 0, s.notLeader()
			}
			// Raft says leader but the notification is not handled yet.
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("%w: waiting for leadership: %v", ErrTimeout, ctx.Err())
			case <-s.shutdownCh:
				return 0, ErrShutdown
			}
		}
		select {
		case <-ready:
			return epoch, nil
		case <-stop:
			return 0, s.notLeader()
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: waiting for the leader's barrier: %v", ErrTimeout, ctx.Err())
		case <-s.shutdownCh:
			return 0, ErrShutdown
		}
	}
}

// VerifyLeader returns nil if this server is the leader, has applied every
// entry of earlier terms, and a quorum confirmed its leadership in a
// heartbeat round that began after the call. A read of State() after it
// returns nil is linearizable. Concurrent calls share rounds. On a
// follower it returns a *NotLeaderError.
func (s *Store) VerifyLeader(ctx context.Context) error {
	start := time.Now()
	s.m.verifyCalls.Inc()
	err := s.verifyLeader(ctx)
	s.m.verifyDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("kvstore: verify leader: %w", err)
	}
	return nil
}

func (s *Store) verifyLeader(ctx context.Context) error {
	epoch, err := s.waitReady(ctx)
	if err != nil {
		return err
	}
	if err := s.verifier.verify(ctx); err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrNotLeader):
			// A failed round means we are not (or no longer) leader.
			return s.notLeader()
		}
		return s.mapRaftErr(err)
	}
	s.leaderMu.Lock()
	same := s.epoch == epoch && s.ready != nil
	s.leaderMu.Unlock()
	if !same {
		return s.notLeader()
	}
	return nil
}

// verifyRound runs one leadership confirmation with a quorum.
func (s *Store) verifyRound() error {
	s.m.verifyRounds.Inc()
	return s.raft.VerifyLeader().Error()
}

// verifier coalesces leadership checks. A caller joins the pending round,
// the one that has not started yet, so the round it waits for always
// begins after it arrived; a round in flight is never joined. One
// goroutine runs rounds back to back while callers keep coming.
type verifier struct {
	run     func() error
	mu      sync.Mutex
	pending *verifyRoundState
	running bool
}

type verifyRoundState struct {
	done    chan struct{}
	err     error
	waiters int // callers sharing the round (tests)
}

func (v *verifier) verify(ctx context.Context) error {
	v.mu.Lock()
	if v.pending == nil {
		v.pending = &verifyRoundState{done: make(chan struct{})}
	}
	r := v.pending
	r.waiters++
	if !v.running {
		v.running = true
		go v.loop()
	}
	v.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *verifier) loop() {
	for {
		v.mu.Lock()
		r := v.pending
		v.pending = nil
		if r == nil {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		r.err = v.run()
		close(r.done)
	}
}

// sessionTTLMultiplier: a session expires after this many TTLs without
// renewal, as in Consul.
const sessionTTLMultiplier = 2

// sessionTimers are the leader's session TTL timers. They exist only while
// the server leads; a new leader starts every timer at full length.
type sessionTimers struct {
	expire func(id string)
	mu     sync.Mutex
	active bool
	// epoch is the leadership epoch that started the timers, so a late
	// stop from an earlier term does not stop the current one's.
	epoch  uint64
	timers map[string]*time.Timer
}

// startAll activates the timers for a leadership epoch and starts one per
// session with a TTL. ttls is read after activation, so a session created
// meanwhile is timed by either this or Apply's reset.
func (t *sessionTimers) startAll(epoch uint64, ttls func() map[string]time.Duration) {
	t.mu.Lock()
	t.active = true
	t.epoch = epoch
	t.mu.Unlock()
	for id, ttl := range ttls() {
		t.reset(id, ttl)
	}
}

// stopEpoch stops the timers if epoch started them.
func (t *sessionTimers) stopEpoch(epoch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epoch == epoch {
		t.stopAllLocked()
	}
}

func (t *sessionTimers) reset(id string, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active {
		return
	}
	if old := t.timers[id]; old != nil {
		old.Stop()
	}
	if t.timers == nil {
		t.timers = make(map[string]*time.Timer)
	}
	var timer *time.Timer
	timer = time.AfterFunc(ttl*sessionTTLMultiplier, func() {
		t.mu.Lock()
		mine := t.timers[id] == timer
		if mine {
			delete(t.timers, id)
		}
		t.mu.Unlock()
		if mine {
			t.expire(id)
		}
	})
	t.timers[id] = timer
}

func (t *sessionTimers) stop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.timers[id]; old != nil {
		old.Stop()
		delete(t.timers, id)
	}
}

func (t *sessionTimers) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopAllLocked()
}

func (t *sessionTimers) stopAllLocked() {
	t.active = false
	for id, timer := range t.timers {
		timer.Stop()
		delete(t.timers, id)
	}
}

// expireSession destroys a session whose TTL passed, retrying a few times
// while this server still leads.
func (s *Store) expireSession(id string) {
	s.goTask(func() {
		for attempt := 0; attempt < 6; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ApplyTimeout)
			res, err := s.Apply(ctx, &Command{Type: CmdSessionDestroy, Session: Session{ID: id}})
			cancel()
			if err == nil {
				if res.OK {
					s.m.expired.Inc()
					s.logger.Info("session expired", "session", id)
				}
				return
			}
			if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrShutdown) {
				return
			}
			s.logger.Warn("invalidating expired session failed", "session", id, "error", err)
			select {
			case <-s.shutdownCh:
				return
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			}
		}
	})
}
