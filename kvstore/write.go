package kvstore

import (
	"fmt"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// treeTxn is a radix tree being modified; the iradix transaction is made on
// the first write so read-only use costs nothing.
type treeTxn struct {
	base *iradix.Tree
	txn  *iradix.Txn
}

func (t *treeTxn) w() *iradix.Txn {
	if t.txn == nil {
		t.txn = t.base.Txn()
	}
	return t.txn
}

func (t *treeTxn) get(k []byte) (interface{}, bool) {
	if t.txn != nil {
		return t.txn.Get(k)
	}
	return t.base.Get(k)
}

func (t *treeTxn) root() *iradix.Node {
	if t.txn != nil {
		return t.txn.Root()
	}
	return t.base.Root()
}

// clone returns an independent copy: writes to either no longer affect
// the other (iradix copies nodes again on the clone's first writes).
func (t *treeTxn) clone() treeTxn {
	if t.txn == nil {
		return treeTxn{base: t.base}
	}
	return treeTxn{base: t.base, txn: t.txn.Clone()}
}

func (t *treeTxn) commit() *iradix.Tree {
	if t.txn == nil {
		return t.base
	}
	return t.txn.CommitOnly()
}

// writeTxn applies commands on top of a state root; nothing is visible
// until commitTo. One writeTxn serves a whole batch of logs, so nodes
// copied for one command are reused by the next. Every command except
// CmdTxn decides whether it succeeds before it writes anything; a CmdTxn
// runs on a clone that is dropped if it fails, which is how transactions
// are all or nothing.
type writeTxn struct {
	idx uint64 // Raft index of the current command
	now int64  // its time, Unix nanoseconds

	kv, tombs, sessions, locks, delays, nodeSess treeTxn
	// The catalog's tables (see stateRoot).
	nodes, nodeIDs, services, svcNames, checks, svcIdx, nodeIdx treeTxn

	floor           uint64
	sessionsIndex   uint64
	sessionsChanged bool
	cat             catalogIndexes
	// touched lists the keys written, for watch notification.
	touched []string
	// tables lists the catalog watch names written (duplicates allowed).
	tables []string
}

func newWriteTxn(r *stateRoot, idx uint64, now int64) *writeTxn {
	return &writeTxn{
		idx:      idx,
		now:      now,
		kv:       treeTxn{base: r.kv},
		tombs:    treeTxn{base: r.tombs},
		sessions: treeTxn{base: r.sessions},
		locks:    treeTxn{base: r.locks},
		delays:   treeTxn{base: r.delays},
		nodeSess: treeTxn{base: r.nodeSess},
		nodes:    treeTxn{base: r.nodes},
		nodeIDs:  treeTxn{base: r.nodeIDs},
		services: treeTxn{base: r.services},
		svcNames: treeTxn{base: r.svcNames},
		checks:   treeTxn{base: r.checks},
		svcIdx:   treeTxn{base: r.svcIdx},
		nodeIdx:  treeTxn{base: r.nodeIdx},
		floor:    r.floor,
		cat:      r.cat,

		sessionsIndex: r.sessionsIndex,
	}
}

// clone returns an independent copy of t for a command that may fail
// after writing.
func (t *writeTxn) clone() *writeTxn {
	c := *t
	c.kv, c.tombs, c.sessions = t.kv.clone(), t.tombs.clone(), t.sessions.clone()
	c.locks, c.delays, c.nodeSess = t.locks.clone(), t.delays.clone(), t.nodeSess.clone()
	c.nodes, c.nodeIDs, c.services, c.svcNames = t.nodes.clone(), t.nodeIDs.clone(), t.services.clone(), t.svcNames.clone()
	c.checks, c.svcIdx, c.nodeIdx = t.checks.clone(), t.svcIdx.clone(), t.nodeIdx.clone()
	c.touched = append([]string(nil), t.touched...)
	c.tables = append([]string(nil), t.tables...)
	return &c
}

// changedSessions marks the session table changed at the current index.
func (t *writeTxn) changedSessions() {
	t.sessionsChanged = true
	t.sessionsIndex = t.idx
}

// commitTo stores the modified trees into r, a private working root.
func (t *writeTxn) commitTo(r *stateRoot) {
	r.kv = t.kv.commit()
	r.tombs = t.tombs.commit()
	r.sessions = t.sessions.commit()
	r.locks = t.locks.commit()
	r.delays = t.delays.commit()
	r.nodeSess = t.nodeSess.commit()
	r.nodes = t.nodes.commit()
	r.nodeIDs = t.nodeIDs.commit()
	r.services = t.services.commit()
	r.svcNames = t.svcNames.commit()
	r.checks = t.checks.commit()
	r.svcIdx = t.svcIdx.commit()
	r.nodeIdx = t.nodeIdx.commit()
	r.floor = t.floor
	r.sessionsIndex = t.sessionsIndex
	r.cat = t.cat
}

// apply runs c. keep is false when the command failed; for every type but
// CmdTxn and the catalog commands it then wrote nothing (those run on a
// clone that is dropped on failure: see runsOnClone).
func (t *writeTxn) apply(c *Command) (res *Result, keep bool, err error) {
	res = &Result{Index: t.idx}
	switch c.Type {
	case CmdKV:
		if !c.KV.Verb.IsWrite() {
			return res, false, fmt.Errorf("%w: verb %q is not a write", ErrInvalidCommand, c.KV.Verb)
		}
		ok, _, err := t.op(&c.KV)
		if err != nil {
			return res, false, err
		}
		res.OK = ok
		return res, ok, nil
	case CmdTxn:
		r := t.txn(c.Ops)
		r.Index = t.idx
		return r, r.OK, nil
	case CmdSessionCreate:
		s, err := t.createSession(&c.Session)
		if err != nil {
			return res, false, err
		}
		res.OK = true
		res.Session = s
		return res, true, nil
	case CmdSessionDestroy:
		res.OK = t.destroySession(c.Session.ID)
		return res, res.OK, nil
	case CmdReapTombstones:
		res.OK = t.reapTombstones(c.ReapIndex)
		return res, res.OK, nil
	case CmdCatalogRegister, CmdCatalogDeregister, CmdCatalogSync:
		if err := t.catalog(c); err != nil {
			return res, false, err
		}
		res.OK = true
		return res, true, nil
	}
	return res, false, fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, c.Type)
}

func (t *writeTxn) getEntry(key string) *Entry {
	v, ok := t.kv.get([]byte(key))
	if !ok {
		return nil
	}
	return v.(*Entry)
}

func (t *writeTxn) putEntry(e *Entry) {
	k := []byte(e.Key)
	t.kv.w().Insert(k, e)
	if _, ok := t.tombs.get(k); ok {
		t.tombs.w().Delete(k)
	}
	t.touched = append(t.touched, e.Key)
}

func (t *writeTxn) deleteEntry(key string) bool {
	k := []byte(key)
	v, ok := t.kv.get(k)
	if !ok {
		return false
	}
	if e := v.(*Entry); e.Session != "" {
		t.locks.w().Delete(lockKey(e.Session, key))
	}
	t.kv.w().Delete(k)
	t.tombs.w().Insert(k, t.idx)
	t.touched = append(t.touched, key)
	return true
}

// op applies one K/V verb. ok is Consul's true/false for writes; why says
// why a write did not happen, in Consul's words, for transactions.
func (t *writeTxn) op(o *KVOp) (ok bool, why string, err error) {
	switch o.Verb {
	case VerbSet:
		t.set(o, t.getEntry(o.Key))
		return true, "", nil

	case VerbCAS:
		existing := t.getEntry(o.Key)
		if o.Index == 0 && existing != nil {
			return false, fmt.Sprintf("failed to set key %q, index is stale", o.Key), nil
		}
		if o.Index != 0 && (existing == nil || existing.ModifyIndex != o.Index) {
			return false, fmt.Sprintf("failed to set key %q, index is stale", o.Key), nil
		}
		t.set(o, existing)
		return true, "", nil

	case VerbLock:
		return t.lock(o)

	case VerbUnlock:
		existing := t.getEntry(o.Key)
		if existing == nil || existing.Session != o.Session {
			return false, fmt.Sprintf("failed to unlock key %q, lock isn't held, or is held by another session", o.Key), nil
		}
		t.locks.w().Delete(lockKey(o.Session, o.Key))
		t.putEntry(&Entry{
			Key:         o.Key,
			Value:       o.Value,
			Flags:       o.Flags,
			CreateIndex: existing.CreateIndex,
			ModifyIndex: t.idx,
			LockIndex:   existing.LockIndex,
		})
		return true, "", nil

	case VerbDelete:
		t.deleteEntry(o.Key)
		return true, "", nil

	case VerbDeleteTree:
		t.deleteTree(o.Key)
		return true, "", nil

	case VerbDeleteCAS:
		existing := t.getEntry(o.Key)
		if existing == nil {
			// Consul: deleting an absent key at any index succeeds.
			return true, "", nil
		}
		if existing.ModifyIndex != o.Index {
			return false, fmt.Sprintf("failed to delete key %q, index is stale", o.Key), nil
		}
		t.deleteEntry(o.Key)
		return true, "", nil
	}
	return false, "", fmt.Errorf("%w: verb %q", ErrInvalidCommand, o.Verb)
}

// set writes o over existing, keeping the lock (Session, LockIndex): a plain
// write to a locked key succeeds and leaves it locked, as in Consul.
func (t *writeTxn) set(o *KVOp, existing *Entry) {
	e := &Entry{Key: o.Key, Value: o.Value, Flags: o.Flags, CreateIndex: t.idx, ModifyIndex: t.idx}
	if existing != nil {
		e.CreateIndex = existing.CreateIndex
		e.LockIndex = existing.LockIndex
		e.Session = existing.Session
	}
	t.putEntry(e)
}

func (t *writeTxn) lock(o *KVOp) (bool, string, error) {
	if _, ok := t.sessions.get([]byte(o.Session)); !ok {
		return false, "", fmt.Errorf("%w %q", ErrInvalidSession, o.Session)
	}
	if v, ok := t.delays.get([]byte(o.Key)); ok && t.now < v.(int64) {
		return false, fmt.Sprintf("failed to lock key %q, lock-delay in effect", o.Key), nil
	}
	existing := t.getEntry(o.Key)
	e := &Entry{Key: o.Key, Value: o.Value, Flags: o.Flags, CreateIndex: t.idx, ModifyIndex: t.idx, Session: o.Session}
	switch {
	case existing == nil:
		e.LockIndex = 1
	case existing.Session == o.Session:
		// The holder re-acquiring updates the value only.
		e.CreateIndex = existing.CreateIndex
		e.LockIndex = existing.LockIndex
	case existing.Session != "":
		return false, fmt.Sprintf("failed to lock key %q, lock is already held", o.Key), nil
	default:
		e.CreateIndex = existing.CreateIndex
		e.LockIndex = existing.LockIndex + 1
	}
	t.locks.w().Insert(lockKey(o.Session, o.Key), struct{}{})
	t.putEntry(e)
	return true, "", nil
}

func (t *writeTxn) deleteTree(prefix string) {
	var keys []string
	t.kv.root().WalkPrefix([]byte(prefix), func(k []byte, _ interface{}) bool {
		keys = append(keys, string(k))
		return false
	})
	for _, k := range keys {
		t.deleteEntry(k)
	}
}

func (t *writeTxn) list(prefix string) []*Entry {
	var out []*Entry
	t.kv.root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		e := *v.(*Entry)
		out = append(out, &e)
		return false
	})
	return out
}

// txn runs ops in order, each seeing the effects of those before it. As in
// Consul, every operation runs even after one fails, so all errors are
// reported; any error rolls the whole transaction back (the caller drops
// the writeTxn when res.OK is false).
func (t *writeTxn) txn(ops []KVOp) *Result {
	res := &Result{Index: t.idx}
	for i := range ops {
		o := &ops[i]
		out, what := t.txnOp(o)
		if what != "" {
			res.Errors = append(res.Errors, TxnError{OpIndex: i, What: what})
			continue
		}
		res.Results = append(res.Results, out...)
	}
	if len(res.Errors) > 0 {
		res.Results = nil
		return res
	}
	res.OK = true
	return res
}

// txnOp runs one operation of a transaction and returns its results, or
// what went wrong.
func (t *writeTxn) txnOp(o *KVOp) ([]*Entry, string) {
	// current returns the entry now stored under the key; Consul returns
	// values only for reads.
	current := func(withValue bool) []*Entry {
		e := t.getEntry(o.Key)
		if e == nil {
			return nil
		}
		c := *e
		if !withValue {
			c.Value = nil
		}
		return []*Entry{&c}
	}
	switch o.Verb {
	case VerbGet:
		if t.getEntry(o.Key) == nil {
			return nil, fmt.Sprintf("key %q doesn't exist", o.Key)
		}
		return current(true), ""
	case VerbGetTree:
		return t.list(o.Key), ""
	case VerbCheckIndex:
		e := t.getEntry(o.Key)
		if e == nil {
			return nil, fmt.Sprintf("key %q doesn't exist", o.Key)
		}
		if e.ModifyIndex != o.Index {
			return nil, fmt.Sprintf("current modify index %d != %d", e.ModifyIndex, o.Index)
		}
		return current(false), ""
	case VerbCheckSession:
		e := t.getEntry(o.Key)
		if e == nil {
			return nil, fmt.Sprintf("key %q doesn't exist", o.Key)
		}
		if e.Session != o.Session {
			return nil, fmt.Sprintf("key %q is not locked by session %q", o.Key, o.Session)
		}
		return current(false), ""
	case VerbCheckNotExists:
		if t.getEntry(o.Key) != nil {
			return nil, fmt.Sprintf("key %q exists", o.Key)
		}
		return nil, ""
	}

	ok, why, err := t.op(o)
	if err != nil {
		return nil, err.Error()
	}
	if !ok {
		return nil, why
	}
	switch o.Verb {
	case VerbDelete, VerbDeleteTree, VerbDeleteCAS:
		return nil, ""
	}
	return current(false), ""
}

func (t *writeTxn) createSession(in *Session) (*Session, error) {
	if in.ID == "" {
		return nil, fmt.Errorf("%w: missing session ID", ErrInvalidCommand)
	}
	if _, ok := t.sessions.get([]byte(in.ID)); ok {
		return nil, fmt.Errorf("%w: %q", ErrSessionExists, in.ID)
	}
	s := in.clone()
	if s.Behavior == "" {
		s.Behavior = BehaviorRelease
	}
	s.CreateIndex, s.ModifyIndex = t.idx, t.idx
	t.sessions.w().Insert([]byte(s.ID), s)
	t.nodeSess.w().Insert(nodeSessKey(s.Node, s.ID), struct{}{})
	t.changedSessions()
	return s.clone(), nil
}

// destroySession invalidates a session: its locks are released (or its
// keys deleted), lock-delay starts on each, and the session is removed. It
// reports whether the session existed.
func (t *writeTxn) destroySession(id string) bool {
	v, ok := t.sessions.get([]byte(id))
	if !ok {
		return false
	}
	s := v.(*Session)

	var held []string
	prefix := lockKey(id, "")
	t.locks.root().WalkPrefix(prefix, func(k []byte, _ interface{}) bool {
		held = append(held, string(k[len(prefix):]))
		return false
	})

	t.pruneDelays()
	until := t.now + int64(s.LockDelay)
	for _, key := range held {
		t.locks.w().Delete(lockKey(id, key))
		e := t.getEntry(key)
		if e == nil || e.Session != id {
			continue
		}
		if s.Behavior == BehaviorDelete {
			t.deleteEntry(key)
		} else {
			c := *e
			c.Session = ""
			c.ModifyIndex = t.idx
			t.putEntry(&c)
		}
		if s.LockDelay > 0 {
			t.delays.w().Insert([]byte(key), until)
		}
	}
	t.sessions.w().Delete([]byte(id))
	t.nodeSess.w().Delete(nodeSessKey(s.Node, id))
	t.changedSessions()
	return true
}

// pruneDelays drops lock-delays that have passed, keeping the tree as small
// as the set of delays in effect.
func (t *writeTxn) pruneDelays() {
	var expired [][]byte
	t.delays.root().Walk(func(k []byte, v interface{}) bool {
		if v.(int64) <= t.now {
			expired = append(expired, k)
		}
		return false
	})
	for _, k := range expired {
		t.delays.w().Delete(k)
	}
}

// reapTombstones removes tombstones at or below upTo — of K/V keys, and
// the index entries of services and nodes that are gone — and raises the
// floor to the highest index removed. It reports whether any was removed.
func (t *writeTxn) reapTombstones(upTo uint64) bool {
	var dead [][]byte
	t.tombs.root().Walk(func(k []byte, v interface{}) bool {
		if idx := v.(uint64); idx <= upTo {
			dead = append(dead, k)
			t.floor = max(t.floor, idx)
		}
		return false
	})
	for _, k := range dead {
		t.tombs.w().Delete(k)
	}
	n := len(dead)
	for _, c := range []struct {
		tr   *treeTxn
		live func([]byte) bool
	}{
		{&t.svcIdx, serviceLive(t.svcNames.root())},
		{&t.nodeIdx, nodeLive(t.nodes.root())},
	} {
		for _, ts := range catalogTombstones(c.tr.root(), upTo, c.live) {
			c.tr.w().Delete(ts.key)
			t.floor = max(t.floor, ts.idx)
			n++
		}
	}
	return n > 0
}

// applyCommands applies decoded commands at their Raft indexes as one
// state swap, then wakes the watchers of everything touched. cmds[i] may be
// nil for a log that is not a command (the index still advances); errs[i]
// is set when cmds[i] could not be decoded. It returns one result per
// command.
func (s *StateStore) applyCommands(indexes []uint64, cmds []*Command) []applyOutcome {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	working := *s.load()
	t := newWriteTxn(&working, working.index, 0)
	out := make([]applyOutcome, len(cmds))
	for i, c := range cmds {
		idx := indexes[i]
		if idx > working.index {
			working.index = idx
		}
		if c == nil {
			continue
		}
		t.idx, t.now = idx, c.Time
		if runsOnClone(c.Type) {
			child := t.clone()
			res, keep, err := child.apply(c)
			out[i] = applyOutcome{res: res, err: err}
			if keep {
				t = child
			}
			continue
		}
		res, _, err := t.apply(c)
		out[i] = applyOutcome{res: res, err: err}
	}
	t.commitTo(&working)
	s.root.Store(&working)
	tables := t.tables
	if t.sessionsChanged {
		tables = append(tables, tableSessions)
	}
	s.watch.notify(t.touched, tables)
	return out
}

// applyOutcome is what the FSM hands back to raft for one log.
type applyOutcome struct {
	res *Result
	err error
}

// apply applies one command at index idx (tests and the single-log path).
func (s *StateStore) apply(idx uint64, c *Command) (*Result, error) {
	o := s.applyCommands([]uint64{idx}, []*Command{c})[0]
	return o.res, o.err
}

// sessionTTLs returns every session with a TTL (for the leader's timers).
func (s *StateStore) sessionTTLs() map[string]time.Duration {
	out := make(map[string]time.Duration)
	s.load().sessions.Root().Walk(func(_ []byte, v interface{}) bool {
		if x := v.(*Session); x.TTL > 0 {
			out[x.ID] = x.TTL
		}
		return false
	})
	return out
}
