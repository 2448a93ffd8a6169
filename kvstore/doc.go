// Package kvstore is Outrigger's Raft-replicated key/value store: the state
// machine, its in-memory state store, and the Raft node that runs them on a
// server. It holds what Consul keeps in its "kvs", "tombstones" and
// "sessions" tables, and implements the store side of /v1/kv, /v1/txn and
// /v1/session: set, cas, delete, delete-tree, delete-cas, acquire/release,
// transactions of up to MaxTxnOps K/V operations, sessions with TTLs,
// behaviours and lock-delay.
//
// It is not the HTTP API (httpapi/ parses requests and renders Consul's
// JSON on top of Store and StateStore), not request forwarding (a follower
// returns a *NotLeaderError naming the leader; the caller forwards), and not
// the catalog (health checks that invalidate sessions are applied by the
// catalog as SessionDestroy commands).
//
// # Layout
//
//   - StateStore: immutable radix trees behind an atomic pointer. Reads never
//     block writers; every read sees one applied Raft index. Blocking reads
//     wait with WaitKey, WaitPrefix and WaitSessions.
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
// A delete leaves a tombstone (key → delete index), so deleting the newest
// key under a prefix cannot make the prefix's index go backwards. Tombstones
// are reaped by the leader after Config.TombstoneTTL through a Raft command;
// reaping raises the store-wide tombstone floor to the highest reaped index,
// which keeps every reported index monotonic after reaping as well (a result
// whose index rises only because of the floor is a spurious but harmless
// wake-up: Consul clients compare results, not indexes).
//
// Watches are registered per key and per prefix: a write to key k wakes the
// waiters of k and of every registered prefix of k, and nobody else. A
// snapshot restore wakes everyone.
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

	// ErrCorruptSnapshot: a snapshot stream could not be decoded.
	ErrCorruptSnapshot = errors.New("corrupt snapshot")
	// ErrInvalidConfig: Config.Validate failed; the message names the field.
	ErrInvalidConfig = errors.New("invalid config")
)
