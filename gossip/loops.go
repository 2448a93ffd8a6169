package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// maxPeersPerAttempt bounds how many remembered peers one retry-join
// attempt tries (in random order, until one answers): each unreachable one
// can cost memberlist's TCP timeout.
const maxPeersPerAttempt = 8

// persistEvery is the least time between two writes of peers.json.
const persistEvery = time.Second

// retryJoinLoop joins RetryJoin and the remembered peers, retrying with
// exponential back-off (with ±10% jitter so restarted agents spread out).
func (g *Gossip) retryJoinLoop(ctx context.Context) {
	persisted := g.loadPeers()
	if len(g.cfg.RetryJoin) == 0 && len(persisted) == 0 {
		g.retryDone <- nil
		return
	}
	interval := g.cfg.RetryInterval
	for attempt := 1; ; attempt++ {
		n, err := g.joinAttempt(ctx, persisted)
		if n > 0 {
			g.log.Info("joined the cluster", "attempt", attempt, "contacted", n)
			g.retryDone <- nil
			return
		}
		if ctx.Err() != nil {
			g.retryDone <- ctx.Err()
			return
		}
		if len(g.cfg.RetryJoin) == 0 && g.NumAlive() > 1 {
			// Only remembered peers to try, and someone has joined us.
			g.log.Info("joined by a peer; stop rejoining remembered peers")
			g.retryDone <- nil
			return
		}
		if g.cfg.RetryMax > 0 && attempt >= g.cfg.RetryMax {
			err = fmt.Errorf("gossip: retry join: %d attempts: %w: last error: %v", attempt, ErrRetryJoinExhausted, err)
			g.log.Error("giving up joining the cluster", "attempts", attempt, "err", err)
			g.retryDone <- err
			return
		}
		wait := time.Duration(float64(interval) * (0.9 + 0.2*rand.Float64()))
		g.log.Warn("join failed, will retry", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			g.retryDone <- ctx.Err()
			return
		case <-t.C:
		}
		interval = min(2*interval, g.cfg.RetryMaxInterval)
	}
}

// joinAttempt joins every RetryJoin address and, in random order, the
// remembered peers until one answers.
func (g *Gossip) joinAttempt(ctx context.Context, persisted []string) (int, error) {
	var errs []error
	n := 0
	if len(g.cfg.RetryJoin) > 0 {
		k, err := g.Join(ctx, g.cfg.RetryJoin)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Remembered peers already met through RetryJoin are skipped: when a
	// whole group of servers restarts, they join each other by RetryJoin,
	// and one of them answering here would end the attempt with none of
	// the clients contacted — clients that have marked the servers failed
	// and do not probe them again.
	persisted = g.notAlive(persisted)
	if len(persisted) > 0 {
		order := rand.Perm(len(persisted))
		var perrs joinErrors
		for _, i := range order[:min(len(order), maxPeersPerAttempt)] {
			if ctx.Err() != nil {
				break
			}
			if err := g.joinOne(ctx, persisted[i]); err != nil {
				perrs = append(perrs, err)
				continue
			}
			n++
			break
		}
		if n == 0 && len(perrs) > 0 {
			errs = append(errs, fmt.Errorf("gossip: rejoin remembered peers: %w", perrs))
		}
	}
	if len(errs) == 0 {
		return n, nil
	}
	return n, joinErrors(errs) // one line, for the log
}

// notAlive is addrs without the addresses of members known alive.
func (g *Gossip) notAlive(addrs []string) []string {
	alive := make(map[string]bool)
	for _, m := range g.table.list() {
		if m.Status == StatusAlive {
			alive[net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))] = true
		}
	}
	var out []string
	for _, a := range addrs {
		if !alive[a] {
			out = append(out, a)
		}
	}
	return out
}

// loadPeers reads peers.json, leaving out this member's own address.
func (g *Gossip) loadPeers() []string {
	if g.peers == nil {
		return nil
	}
	entries, err := g.peers.load()
	if err != nil {
		g.log.Warn("cannot read remembered peers; ignoring them", "err", err)
		return nil
	}
	self := g.LocalMember()
	selfAddr := net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	var out []string
	for _, e := range entries {
		if e.Name == g.cfg.NodeName || e.Addr == selfAddr {
			continue
		}
		if addr, err := normalizeAddr(e.Addr); err == nil {
			out = append(out, addr)
		}
	}
	if len(out) > 0 {
		g.log.Info("rejoining peers remembered from the last run", "peers", len(out))
	}
	return out
}

// reapLoop forgets members that failed or left long enough ago.
func (g *Gossip) reapLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, ev := range g.table.reap(g.now(), g.cfg.ReapFailed, g.cfg.ReapLeft) {
				g.emit(ev)
			}
		}
	}
}

// persistLoop saves the known peers after membership changes, at most
// once per persistEvery.
func (g *Gossip) persistLoop(ctx context.Context) {
	if g.peers == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.dirty:
		}
		g.savePeers()
		t := time.NewTimer(persistEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (g *Gossip) savePeers() {
	if g.peers == nil {
		return
	}
	if err := g.peers.save(g.table.peers(maxPersistedPeers)); err != nil {
		g.log.Warn("cannot save known peers", "err", err)
	}
}
