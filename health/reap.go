package health

import (
	"slices"
	"strings"
)

// reapLoop looks for services to deregister every ReapInterval.
func (cs *Checks) reapLoop() {
	for {
		t := cs.clock.NewTimer(cs.cfg.ReapInterval)
		select {
		case <-cs.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		cs.reap()
	}
}

// reap calls OnDeregister for each service with a check critical for
// longer than its DeregisterCriticalServiceAfter. It does not remove
// anything itself: the service belongs to the agent, which removes the
// service and its checks.
func (cs *Checks) reap() {
	type hit struct {
		service string
		cause   CheckState
	}
	var hits []hit
	now := cs.clock.Now()
	cs.mu.Lock()
	ids := make([]string, 0, len(cs.checks))
	for id := range cs.checks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	seen := map[string]bool{}
	for _, id := range ids {
		ch := cs.checks[id]
		after := ch.state.Definition.DeregisterCriticalServiceAfter
		if after <= 0 || ch.state.ServiceID == "" || ch.state.Status != StatusCritical || ch.reaped {
			continue
		}
		if now.Sub(ch.criticalSince) <= after {
			continue
		}
		ch.reaped = true
		if !seen[ch.state.ServiceID] {
			seen[ch.state.ServiceID] = true
			hits = append(hits, hit{ch.state.ServiceID, ch.snapshot()})
		}
	}
	cs.mu.Unlock()
	slices.SortFunc(hits, func(a, b hit) int { return strings.Compare(a.service, b.service) })
	for _, h := range hits {
		cs.log.Warn("check critical for too long, asking to deregister its service",
			"service", h.service, "check", h.cause.ID,
			"deregister_critical_service_after", h.cause.Definition.DeregisterCriticalServiceAfter)
		cs.metrics.reaped.Inc()
		cs.cfg.OnDeregister(h.service, h.cause)
	}
}
