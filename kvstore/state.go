package kvstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// StateStore is the in-memory state the FSM applies commands to: keys,
// tombstones, sessions, the lock index and lock-delays, each an immutable
// radix tree. A write builds new trees and swaps one pointer, so readers
// never block and every read sees the state as of one applied Raft index.
//
// Reads are local: on a follower they may lag the leader ("stale"). Call
// Store.VerifyLeader first for default or consistent reads.
type StateStore struct {
	root  atomic.Pointer[stateRoot]
	watch *watchRegistry
	// writeMu serializes writers (the FSM and restores).
	writeMu sync.Mutex
}

// stateRoot is one immutable version of the whole state. Fields are never
// modified once the root is published.
type stateRoot struct {
	// index is the last Raft index applied.
	index uint64
	// kv maps key → *Entry.
	kv *iradix.Tree
	// tombs maps a deleted key → uint64 index of its deletion.
	tombs *iradix.Tree
	// sessions maps ID → *Session.
	sessions *iradix.Tree
	// locks maps session ID + "\x00" + key → struct{} for every key a
	// session holds, so invalidation need not scan all keys.
	locks *iradix.Tree
	// delays maps key → int64 Unix nanoseconds until which the key cannot
	// be acquired (lock-delay after its holder was invalidated).
	delays *iradix.Tree
	// floor is the highest index of any reaped tombstone.
	floor uint64
	// sessionsIndex is the index of the last change to the session table.
	sessionsIndex uint64
	// nodeSess maps fold(session node) + "\x00" + session ID → struct{},
	// so deregistering a node or failing a check finds its sessions
	// without scanning them all. Rebuilt on restore.
	nodeSess *iradix.Tree

	// The catalog (see catalog.go for keys and folding).
	//
	// nodes maps fold(node) → *Node.
	nodes *iradix.Tree
	// nodeIDs maps fold(node ID) → fold(node) (string). Rebuilt on restore.
	nodeIDs *iradix.Tree
	// services maps fold(node) \0 fold(service ID) → *NodeService.
	services *iradix.Tree
	// svcNames maps fold(service name) \0 <services key> → struct{}, the
	// instances of each service in order. Rebuilt on restore.
	svcNames *iradix.Tree
	// checks maps fold(node) \0 fold(check ID) → *HealthCheck.
	checks *iradix.Tree
	// svcIdx maps fold(service name) → uint64, the service's index. The
	// entry of a service without instances is its tombstone, reaped with
	// the K/V tombstones.
	svcIdx *iradix.Tree
	// nodeIdx maps fold(node) → uint64, the node's index; likewise a
	// tombstone once the node is gone.
	nodeIdx *iradix.Tree
	// cat holds the catalog's table-wide indexes.
	cat catalogIndexes
}

// NewStateStore returns an empty state store.
func NewStateStore() *StateStore {
	s := &StateStore{watch: newWatchRegistry()}
	s.root.Store(emptyRoot())
	return s
}

func emptyRoot() *stateRoot {
	return &stateRoot{
		kv:       iradix.New(),
		tombs:    iradix.New(),
		sessions: iradix.New(),
		locks:    iradix.New(),
		delays:   iradix.New(),
		nodeSess: iradix.New(),
		nodes:    iradix.New(),
		nodeIDs:  iradix.New(),
		services: iradix.New(),
		svcNames: iradix.New(),
		checks:   iradix.New(),
		svcIdx:   iradix.New(),
		nodeIdx:  iradix.New(),
	}
}

func (s *StateStore) load() *stateRoot { return s.root.Load() }

// Index returns the last Raft index applied to the store.
func (s *StateStore) Index() uint64 { return s.load().index }

// Len returns the number of live keys.
func (s *StateStore) Len() int { return s.load().kv.Len() }

// Get returns the entry for key, or nil, and the key's index (see the
// package comment).
func (s *StateStore) Get(key string) (*Entry, uint64) {
	r := s.load()
	e := r.get(key)
	if e == nil {
		return nil, r.keyIndex(key)
	}
	c := *e
	return &c, max(e.ModifyIndex, 1)
}

// List returns the entries whose key starts with prefix, sorted by key,
// and the prefix's index.
func (s *StateStore) List(prefix string) ([]*Entry, uint64) {
	r := s.load()
	var out []*Entry
	idx := r.floorIndex()
	r.kv.Root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		e := *v.(*Entry)
		out = append(out, &e)
		idx = max(idx, e.ModifyIndex)
		return false
	})
	return out, max(idx, r.tombIndex(prefix))
}

// Keys returns the keys under prefix, sorted. With a separator, a key
// containing sep after the prefix is cut just after it and listed once:
// Keys("web/", "/") gives ["web/bar", "web/foo", "web/sub/"]. The index is
// the prefix's index.
func (s *StateStore) Keys(prefix, sep string) ([]string, uint64) {
	r := s.load()
	var out []string
	idx := r.floorIndex()
	r.kv.Root().WalkPrefix([]byte(prefix), func(k []byte, v interface{}) bool {
		idx = max(idx, v.(*Entry).ModifyIndex)
		key := string(k)
		if sep != "" {
			if i := strings.Index(key[len(prefix):], sep); i >= 0 {
				key = key[:len(prefix)+i+len(sep)]
			}
		}
		// Keys sharing a cut are adjacent in sorted order.
		if n := len(out); n == 0 || out[n-1] != key {
			out = append(out, key)
		}
		return false
	})
	return out, max(idx, r.tombIndex(prefix))
}

// KeyIndex returns the index Get(key) would report.
func (s *StateStore) KeyIndex(key string) uint64 { return s.load().keyIndex(key) }

// PrefixIndex returns the index List(prefix) would report.
func (s *StateStore) PrefixIndex(prefix string) uint64 { return s.load().prefixIndex(prefix) }

// LockDelay returns until when key cannot be acquired because its last
// holder was invalidated, or the zero time.
func (s *StateStore) LockDelay(key string) time.Time {
	v, ok := s.load().delays.Get([]byte(key))
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(int64))
}

// Session returns the session with the given ID, or nil, and the session
// table's index.
func (s *StateStore) Session(id string) (*Session, uint64) {
	r := s.load()
	v, ok := r.sessions.Get([]byte(id))
	if !ok {
		return nil, max(r.sessionsIndex, 1)
	}
	return v.(*Session).clone(), max(r.sessionsIndex, 1)
}

// Sessions returns every session sorted by ID, and the session table's
// index.
func (s *StateStore) Sessions() ([]*Session, uint64) {
	return s.sessionsWhere(func(*Session) bool { return true })
}

// NodeSessions returns the sessions of one node, and the session table's
// index.
func (s *StateStore) NodeSessions(node string) ([]*Session, uint64) {
	return s.sessionsWhere(func(x *Session) bool { return x.Node == node })
}

func (s *StateStore) sessionsWhere(keep func(*Session) bool) ([]*Session, uint64) {
	r := s.load()
	var out []*Session
	r.sessions.Root().Walk(func(_ []byte, v interface{}) bool {
		if x := v.(*Session); keep(x) {
			out = append(out, x.clone())
		}
		return false
	})
	return out, max(r.sessionsIndex, 1)
}

// SessionLocks returns the keys a session holds, sorted.
func (s *StateStore) SessionLocks(id string) []string {
	var out []string
	s.load().locks.Root().WalkPrefix(lockKey(id, ""), func(k []byte, _ interface{}) bool {
		out = append(out, string(k[len(id)+1:]))
		return false
	})
	return out
}

// WaitKey blocks until the index of key exceeds minIndex or ctx ends, and
// returns the key's index then. It returns at once when minIndex is below
// the current index (in particular for minIndex 0). When ctx ends first it
// returns the current index and ctx.Err(). Only writes to key wake it.
//
// An HTTP handler for ?index=N&wait=D runs WaitKey under a context with
// timeout D, then Get, and answers with Get's index either way.
func (s *StateStore) WaitKey(ctx context.Context, key string, minIndex uint64) (uint64, error) {
	return s.wait(ctx, watchKey, key, minIndex, func(r *stateRoot) uint64 { return r.keyIndex(key) })
}

// WaitPrefix is WaitKey for List and Keys of a prefix: only writes to keys
// under prefix wake it.
func (s *StateStore) WaitPrefix(ctx context.Context, prefix string, minIndex uint64) (uint64, error) {
	return s.wait(ctx, watchPrefix, prefix, minIndex, func(r *stateRoot) uint64 { return r.prefixIndex(prefix) })
}

// WaitSessions is WaitKey for the session table (Session, Sessions,
// NodeSessions).
func (s *StateStore) WaitSessions(ctx context.Context, minIndex uint64) (uint64, error) {
	return s.wait(ctx, watchTable, tableSessions, minIndex, func(r *stateRoot) uint64 { return max(r.sessionsIndex, 1) })
}

func (s *StateStore) wait(ctx context.Context, kind watchKind, name string, minIndex uint64, index func(*stateRoot) uint64) (uint64, error) {
	for {
		// Register before reading so a write between the read and the
		// select still wakes us.
		ch, release := s.watch.watch(kind, name)
		idx := index(s.load())
		if idx > minIndex {
			release()
			return idx, nil
		}
		select {
		case <-ch:
			release()
		case <-ctx.Done():
			release()
			return index(s.load()), ctx.Err()
		}
	}
}

// ReadTxn runs a transaction of read verbs (get, get-tree, check-index,
// check-session, check-not-exists) against the local state without Raft,
// as Consul does for read-only transactions. It returns the result and the
// index of the state read; a write verb gives ErrNotReadOnly.
func (s *StateStore) ReadTxn(ops []KVOp) (*Result, uint64, error) {
	if len(ops) > MaxTxnOps {
		return nil, 0, fmt.Errorf("kvstore: read txn: %w", ErrTooManyOps)
	}
	for i, op := range ops {
		if op.Verb.IsWrite() || !op.Verb.valid() {
			return nil, 0, fmt.Errorf("kvstore: read txn: operation %d: %w: verb %q", i, ErrNotReadOnly, op.Verb)
		}
	}
	r := s.load()
	t := newWriteTxn(r, r.index, 0)
	res := t.txn(ops)
	return res, max(r.index, 1), nil
}

// hasTombstonesUpTo reports whether a tombstone at or below index exists:
// a deleted K/V key, or the index entry of a service or node that is gone.
func (s *StateStore) hasTombstonesUpTo(index uint64) bool {
	r := s.load()
	found := false
	r.tombs.Root().Walk(func(_ []byte, v interface{}) bool {
		found = v.(uint64) <= index
		return found
	})
	if found {
		return true
	}
	return len(catalogTombstones(r.svcIdx.Root(), index, serviceLive(r.svcNames.Root())))+
		len(catalogTombstones(r.nodeIdx.Root(), index, nodeLive(r.nodes.Root()))) > 0
}

// get returns the stored entry (not a copy) or nil.
func (r *stateRoot) get(key string) *Entry {
	v, ok := r.kv.Get([]byte(key))
	if !ok {
		return nil
	}
	return v.(*Entry)
}

func (r *stateRoot) floorIndex() uint64 { return max(r.floor, 1) }

func (r *stateRoot) keyIndex(key string) uint64 {
	if e := r.get(key); e != nil {
		return max(e.ModifyIndex, 1)
	}
	if v, ok := r.tombs.Get([]byte(key)); ok {
		return max(v.(uint64), r.floorIndex())
	}
	return r.floorIndex()
}

// tombIndex returns the highest tombstone index under prefix, or the floor.
func (r *stateRoot) tombIndex(prefix string) uint64 {
	idx := r.floorIndex()
	r.tombs.Root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		idx = max(idx, v.(uint64))
		return false
	})
	return idx
}

func (r *stateRoot) prefixIndex(prefix string) uint64 {
	idx := r.tombIndex(prefix)
	r.kv.Root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		idx = max(idx, v.(*Entry).ModifyIndex)
		return false
	})
	return idx
}

func lockKey(session, key string) []byte {
	b := make([]byte, 0, len(session)+1+len(key))
	b = append(b, session...)
	b = append(b, 0)
	return append(b, key...)
}
