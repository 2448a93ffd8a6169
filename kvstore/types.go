package kvstore

import "time"

// Entry is one key as Consul's /v1/kv returns it. Entries handed out by
// StateStore are copies of the stored ones, but Value shares its bytes with
// the store: do not modify it.
type Entry struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64
	ModifyIndex uint64
	// LockIndex counts how many times the key has been acquired.
	LockIndex uint64
	// Session is the ID of the session holding the lock, or "".
	Session string
}

// Verb is a K/V operation, spelled as in Consul's /v1/txn.
type Verb string

// The K/V verbs. The write verbs (set, cas, lock, unlock, delete,
// delete-tree, delete-cas) can also be applied alone as a CmdKV command;
// all twelve can appear in a CmdTxn transaction.
const (
	VerbSet            Verb = "set"
	VerbCAS            Verb = "cas"
	VerbLock           Verb = "lock"
	VerbUnlock         Verb = "unlock"
	VerbGet            Verb = "get"
	VerbGetTree        Verb = "get-tree"
	VerbCheckIndex     Verb = "check-index"
	VerbCheckSession   Verb = "check-session"
	VerbCheckNotExists Verb = "check-not-exists"
	VerbDelete         Verb = "delete"
	VerbDeleteTree     Verb = "delete-tree"
	VerbDeleteCAS      Verb = "delete-cas"
)

// verbs lists every verb in wire order: a verb's code is its position + 1.
var verbs = [...]Verb{
	VerbSet, VerbCAS, VerbLock, VerbUnlock, VerbGet, VerbGetTree,
	VerbCheckIndex, VerbCheckSession, VerbCheckNotExists, VerbDelete,
	VerbDeleteTree, VerbDeleteCAS,
}

// IsWrite reports whether v changes the store.
func (v Verb) IsWrite() bool {
	switch v {
	case VerbSet, VerbCAS, VerbLock, VerbUnlock, VerbDelete, VerbDeleteTree, VerbDeleteCAS:
		return true
	}
	return false
}

func (v Verb) valid() bool { return verbCode(v) != 0 }

func verbCode(v Verb) byte {
	for i, w := range verbs {
		if w == v {
			return byte(i + 1)
		}
	}
	return 0
}

// KVOp is one K/V operation: a single write (CmdKV) or one element of a
// transaction (CmdTxn). HTTP mapping: PUT → set; PUT ?cas=N → cas with
// Index N (0 = create only); PUT ?acquire=S → lock; PUT ?release=S →
// unlock; DELETE → delete; DELETE ?recurse → delete-tree; DELETE ?cas=N →
// delete-cas.
type KVOp struct {
	Verb  Verb
	Key   string
	Value []byte
	Flags uint64
	// Index is the expected ModifyIndex for cas, delete-cas and check-index.
	Index uint64
	// Session is the session for lock, unlock and check-session.
	Session string
}

// CommandType says what a Command does.
type CommandType uint8

// Command types. The numbers are part of the log format: never reuse one.
const (
	// CmdKV applies one write verb (Command.KV).
	CmdKV CommandType = 1
	// CmdTxn applies Command.Ops all or nothing.
	CmdTxn CommandType = 2
	// CmdSessionCreate creates Command.Session. Store.Apply fills in a
	// random ID when Session.ID is empty.
	CmdSessionCreate CommandType = 3
	// CmdSessionDestroy invalidates the session Command.Session.ID: its
	// locks are released (or its keys deleted, by Behavior) and its
	// lock-delay starts.
	CmdSessionDestroy CommandType = 4
	// CmdReapTombstones removes tombstones with index <= ReapIndex. The
	// leader issues it; callers need not.
	CmdReapTombstones CommandType = 5
	// CmdCatalogRegister upserts Command.Register: a node, optionally a
	// service and checks. All or nothing.
	CmdCatalogRegister CommandType = 6
	// CmdCatalogDeregister removes Command.Deregister: a node (with its
	// services, checks and sessions), or a service (with its checks), or a
	// check.
	CmdCatalogDeregister CommandType = 7
	// CmdCatalogSync applies Command.CatalogOps in order, all or nothing,
	// at one index: anti-entropy sends a node's whole difference with the
	// catalog as one log entry. At most MaxCatalogOps operations.
	CmdCatalogSync CommandType = 8
)

// runsOnClone reports whether commands of type t may fail after writing,
// and so run on a clone of the state that is dropped when they fail.
func runsOnClone(t CommandType) bool {
	switch t {
	case CmdTxn, CmdCatalogRegister, CmdCatalogDeregister, CmdCatalogSync:
		return true
	}
	return false
}

func (t CommandType) String() string {
	switch t {
	case CmdKV:
		return "kv"
	case CmdTxn:
		return "txn"
	case CmdSessionCreate:
		return "session-create"
	case CmdSessionDestroy:
		return "session-destroy"
	case CmdReapTombstones:
		return "reap-tombstones"
	case CmdCatalogRegister:
		return "catalog-register"
	case CmdCatalogDeregister:
		return "catalog-deregister"
	case CmdCatalogSync:
		return "catalog-sync"
	}
	return "unknown"
}

// Command is what is proposed to Raft. Build one and pass it to
// Store.Apply; EncodeCommand and DecodeCommand give its wire form (for
// forwarding to the leader, for instance).
type Command struct {
	Type CommandType
	// KV is the operation of a CmdKV command.
	KV KVOp
	// Ops are the operations of a CmdTxn command, at most MaxTxnOps.
	Ops []KVOp
	// Session is the session to create (CmdSessionCreate) or, by ID, to
	// destroy (CmdSessionDestroy).
	Session Session
	// ReapIndex is the highest tombstone index to remove (CmdReapTombstones).
	ReapIndex uint64
	// Register is the registration of a CmdCatalogRegister.
	Register *CatalogRegistration
	// Deregister is what a CmdCatalogDeregister removes.
	Deregister *CatalogDeregistration
	// CatalogOps are the operations of a CmdCatalogSync.
	CatalogOps []CatalogOp
	// Time is the leader's wall clock when the command was proposed, in Unix
	// nanoseconds. Store.Apply sets it; the state machine uses it for
	// lock-delay so every replica decides alike.
	Time int64
}

// SessionBehavior is what happens to a session's locks when it is
// invalidated.
type SessionBehavior string

// Session behaviours, as in Consul. The empty value means release.
const (
	BehaviorRelease SessionBehavior = "release"
	BehaviorDelete  SessionBehavior = "delete"
)

// ServiceCheck names a service check a session depends on.
type ServiceCheck struct {
	ID        string
	Namespace string
}

// Session is an entry of the session table, with Consul's fields. The HTTP
// layer applies Consul's defaults (LockDelay 15s, NodeChecks
// ["serfHealth"]) before creating one; the store uses the fields as given.
type Session struct {
	ID            string
	Name          string
	Node          string
	NodeChecks    []string
	ServiceChecks []ServiceCheck
	// LockDelay keeps the locks this session held from being acquired for
	// this long after it is invalidated. At most MaxLockDelay.
	LockDelay time.Duration
	Behavior  SessionBehavior
	// TTL, if non-zero, invalidates the session unless renewed within it
	// (the leader allows twice the TTL, as Consul does).
	TTL         time.Duration
	CreateIndex uint64
	ModifyIndex uint64
}

func (s *Session) clone() *Session {
	c := *s
	c.NodeChecks = append([]string(nil), s.NodeChecks...)
	c.ServiceChecks = append([]ServiceCheck(nil), s.ServiceChecks...)
	return &c
}

// TxnError is one reason a transaction was rolled back, as Consul reports
// it: the index of the failing operation and what went wrong.
type TxnError struct {
	OpIndex int
	What    string
}

// Result is what applying a Command produced.
type Result struct {
	// Index is the Raft index the command was applied at.
	Index uint64
	// OK is Consul's true/false for a CmdKV write (false: a cas mismatch,
	// a lock held by someone else, lock-delay in effect, a release by a
	// non-holder); for CmdTxn, true when it committed; for
	// CmdSessionDestroy, whether the session existed; for the catalog
	// commands, true (they either apply or return an error).
	OK bool
	// Results of a committed CmdTxn in operation order; get-tree adds one
	// per entry found. Values are set only for get and get-tree, as Consul.
	Results []*Entry
	// Errors of a rolled-back CmdTxn (then OK is false and Results nil).
	Errors []TxnError
	// Session is the created session (CmdSessionCreate).
	Session *Session
}
