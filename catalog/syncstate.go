package catalog

import (
	"cmp"
	"encoding/json"
	"reflect"
	"slices"
	"time"
)

// This file is LocalState's side of anti-entropy: which entries the
// servers lack (pendingOps), recording what a push achieved
// (markSynced), and comparing with what the servers hold (reconcile).

type opKind int

const (
	opDeregisterService opKind = iota
	opDeregisterCheck
	opRegisterService
	opRegisterCheck
)

func (k opKind) String() string {
	switch k {
	case opDeregisterService, opDeregisterCheck:
		return "deregister"
	}
	return "register"
}

// syncOp is one catalog write that brings the servers closer to the
// local state, with the generations of the entries it carries.
type syncOp struct {
	kind      opKind
	id        string // service or check ID
	gen       uint64
	service   *Service      // opRegisterService
	checks    []HealthCheck // opRegisterService (the service's unsynced checks ride along) and opRegisterCheck
	checkGens []uint64
}

// pendingOps lists the writes the servers need, in the order Consul
// makes them: deregistrations first, then services (each with its
// unsynced checks, registered atomically with it), then the other
// checks. A check whose only change is its output is left out until
// outputDelay has passed since that change (when outputDelay > 0);
// nextDeferred is the earliest such moment, or zero.
func (l *LocalState) pendingOps(now time.Time, outputDelay time.Duration) (ops []syncOp, nextDeferred time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var deregS, deregC, regS, regC []syncOp
	riding := map[string]bool{} // check keys carried by a service registration
	for key, e := range l.services {
		switch {
		case e.inSync:
		case e.deleted:
			deregS = append(deregS, syncOp{kind: opDeregisterService, id: e.svc.ID, gen: e.gen})
		default:
			svc := e.svc.Clone()
			op := syncOp{kind: opRegisterService, id: svc.ID, gen: e.gen, service: &svc}
			for ck, c := range l.checks {
				if !c.inSync && !c.deleted && fold(c.check.ServiceID) == key {
					op.checks = append(op.checks, c.check.Clone())
					op.checkGens = append(op.checkGens, c.gen)
					riding[ck] = true
				}
			}
			regS = append(regS, op)
		}
	}
	for key, c := range l.checks {
		switch {
		case c.inSync || riding[key]:
		case c.deleted:
			deregC = append(deregC, syncOp{kind: opDeregisterCheck, id: c.check.CheckID, gen: c.gen})
		case c.outputOnly && outputDelay > 0 && now.Before(c.dirtySince.Add(outputDelay)):
			due := c.dirtySince.Add(outputDelay)
			if nextDeferred.IsZero() || due.Before(nextDeferred) {
				nextDeferred = due
			}
		default:
			regC = append(regC, syncOp{kind: opRegisterCheck, id: c.check.CheckID, gen: c.gen,
				checks: []HealthCheck{c.check.Clone()}, checkGens: []uint64{c.gen}})
		}
	}
	for _, s := range [][]syncOp{deregS, deregC, regS, regC} {
		slices.SortFunc(s, func(a, b syncOp) int { return cmp.Compare(fold(a.id), fold(b.id)) })
		ops = append(ops, s...)
	}
	return ops, nextDeferred
}

// markSynced records that op succeeded: its entries are in sync unless
// they changed while it was on its way.
func (l *LocalState) markSynced(op syncOp) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch op.kind {
	case opDeregisterService:
		if e := l.services[fold(op.id)]; e != nil && e.deleted && e.gen == op.gen {
			delete(l.services, fold(op.id))
		}
	case opDeregisterCheck:
		if c := l.checks[fold(op.id)]; c != nil && c.deleted && c.gen == op.gen {
			delete(l.checks, fold(op.id))
		}
	case opRegisterService:
		if e := l.services[fold(op.id)]; e != nil && !e.deleted && e.gen == op.gen {
			e.inSync = true
		}
	}
	for i, c := range op.checks {
		if e := l.checks[fold(c.CheckID)]; e != nil && !e.deleted && e.gen == op.checkGens[i] {
			e.inSync, e.outputOnly, e.dirtySince = true, false, time.Time{}
		}
	}
}

// reconcile compares the local state with what the servers hold for this
// node and marks every difference for the next push: local entries the
// servers lack or hold differently, and entries the servers hold that
// the agent does not own (except serfHealth and the servers' own
// service), which become tombstones to deregister. Tombstones the
// servers no longer hold are dropped. A service with EnableTagOverride
// adopts the servers' tags.
func (l *LocalState) reconcile(remote *NodeServices, now time.Time) {
	rs := map[string]Service{}
	rc := map[string]HealthCheck{}
	if remote != nil {
		for _, s := range remote.Services {
			rs[fold(s.ID)] = s
		}
		for _, c := range remote.Checks {
			rc[fold(c.CheckID)] = c
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	for key, e := range l.services {
		r, ok := rs[key]
		switch {
		case e.deleted && !ok:
			delete(l.services, key)
		case e.deleted || !ok:
			e.inSync = false
		default:
			if e.svc.EnableTagOverride && !slices.Equal(e.svc.Tags, r.Tags) {
				e.svc.Tags = slices.Clone(r.Tags)
				for _, c := range l.checks {
					if fold(c.check.ServiceID) == key {
						c.check.ServiceTags = slices.Clone(r.Tags)
					}
				}
				changed = true
			}
			e.inSync = sameService(e.svc, r, false)
		}
	}
	for key, r := range rs {
		if _, ok := l.services[key]; ok || key == ServerServiceID {
			continue
		}
		l.services[key] = &localService{svc: Service{ID: r.ID}, deleted: true, gen: l.nextGen()}
	}
	for key, c := range l.checks {
		r, ok := rc[key]
		switch {
		case c.deleted && !ok:
			delete(l.checks, key)
		case c.deleted || !ok:
			c.inSync, c.outputOnly = false, false
		case sameCheck(c.check, r, true, true):
			c.inSync, c.outputOnly, c.dirtySince = true, false, time.Time{}
		case sameCheck(c.check, r, false, true):
			if !c.outputOnly {
				c.outputOnly, c.dirtySince = true, now
			}
			c.inSync = false
		default:
			c.inSync, c.outputOnly = false, false
		}
	}
	for key, r := range rc {
		if _, ok := l.checks[key]; ok || key == fold(SerfCheckID) || fold(r.ServiceID) == ServerServiceID {
			continue
		}
		l.checks[key] = &localCheck{check: HealthCheck{CheckID: r.CheckID}, deleted: true, gen: l.nextGen()}
	}
	if changed {
		l.changedLocked()
	}
}

// pendingCount is how many entries (tombstones included) the servers do
// not have as they are here.
func (l *LocalState) pendingCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.services {
		if !e.inSync {
			n++
		}
	}
	for _, c := range l.checks {
		if !c.inSync {
			n++
		}
	}
	return n
}

// jsonEquivalent compares two opaque JSON values by meaning: key order,
// spacing and zero-valued members do not matter, and null, {} and
// nothing are alike. Servers may hand back what they store re-encoded,
// or padded with empty fields (Consul's Proxy is).
func jsonEquivalent(a, b json.RawMessage) bool {
	if string(a) == string(b) {
		return true
	}
	var x, y any
	if len(a) > 0 && json.Unmarshal(a, &x) != nil {
		return false
	}
	if len(b) > 0 && json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(pruneZero(x), pruneZero(y))
}

// pruneZero drops zero-valued members of objects, recursively, and turns
// an object left empty into nil.
func pruneZero(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if p := pruneZero(e); !isZeroJSON(p) {
				out[k] = p
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = pruneZero(e)
		}
		return out
	}
	return v
}

func isZeroJSON(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
