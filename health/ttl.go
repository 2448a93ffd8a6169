package health

import "fmt"

// Pass sets a TTL check passing with note as its output and restarts its
// TTL (PUT /v1/agent/check/pass/:id?note=).
func (cs *Checks) Pass(id, note string) error { return cs.Update(id, StatusPassing, note) }

// Warn sets a TTL check warning (PUT /v1/agent/check/warn/:id).
func (cs *Checks) Warn(id, note string) error { return cs.Update(id, StatusWarning, note) }

// Fail sets a TTL check critical (PUT /v1/agent/check/fail/:id).
func (cs *Checks) Fail(id, note string) error { return cs.Update(id, StatusCritical, note) }

// Update sets a TTL check's status and output and restarts its TTL: if no
// update follows within the TTL, the check turns critical with output
// "TTL expired" (followed by the last output, if any). Thresholds do not
// apply to TTL updates. Output beyond the cap is cut.
//
// Errors: ErrInvalidStatus for a status other than passing, warning or
// critical; ErrUnknownCheck; ErrNotTTL for a check of another type.
func (cs *Checks) Update(id, status, output string) error {
	switch status {
	case StatusPassing, StatusWarning, StatusCritical:
	default:
		return fmt.Errorf("health: check %q: status %q: %w (want passing, warning or critical)", id, status, ErrInvalidStatus)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.checks[id]
	if ch == nil {
		return fmt.Errorf("health: check %q: %w", id, ErrUnknownCheck)
	}
	if ch.state.Type != TypeTTL {
		return fmt.Errorf("health: check %q: %w (type %s)", id, ErrNotTTL, ch.state.Type)
	}
	output = capHead(output, ch.limit, len(output))
	ch.lastOutput = output
	cs.setLocked(ch, status, output)
	cs.armTTLLocked(ch)
	return nil
}

// armTTLLocked (re)starts a TTL check's deadline.
func (cs *Checks) armTTLLocked(ch *check) {
	if ch.ttlTimer != nil {
		ch.ttlTimer.Stop()
	}
	ch.ttlGen++
	gen := ch.ttlGen
	ch.ttlTimer = cs.clock.AfterFunc(ch.state.Definition.TTL, func() { cs.expireTTL(ch, gen) })
}

// expireTTL turns a TTL check critical unless it was updated (gen moved
// on) or removed since the timer was set.
func (cs *Checks) expireTTL(ch *check, gen uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch.removed || gen != ch.ttlGen {
		return
	}
	out := "TTL expired"
	if ch.lastOutput != "" {
		out += " (last output before timeout follows): " + ch.lastOutput
	}
	cs.metrics.ttlExpired.Inc()
	cs.setLocked(ch, StatusCritical, capHead(out, ch.limit, -1))
}
