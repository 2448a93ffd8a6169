package gossip

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// memberTable is this agent's member list, Serf style: members that failed
// or left stay listed, with their last status, until reaped (memberlist
// itself forgets them after GossipToTheDeadTime). Each change returns the
// Event it causes so the caller can publish it outside the lock.
//
// memberlist does not say whether a member that went away left or failed
// (the State in the Node it passes to NotifyLeave is never set), so, as in
// Serf, a leaving member first broadcasts a leave intent: members it
// reached mark it StatusLeaving, and when memberlist then reports it gone
// it is StatusLeft; a member still StatusAlive when it goes is
// StatusFailed. A late intent turns StatusFailed into StatusLeft.
type memberTable struct {
	self string

	mu      sync.Mutex
	members map[string]*entry
}

type entry struct {
	m     Member
	runID uint64 // from the member's metadata; see encodeMeta
}

func newMemberTable(self string) *memberTable {
	return &memberTable{self: self, members: map[string]*entry{}}
}

// alive records that m is alive. It returns EventJoin for a new member or
// one that had failed or left, EventUpdate if its tags, address or
// versions changed.
func (t *memberTable) alive(m Member, runID uint64, now time.Time) (Event, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.members[m.Name]
	if ok && (old.m.Status == StatusAlive || old.m.Status == StatusLeaving) {
		m.Status, m.Since = old.m.Status, old.m.Since
		if old.runID != runID { // restarted before anyone noticed: not leaving any more
			m.Status = StatusAlive
		}
		changed := !sameMember(old.m, m)
		old.m, old.runID = m, runID
		if !changed {
			return Event{}, false
		}
		return Event{Type: EventUpdate, Member: m.clone()}, true
	}
	m.Status, m.Since = StatusAlive, now
	t.members[m.Name] = &entry{m: m, runID: runID}
	return Event{Type: EventJoin, Member: m.clone()}, true
}

// gone records that memberlist reports a member dead or left: StatusLeft
// if it announced its leave (or left is true), else StatusFailed. The
// local member is not changed here: Leave and Shutdown own its status.
func (t *memberTable) gone(m Member, runID uint64, left bool, now time.Time) (Event, bool) {
	if m.Name == t.self {
		return Event{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.members[m.Name]
	st := StatusFailed
	if left || (ok && old.m.Status == StatusLeaving) {
		st = StatusLeft
	}
	if ok && (old.m.Status == StatusLeft || old.m.Status == st) {
		return Event{}, false
	}
	m.Status, m.Since = st, now
	if ok && m.Tags == nil { // keep what we knew
		m.Tags = old.m.Tags
	}
	t.members[m.Name] = &entry{m: m, runID: runID}
	return t.goneEvent(m), true
}

func (t *memberTable) goneEvent(m Member) Event {
	typ := EventFailed
	if m.Status == StatusLeft {
		typ = EventLeave
	}
	return Event{Type: typ, Member: m.clone()}
}

// leaveIntent applies a member's announcement that it is leaving, if it
// comes from the member's current run: alive becomes leaving (no event),
// failed becomes left (EventLeave). changed reports whether anything
// changed, i.e. whether the intent is news worth passing on.
func (t *memberTable) leaveIntent(name string, runID uint64, now time.Time) (ev Event, emit, changed bool) {
	if name == t.self {
		return Event{}, false, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[name]
	if !ok || e.runID != runID {
		return Event{}, false, false
	}
	switch e.m.Status {
	case StatusAlive:
		e.m.Status, e.m.Since = StatusLeaving, now
		return Event{}, false, true
	case StatusFailed:
		e.m.Status, e.m.Since = StatusLeft, now
		return t.goneEvent(e.m), true, true
	}
	return Event{}, false, false
}

// setLocalStatus sets the local member's status (leaving, left).
func (t *memberTable) setLocalStatus(st Status, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.members[t.self]; ok && e.m.Status != st {
		e.m.Status, e.m.Since = st, now
	}
}

// reap forgets members that failed longer than failedAfter ago or left
// longer than leftAfter ago, and returns an EventReap for each.
func (t *memberTable) reap(now time.Time, failedAfter, leftAfter time.Duration) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var evs []Event
	for name, e := range t.members {
		if name == t.self {
			continue
		}
		if (e.m.Status == StatusFailed && now.Sub(e.m.Since) >= failedAfter) ||
			(e.m.Status == StatusLeft && now.Sub(e.m.Since) >= leftAfter) {
			delete(t.members, name)
			evs = append(evs, Event{Type: EventReap, Member: e.m.clone()})
		}
	}
	slices.SortFunc(evs, func(a, b Event) int { return strings.Compare(a.Member.Name, b.Member.Name) })
	return evs
}

// get returns a copy of one member.
func (t *memberTable) get(name string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.members[name]
	if !ok {
		return Member{}, false
	}
	return e.m.clone(), true
}

// list returns copies of all members sorted by name.
func (t *memberTable) list() []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.members))
	for _, e := range t.members {
		out = append(out, e.m.clone())
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// counts returns the number of members in each status.
func (t *memberTable) counts() map[Status]int {
	c := map[Status]int{StatusAlive: 0, StatusLeaving: 0, StatusLeft: 0, StatusFailed: 0}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.members {
		c[e.m.Status]++
	}
	return c
}

// numAlive counts members with StatusAlive, this one included.
func (t *memberTable) numAlive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.members {
		if e.m.Status == StatusAlive {
			n++
		}
	}
	return n
}

// reconnectCandidates returns the other members that have been failed for
// less than maxAge (older ones are about to be reaped), except those whose
// address is now held by a member alive or leaving (this one, or another
// that took the address over: joining it would reach nobody new), and how
// many members are alive or leaving, this one included.
func (t *memberTable) reconnectCandidates(now time.Time, maxAge time.Duration) (failed []Member, alive int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := make(map[string]bool)
	for _, e := range t.members {
		if e.m.Status == StatusAlive || e.m.Status == StatusLeaving {
			alive++
			held[e.m.address()] = true
		}
	}
	for name, e := range t.members {
		if e.m.Status == StatusFailed && name != t.self && now.Sub(e.m.Since) < maxAge && !held[e.m.address()] {
			failed = append(failed, e.m.clone())
		}
	}
	// Sorted, so that tests can choose a member by index.
	slices.SortFunc(failed, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return failed, alive
}

// peers returns the addresses worth rejoining after a restart: other
// members that are alive or failed (a failed member is often restarting),
// alive ones first, then most recently changed, at most limit.
func (t *memberTable) peers(limit int) []peerEntry {
	t.mu.Lock()
	ms := make([]Member, 0, len(t.members))
	for _, e := range t.members {
		if e.m.Name != t.self && (e.m.Status == StatusAlive || e.m.Status == StatusFailed) {
			ms = append(ms, e.m)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(ms, func(a, b Member) int {
		if a.Status != b.Status {
			return int(a.Status) - int(b.Status) // alive (1) before failed (4)
		}
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(ms) > limit {
		ms = ms[:limit]
	}
	out := make([]peerEntry, len(ms))
	for i, m := range ms {
		out[i] = peerEntry{Name: m.Name, Addr: m.address()}
	}
	return out
}

// sameMember reports whether a and b have the same status, address, tags
// and protocol versions.
func sameMember(a, b Member) bool {
	return a.Status == b.Status && a.Addr.Equal(b.Addr) && a.Port == b.Port && maps.Equal(a.Tags, b.Tags) &&
		a.ProtocolCur == b.ProtocolCur && a.DelegateCur == b.DelegateCur
}
