package gossip

import (
	"context"
	"math/rand/v2"
	"time"
)

// reconnectLoop is Serf's reconnect: memberlist never probes a member it
// declared dead again, so after a partition heals, or when a group of
// agents restarts together and only meets itself, the groups would stay
// apart. Every ReconnectInterval it may join again the last known address
// of one failed member (never one that left), until the member is reaped
// after ReapFailed (Serf's ReconnectTimeout).
func (g *Gossip) reconnectLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.reconnect(ctx)
	}
}

// reconnect makes at most one attempt: it picks a failed member as
// pickReconnect does and joins its address, waiting at most joinTimeout.
// It reports whether it made an attempt.
func (g *Gossip) reconnect(ctx context.Context) bool {
	// A member that is leaving must not pull others back in; one that left
	// has told memberlist so and cannot join anyone.
	if st := g.LocalMember().Status; st != StatusAlive {
		return false
	}
	failed, alive := g.table.reconnectCandidates(g.now(), g.cfg.ReapFailed)
	m, ok := pickReconnect(failed, alive, rand.Float64, rand.IntN)
	if !ok {
		return false
	}
	addr := m.address()
	g.met.reconnects.Inc()
	jctx, cancel := context.WithTimeout(ctx, g.joinTimeout)
	defer cancel()
	start := time.Now()
	if err := g.joinOne(jctx, addr); err != nil {
		if ctx.Err() == nil { // not shutting down
			g.log.Debug("cannot reconnect to failed member", "name", m.Name, "addr", addr, "err", err)
		}
		return true
	}
	g.met.reconnected.Inc()
	g.log.Info("reconnected to failed member", "name", m.Name, "addr", addr,
		"failed_for", g.now().Sub(m.Since).Round(time.Second), "took", time.Since(start).Round(time.Millisecond))
	return true
}

// pickReconnect chooses the failed member to reconnect to, if any. As in
// Serf, an attempt is made with probability failed/alive (alive counting
// this member and those leaving; at least 1), so that the alive members
// together try each failed member about once per interval, however large
// the cluster; the member is then chosen uniformly. float
// returns a number in [0,1) and intn one in [0,n): rand.Float64 and
// rand.IntN outside tests.
func pickReconnect(failed []Member, alive int, float func() float64, intn func(int) int) (Member, bool) {
	if len(failed) == 0 {
		return Member{}, false
	}
	if p := float64(len(failed)) / float64(max(alive, 1)); float() >= p {
		return Member{}, false
	}
	return failed[intn(len(failed))], true
}
