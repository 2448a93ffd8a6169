package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/hashicorp/raft"
)

// populated returns a state with entries, locks, tombstones, a raised
// floor, sessions and a lock-delay.
func populated(t *testing.T) *tstate {
	ts := newTState(t)
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s1", Node: "n1", NodeChecks: []string{"serfHealth"}, TTL: time.Minute}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s2", LockDelay: time.Hour, ServiceChecks: []ServiceCheck{{ID: "c", Namespace: "ns"}}}})
	ts.kv(VerbSet, "a", "1", withFlags(5))
	ts.kv(VerbSet, "old", "x")
	ts.kv(VerbDelete, "old", "")
	ts.do(Command{Type: CmdReapTombstones, ReapIndex: ts.idx})
	ts.kv(VerbSet, "b/c", "")
	ts.kv(VerbLock, "lock1", "held", withSession("s1"))
	ts.kv(VerbLock, "lock2", "held", withSession("s2"))
	ts.do(Command{Type: CmdSessionDestroy, Session: Session{ID: "s2"}})
	ts.kv(VerbDelete, "b/c", "")

	// The catalog: nodes with IDs, services, checks, a service and a node
	// that are gone (tombstones), a session on a catalog node.
	ts.register(CatalogRegistration{
		Node: Node{ID: uuid1, Node: "Web-1", Address: "10.0.0.1", Datacenter: "dc1",
			TaggedAddresses: map[string]string{"lan": "10.0.0.1", "wan": "1.1.1.1"}, Meta: map[string]string{"rack": "r1"}},
		Service: &NodeService{ID: "web-a", Service: "Web", Tags: []string{"v1", "prod"}, Address: "10.0.0.11", Port: 8080,
			TaggedAddresses: map[string]ServiceAddress{"lan": {Address: "10.0.0.11", Port: 8080}}, Meta: map[string]string{"v": "1"},
			Kind: "connect-proxy", Proxy: []byte(`{"DestinationServiceName":"web"}`), Weights: Weights{Passing: 10, Warning: 1},
			EnableTagOverride: true},
		Checks: []*HealthCheck{
			{CheckID: SerfCheckID, Name: "Serf Health Status", Status: HealthPassing, Type: "serf"},
			{CheckID: "web-http", Name: "HTTP", ServiceID: "web-a", Status: HealthWarning, Notes: "n", Output: "429",
				Type: "http", Definition: []byte(`{"HTTP":"http://10.0.0.11:8080/health","Interval":"10s"}`)},
		},
	})
	ts.register(CatalogRegistration{Node: Node{ID: uuid2, Node: "db-1", Address: "10.0.0.2"}, Service: &NodeService{Service: "db"}})
	ts.register(CatalogRegistration{Node: Node{Node: "gone", Address: "10.0.0.3"}, Service: &NodeService{Service: "old"}})
	ts.deregister(CatalogDeregistration{Node: "gone"})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s3", Node: "web-1", NodeChecks: []string{SerfCheckID}}})
	return ts
}

func treeContents(tr *iradix.Tree) map[string]interface{} {
	m := map[string]interface{}{}
	tr.Root().Walk(func(k []byte, v interface{}) bool {
		m[string(k)] = v
		return false
	})
	return m
}

func equalRoots(t *testing.T, got, want *stateRoot) {
	t.Helper()
	if got.index != want.index || got.floor != want.floor || got.sessionsIndex != want.sessionsIndex || got.cat != want.cat {
		t.Fatalf("header: got index %d floor %d sessions %d catalog %+v, want %d %d %d %+v",
			got.index, got.floor, got.sessionsIndex, got.cat, want.index, want.floor, want.sessionsIndex, want.cat)
	}
	for _, p := range []struct {
		name      string
		got, want *iradix.Tree
	}{
		{"kv", got.kv, want.kv}, {"tombs", got.tombs, want.tombs}, {"sessions", got.sessions, want.sessions},
		{"locks", got.locks, want.locks}, {"delays", got.delays, want.delays}, {"nodeSess", got.nodeSess, want.nodeSess},
		{"nodes", got.nodes, want.nodes}, {"nodeIDs", got.nodeIDs, want.nodeIDs}, {"services", got.services, want.services},
		{"svcNames", got.svcNames, want.svcNames}, {"checks", got.checks, want.checks},
		{"svcIdx", got.svcIdx, want.svcIdx}, {"nodeIdx", got.nodeIdx, want.nodeIdx},
	} {
		if g, w := treeContents(p.got), treeContents(p.want); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s differs after restore:\n got %v\nwant %v", p.name, g, w)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	ts := populated(t)
	want := ts.s.load()
	if want.tombs.Len() == 0 || want.delays.Len() == 0 || want.floor == 0 || want.locks.Len() == 0 {
		t.Fatal("test state lacks tombstones, delays, floor or locks")
	}
	if want.nodes.Len() != 2 || want.services.Len() != 2 || want.checks.Len() != 2 || want.svcIdx.Len() != 3 ||
		want.nodeIdx.Len() != 3 || want.nodeIDs.Len() != 2 || want.nodeSess.Len() != 2 {
		t.Fatalf("test state lacks catalog entries: %d nodes, %d services, %d checks, %d service indexes, %d node indexes",
			want.nodes.Len(), want.services.Len(), want.checks.Len(), want.svcIdx.Len(), want.nodeIdx.Len())
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, want); err != nil {
		t.Fatal(err)
	}

	fsm := NewFSM(NewStateStore(), nil)
	ch, release := fsm.State().watch.watch(watchKey, "never-written")
	defer release()
	if err := fsm.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	equalRoots(t, fsm.State().load(), want)
	select {
	case <-ch:
	default:
		t.Fatal("restore did not wake watchers")
	}
}

// filterRecords re-encodes a snapshot stream without the records whose
// kind drop selects.
func filterRecords(t *testing.T, snap []byte, drop func(kind byte) bool) []byte {
	t.Helper()
	out := append([]byte(nil), snap[:len(snapshotMagic)]...)
	b := snap[len(snapshotMagic):]
	for len(b) > 0 {
		kind := b[0]
		n, w := binary.Uvarint(b[1:])
		if w <= 0 {
			t.Fatal("bad record length")
		}
		end := 1 + w + int(n)
		if !drop(kind) {
			out = append(out, b[:end]...)
		}
		b = b[end:]
	}
	return out
}

// A snapshot written before the catalog existed (no catalog section)
// restores with everything else and an empty catalog.
func TestSnapshotWithoutCatalog(t *testing.T) {
	ts := populated(t)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, ts.s.load()); err != nil {
		t.Fatal(err)
	}
	old := filterRecords(t, buf.Bytes(), func(kind byte) bool { return kind >= recCatalog && kind <= recNodeIndex })
	r, err := readSnapshot(bytes.NewReader(old))
	if err != nil {
		t.Fatalf("restore of a snapshot without a catalog: %v", err)
	}
	want := ts.s.load()
	if r.kv.Len() != want.kv.Len() || r.sessions.Len() != want.sessions.Len() || r.nodeSess.Len() != want.nodeSess.Len() {
		t.Fatalf("restored %d keys and %d sessions, want %d and %d", r.kv.Len(), r.sessions.Len(), want.kv.Len(), want.sessions.Len())
	}
	if r.nodes.Len()+r.services.Len()+r.checks.Len()+r.svcIdx.Len() != 0 || r.cat != (catalogIndexes{}) {
		t.Fatal("catalog not empty after restoring a snapshot without one")
	}

	// A catalog record without the section header is corrupt.
	noHeader := filterRecords(t, buf.Bytes(), func(kind byte) bool { return kind == recCatalog })
	if _, err := readSnapshot(bytes.NewReader(noHeader)); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("catalog records without their section: err %v, want ErrCorruptSnapshot", err)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	ts := populated(t)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, ts.s.load()); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for n := 0; n < len(good); n++ {
		if _, err := readSnapshot(bytes.NewReader(good[:n])); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated to %d of %d bytes: err %v, want ErrCorruptSnapshot", n, len(good), err)
		}
	}
	// Flipping bytes never panics.
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0xA5
		_, _ = readSnapshot(bytes.NewReader(bad))
	}
}

func TestFSMApplyBatch(t *testing.T) {
	fsm := NewFSM(NewStateStore(), nil)
	enc := func(c Command) []byte { return EncodeCommand(&c) }
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration},
		{Index: 2, Type: raft.LogCommand, Data: enc(Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "a", Value: []byte("1")}})},
		{Index: 3, Type: raft.LogCommand, Data: []byte{0xde, 0xad}},
		{Index: 4, Type: raft.LogCommand, Data: enc(Command{Type: CmdTxn, Ops: []KVOp{
			{Verb: VerbSet, Key: "b", Value: []byte("2")},
			{Verb: VerbCAS, Key: "a", Index: 1},
		}})},
		{Index: 5, Type: raft.LogCommand, Data: enc(Command{Type: CmdKV, KV: KVOp{Verb: VerbCAS, Key: "a", Index: 2, Value: []byte("3")}})},
		{Index: 6, Type: raft.LogCommand, Data: []byte{ignorableFlag | 100, commandVersion, 0}},
	}
	out := fsm.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(out), len(logs))
	}
	if out[0] != nil {
		t.Fatalf("configuration log response = %v, want nil", out[0])
	}
	if o := out[1].(applyOutcome); o.err != nil || !o.res.OK || o.res.Index != 2 {
		t.Fatalf("set response = %+v", o)
	}
	if o := out[2].(applyOutcome); !errors.Is(o.err, ErrInvalidCommand) {
		t.Fatalf("garbage log response = %+v, want ErrInvalidCommand", o)
	}
	if o := out[3].(applyOutcome); o.res.OK || len(o.res.Errors) != 1 || o.res.Errors[0].OpIndex != 1 {
		t.Fatalf("failing txn response = %+v", o.res)
	}
	if o := out[4].(applyOutcome); !o.res.OK {
		t.Fatalf("cas response = %+v", o.res)
	}
	if out[5] != nil {
		t.Fatalf("ignorable unknown command response = %v, want nil", out[5])
	}
	st := fsm.State()
	if st.Index() != 6 {
		t.Fatalf("applied index = %d, want 6", st.Index())
	}
	if e, _ := st.Get("a"); string(e.Value) != "3" || e.ModifyIndex != 5 {
		t.Fatalf("a = %+v, want value 3 at 5", e)
	}
	if e, _ := st.Get("b"); e != nil {
		t.Fatal("rolled-back txn wrote b")
	}
}

// TestBatchEquivalence applies one random command sequence one log per
// batch and in random batches: results and final state must match, so
// sharing a radix transaction across a batch (and dropping failed
// transactions' clones) changes nothing.
func TestBatchEquivalence(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 11))
	keys := []string{"a", "a/b", "a/c", "b", "bb", "c/d"}
	sessions := []string{"s1", "s2", "s3"}
	randOp := func(verbs []Verb) KVOp {
		o := KVOp{Verb: verbs[rnd.IntN(len(verbs))], Key: keys[rnd.IntN(len(keys))], Flags: uint64(rnd.IntN(3))}
		if rnd.IntN(2) == 0 {
			o.Value = []byte(fmt.Sprint(rnd.IntN(100)))
		}
		o.Index = uint64(rnd.IntN(40))
		o.Session = sessions[rnd.IntN(len(sessions))]
		if o.Verb == VerbDeleteTree || o.Verb == VerbGetTree {
			o.Key = o.Key[:1]
		}
		return o
	}
	writeVerbs := []Verb{VerbSet, VerbSet, VerbCAS, VerbLock, VerbUnlock, VerbDelete, VerbDeleteTree, VerbDeleteCAS}
	var cmds []*Command
	for i := 0; i < 400; i++ {
		var c Command
		switch p := rnd.IntN(20); {
		case p < 11:
			c = Command{Type: CmdKV, KV: randOp(writeVerbs)}
		case p < 16:
			n := 1 + rnd.IntN(5)
			c = Command{Type: CmdTxn}
			for j := 0; j < n; j++ {
				c.Ops = append(c.Ops, randOp(verbs[:]))
			}
		case p < 18:
			c = Command{Type: CmdSessionCreate, Session: Session{ID: sessions[rnd.IntN(len(sessions))], LockDelay: time.Duration(rnd.IntN(3)) * time.Second, Behavior: []SessionBehavior{BehaviorRelease, BehaviorDelete}[rnd.IntN(2)]}}
		case p < 19:
			c = Command{Type: CmdSessionDestroy, Session: Session{ID: sessions[rnd.IntN(len(sessions))]}}
		default:
			c = Command{Type: CmdReapTombstones, ReapIndex: uint64(i - rnd.IntN(20))}
		}
		c.Time = int64(i) * int64(500*time.Millisecond)
		cmds = append(cmds, &c)
	}
	want := assertBatchEquivalent(t, rnd, cmds)
	ok := 0
	for _, o := range want {
		if o.err == nil && o.res.OK {
			ok++
		}
	}
	if ok < 100 || ok > 350 {
		t.Fatalf("%d of %d commands succeeded: the mix tests too little", ok, len(cmds))
	}
}

// assertBatchEquivalent applies cmds one log per batch and in random
// batches, checks that results and final states match, and returns the
// results.
func assertBatchEquivalent(t *testing.T, rnd *rand.Rand, cmds []*Command) []applyOutcome {
	t.Helper()
	indexes := make([]uint64, len(cmds))
	for i := range indexes {
		indexes[i] = uint64(i + 1)
	}

	// The reference applies each command on its own writeTxn and drops
	// it unless the command succeeded.
	one := NewStateStore()
	var want []applyOutcome
	for i, c := range cmds {
		working := *one.load()
		working.index = indexes[i]
		wt := newWriteTxn(&working, indexes[i], c.Time)
		res, keep, err := wt.apply(c)
		if keep {
			wt.commitTo(&working)
		}
		one.root.Store(&working)
		want = append(want, applyOutcome{res: res, err: err})
	}
	batched := NewStateStore()
	var got []applyOutcome
	for i := 0; i < len(cmds); {
		n := min(1+rnd.IntN(40), len(cmds)-i)
		got = append(got, batched.applyCommands(indexes[i:i+n], cmds[i:i+n])...)
		i += n
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("command %d (%+v): batched result %+v (%v), one by one %+v (%v)", i, cmds[i], got[i].res, got[i].err, want[i].res, want[i].err)
		}
	}
	equalRoots(t, batched.load(), one.load())
	return want
}
