// Package kvstore is Outrigger's Raft-replicated state: the state machine,
// its in-memory state store, and the Raft node that runs them on a server.
// Like Consul it has one state machine for everything replicated: the
// "kvs", "tombstones" and "sessions" tables behind /v1/kv, /v1/txn and
// /v1/session (set, cas, delete, delete-tree, delete-cas, acquire/release,
// transactions of up to MaxTxnOps K/V operations, sessions with TTLs,
// behaviours and lock-delay), and the catalog's "nodes", "services" and
// "checks" tables behind /v1/catalog and /v1/health (CmdCatalogRegister,
// CmdCatalogDeregister, CmdCatalogSync; reads in catalog.go). Catalog
// writes invalidate sessions in the same apply, as Consul's do: a check
// turning critical destroys the sessions that list it, and deregistering
// a node destroys all of the node's sessions.
//
// It is not the HTTP API (httpapi/ parses requests and renders Consul's
// JSON on top of Store and StateStore), not request forwarding (a follower
// returns a *NotLeaderError naming the leader; the caller forwards), and
// not the agent's side of the catalog: local services and checks, check
// runners and anti-entropy live elsewhere and write through Store.Apply.
//
// # Layout
//
//   - StateStore: immutable radix trees behind an atomic pointer. Reads never
//     block writers; every read sees one applied Raft index. Blocking reads
//     wait with WaitKey, WaitPrefix and WaitSessions, and for the catalog
//     WaitService, WaitServices, WaitNode, WaitNodes and WaitChecksInState.
//   - FSM: raft.BatchingFSM over a StateStore. A batch of committed logs is
//     applied as one state swap and one round of watch notifications.
//   - Store: a Raft node (raft-boltdb/v2 log and stable store with fsync on,
//     file snapshots, TCP transport) plus leader duties: the post-election
//     barrier, coalesced leadership verification, session TTL timers and
//     tombstone reaping.
//
// # Indexes and blocking queries
//
// Every write is stamped with the Raft index of its log entry. The index a
// read reports is the index of the result, not of the whole store:
//
//   - Get(key): the key's ModifyIndex; if absent, the index of its tombstone;
//     if there is none, the tombstone floor (see below), at least 1.
//   - List/Keys(prefix): the highest of the ModifyIndex of every live key
//     under the prefix, the index of every tombstone under the prefix, and
//     the tombstone floor; at least 1.
//
// The catalog's reads report, likewise, the index of their result: a
// service's index (ServiceNodes, CheckServiceNodes, ServiceChecks) moves
// only with changes to its instances, their checks and their nodes
// (node-level checks included); a node's index with the node, its
// services and checks; ChecksInState with checks entering, leaving or
// changing in that state; Services with the service table; Nodes with the
// node table. A service's or node's index entry outlives it as a
// tombstone, reaped with the K/V tombstones, so these never go backwards
// either.
//
// A delete leaves a tombstone (key → delete index), so deleting the newest
// key under a prefix cannot make the prefix's index go backwards. Tombstones
// are reaped by the leader after Config.TombstoneTTL through a Raft command;
// reaping raises the store-wide tombstone floor to the highest reaped index,
// which keeps every reported index monotonic after reaping as well (a result
// whose index rises only because of the floor is a spurious but harmless
// wake-up: Consul clients compare results, not indexes).
//
// Watches are registered per key and per prefix: a write to key k wakes the
// waiters of k and of every registered prefix of k, and nobody else.
// Catalog watches are per service, per node, per check state and per
// table: registering "api" does not wake a watcher of "web". A snapshot
// restore wakes everyone.
//
// # Consistency of reads
//
// StateStore reads are local ("stale" in Consul's terms). For default and
// consistent reads the HTTP layer calls Store.VerifyLeader first, which
//
//  1. refuses unless this node is the leader and has applied a barrier
//     issued after it won the election (so entries committed by earlier
//     leaders are in the state store), and
//  2. confirms leadership with a quorum by a heartbeat round started after
//     the call began (raft.VerifyLeader). Concurrent callers share one
//     round: a caller joins the next round that has not started yet, never
//     one already in flight, so the round always begins after the caller.
//
// Writes acknowledged by Apply are applied to the leader's state store
// before Apply returns, so a read after VerifyLeader observes every write
// acknowledged before the read began. No clock lease is used; this costs one
// heartbeat round trip per batch of concurrent reads.
package kvstore

import (
	"errors"
	"time"
)

// Limits checked before a command is proposed to Raft.
const (
	// MaxValueSize is Consul's K/V value limit (512 KiB).
	MaxValueSize = 512 * 1024
	// MaxKeySize bounds key length; Consul has no documented limit, ours
	// keeps a single entry's key well inside one Raft log entry.
	MaxKeySize = 4096
	// MaxTxnOps is the largest transaction accepted.
	MaxTxnOps = 128
	// MaxLockDelay is Consul's upper bound for a session's lock-delay.
	MaxLockDelay = 60 * time.Second
	// MaxSessionTTL is Consul's upper bound for a session TTL.
	MaxSessionTTL = 86400 * time.Second
	// MaxCatalogOps is the largest CmdCatalogSync accepted.
	MaxCatalogOps = 512
	// MaxCatalogChecks bounds the checks of one registration.
	MaxCatalogChecks = 256
	// MaxCatalogNameSize bounds node names, service names and IDs and
	// check IDs.
	MaxCatalogNameSize = 512
)

// Sentinel errors. Errors returned by this package wrap one of these with
// %w and a prefix naming the step, e.g. "kvstore: apply: not leader".
var (
	// ErrNotLeader: the node is not the Raft leader. The error is a
	// *NotLeaderError carrying the leader's address when one is known. A
	// command refused with ErrNotLeader was not applied.
	ErrNotLeader = errors.New("not leader")
	// ErrLeadershipLost: the node lost leadership while the command was in
	// flight. The command may or may not have been applied.
	ErrLeadershipLost = errors.New("leadership lost while committing")
	// ErrTimeout: the context ended before the command was applied. The
	// command may still be applied later.
	ErrTimeout = errors.New("timed out")
	// ErrShutdown: the store is shut down.
	ErrShutdown = errors.New("store is shut down")

	// ErrInvalidCommand: a command is malformed (unknown verb, missing key,
	// undecodable bytes).
	ErrInvalidCommand = errors.New("invalid command")
	// ErrKeyTooLarge: a key is longer than MaxKeySize.
	ErrKeyTooLarge = errors.New("key too large")
	// ErrValueTooLarge: a value is larger than MaxValueSize.
	ErrValueTooLarge = errors.New("value too large")
	// ErrTooManyOps: a transaction has more than MaxTxnOps operations.
	ErrTooManyOps = errors.New("too many operations in transaction")
	// ErrNotReadOnly: ReadTxn was given a write verb.
	ErrNotReadOnly = errors.New("transaction is not read-only")

	// ErrInvalidSession: the session named by an acquire or lock does not
	// exist (Consul: "invalid session").
	ErrInvalidSession = errors.New("invalid session")
	// ErrSessionNotFound: the session to renew does not exist.
	ErrSessionNotFound = errors.New("session not found")
	// ErrSessionExists: a session with this ID already exists.
	ErrSessionExists = errors.New("session already exists")
	// ErrInvalidSessionTTL: the TTL is outside [Config.MinSessionTTL,
	// MaxSessionTTL], or the lock-delay above MaxLockDelay.
	ErrInvalidSessionTTL = errors.New("invalid session TTL")

	// ErrMissingNode: a service or check was registered for a node that is
	// not in the catalog (Consul: "Missing node registration").
	ErrMissingNode = errors.New("missing node registration")
	// ErrUnknownService: a check names a ServiceID that is not registered
	// on its node.
	ErrUnknownService = errors.New("unknown service")
	// ErrNodeConflict: a node registration would take the name or ID of
	// another node whose serfHealth check is not critical.
	ErrNodeConflict = errors.New("node name or ID in use")

	// ErrCorruptSnapshot: a snapshot stream could not be decoded.
	ErrCorruptSnapshot = errors.New("corrupt snapshot")
	// ErrInvalidConfig: Config.Validate failed; the message names the field.
	ErrInvalidConfig = errors.New("invalid config")
)
