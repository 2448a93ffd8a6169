package kvstore

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tstate applies commands to a bare StateStore at increasing indexes.
type tstate struct {
	t   *testing.T
	s   *StateStore
	idx uint64
	now time.Time
}

func newTState(t *testing.T) *tstate {
	return &tstate{t: t, s: NewStateStore(), now: time.Unix(1_700_000_000, 0)}
}

func (ts *tstate) try(c Command) (*Result, error) {
	ts.idx++
	c.Time = ts.now.UnixNano()
	return ts.s.apply(ts.idx, &c)
}

func (ts *tstate) do(c Command) *Result {
	ts.t.Helper()
	res, err := ts.try(c)
	if err != nil {
		ts.t.Fatalf("apply %+v: %v", c, err)
	}
	return res
}

func (ts *tstate) kv(verb Verb, key, value string, mods ...func(*KVOp)) *Result {
	ts.t.Helper()
	op := KVOp{Verb: verb, Key: key}
	if value != "" {
		op.Value = []byte(value)
	}
	for _, m := range mods {
		m(&op)
	}
	return ts.do(Command{Type: CmdKV, KV: op})
}

func withIndex(i uint64) func(*KVOp)   { return func(o *KVOp) { o.Index = i } }
func withFlags(f uint64) func(*KVOp)   { return func(o *KVOp) { o.Flags = f } }
func withSession(s string) func(*KVOp) { return func(o *KVOp) { o.Session = s } }

func (ts *tstate) get(key string) *Entry {
	e, _ := ts.s.Get(key)
	return e
}

func (ts *tstate) wantEntry(key string, want *Entry) {
	ts.t.Helper()
	got := ts.get(key)
	if want == nil {
		if got != nil {
			ts.t.Fatalf("Get(%q) = %+v, want nil", key, got)
		}
		return
	}
	if got == nil {
		ts.t.Fatalf("Get(%q) = nil, want %+v", key, want)
	}
	if !reflect.DeepEqual(got, want) {
		ts.t.Fatalf("Get(%q) = %+v (value %q), want %+v (value %q)", key, got, got.Value, want, want.Value)
	}
}

func TestKVSetAndCAS(t *testing.T) {
	ts := newTState(t)
	if r := ts.kv(VerbSet, "a", "1", withFlags(42)); !r.OK || r.Index != 1 {
		t.Fatalf("set: got %+v, want OK at 1", r)
	}
	ts.wantEntry("a", &Entry{Key: "a", Value: []byte("1"), Flags: 42, CreateIndex: 1, ModifyIndex: 1})
	ts.kv(VerbSet, "a", "2")
	ts.wantEntry("a", &Entry{Key: "a", Value: []byte("2"), CreateIndex: 1, ModifyIndex: 2})

	cases := []struct {
		name  string
		key   string
		index uint64
		want  bool
	}{
		{"create-only on existing", "a", 0, false},
		{"stale index", "a", 1, false},
		{"index on missing", "b", 7, false},
		{"matching index", "a", 2, true},
		{"create-only on missing", "b", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := ts.get(c.key)
			r := ts.kv(VerbCAS, c.key, "cas", withIndex(c.index))
			if r.OK != c.want {
				t.Fatalf("cas %s@%d: got %v, want %v", c.key, c.index, r.OK, c.want)
			}
			after := ts.get(c.key)
			if !c.want && !reflect.DeepEqual(before, after) {
				t.Fatalf("failed cas changed %q: %+v → %+v", c.key, before, after)
			}
			if c.want && (string(after.Value) != "cas" || after.ModifyIndex != ts.idx) {
				t.Fatalf("cas wrote %+v, want value cas at %d", after, ts.idx)
			}
		})
	}
}

func TestKVDeletes(t *testing.T) {
	ts := newTState(t)
	for _, k := range []string{"web/a", "web/b", "web/sub/c", "api/x"} {
		ts.kv(VerbSet, k, "v")
	}
	t.Run("delete", func(t *testing.T) {
		if r := ts.kv(VerbDelete, "web/a", ""); !r.OK {
			t.Fatal("delete: got false")
		}
		ts.wantEntry("web/a", nil)
		if r := ts.kv(VerbDelete, "missing", ""); !r.OK {
			t.Fatal("delete of a missing key: got false, want true (Consul)")
		}
	})
	t.Run("delete-cas", func(t *testing.T) {
		e := ts.get("web/b")
		if r := ts.kv(VerbDeleteCAS, "web/b", "", withIndex(e.ModifyIndex+100)); r.OK {
			t.Fatal("delete-cas at a wrong index: got true")
		}
		ts.wantEntry("web/b", e)
		if r := ts.kv(VerbDeleteCAS, "web/b", "", withIndex(e.ModifyIndex)); !r.OK {
			t.Fatal("delete-cas at the right index: got false")
		}
		ts.wantEntry("web/b", nil)
		if r := ts.kv(VerbDeleteCAS, "web/b", "", withIndex(3)); !r.OK {
			t.Fatal("delete-cas of a missing key: got false, want true (Consul)")
		}
	})
	t.Run("delete-tree", func(t *testing.T) {
		ts.kv(VerbDeleteTree, "web/", "")
		if got, _ := ts.s.List("web/"); len(got) != 0 {
			t.Fatalf("List(web/) after delete-tree = %d entries", len(got))
		}
		if ts.get("api/x") == nil {
			t.Fatal("delete-tree web/ removed api/x")
		}
	})
}

func TestKeysAndList(t *testing.T) {
	ts := newTState(t)
	for _, k := range []string{"web/foo", "web/bar", "web/sub/a", "web/sub/b", "web/sub0", "webx", "api"} {
		ts.kv(VerbSet, k, "v")
	}
	keys, idx := ts.s.Keys("web/", "/")
	if want := []string{"web/bar", "web/foo", "web/sub/", "web/sub0"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("Keys(web/, /) = %q, want %q", keys, want)
	}
	if idx != 5 {
		t.Fatalf("Keys index = %d, want 5 (web/sub0)", idx)
	}
	keys, _ = ts.s.Keys("web", "")
	if want := []string{"web/bar", "web/foo", "web/sub/a", "web/sub/b", "web/sub0", "webx"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("Keys(web) = %q, want %q", keys, want)
	}
	list, idx := ts.s.List("web/sub/")
	if len(list) != 2 || list[0].Key != "web/sub/a" || idx != 4 {
		t.Fatalf("List(web/sub/) = %d entries at %d, want 2 at 4", len(list), idx)
	}
	// Entries handed out are copies.
	list[0].Flags = 99
	if ts.get("web/sub/a").Flags != 0 {
		t.Fatal("modifying a listed entry changed the store")
	}
}

func TestIndexNeverGoesBackwards(t *testing.T) {
	ts := newTState(t)
	if _, idx := ts.s.Get("nothing"); idx != 1 {
		t.Fatalf("index of a key that never existed = %d, want 1", idx)
	}
	ts.kv(VerbSet, "other", "v")   // 1
	ts.kv(VerbSet, "web/a", "v")   // 2
	ts.kv(VerbSet, "web/b", "v")   // 3
	ts.kv(VerbSet, "other", "v")   // 4
	ts.kv(VerbDelete, "web/b", "") // 5
	check := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Fatalf("%s = %d, want %d", what, got, want)
		}
	}
	_, idx := ts.s.List("web/")
	check("List(web/) after deleting its newest key", idx, 5)
	check("KeyIndex(web/b) after delete", ts.s.KeyIndex("web/b"), 5)
	check("KeyIndex(web/a)", ts.s.KeyIndex("web/a"), 2)

	// Recreating clears the tombstone; the index moves forward.
	ts.kv(VerbSet, "web/b", "v") // 6
	check("PrefixIndex(web/) after recreate", ts.s.PrefixIndex("web/"), 6)
	ts.kv(VerbDeleteTree, "web/", "") // 7
	check("PrefixIndex(web/) after delete-tree", ts.s.PrefixIndex("web/"), 7)

	// Reaping tombstones raises the floor: no index may drop.
	before := map[string]uint64{}
	for _, p := range []string{"web/", "web/a", "other", "", "zzz"} {
		before[p] = ts.s.PrefixIndex(p)
	}
	if r := ts.do(Command{Type: CmdReapTombstones, ReapIndex: 7}); !r.OK {
		t.Fatal("reap removed nothing")
	}
	if ts.s.load().tombs.Len() != 0 {
		t.Fatalf("%d tombstones left after reaping", ts.s.load().tombs.Len())
	}
	for p, was := range before {
		if now := ts.s.PrefixIndex(p); now < was {
			t.Fatalf("PrefixIndex(%q) went from %d to %d after reaping", p, was, now)
		}
	}
	check("KeyIndex(web/b) after reaping", ts.s.KeyIndex("web/b"), 7)
	if r := ts.do(Command{Type: CmdReapTombstones, ReapIndex: 100}); r.OK {
		t.Fatal("second reap reported removing something")
	}
}

func TestWatchGranularity(t *testing.T) {
	ts := newTState(t)
	ts.kv(VerbSet, "a", "v")
	ts.kv(VerbSet, "web/x", "v")
	w := ts.s.watch

	fired := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	type watch struct {
		name string
		kind watchKind
		key  string
	}
	watches := []watch{
		{"key a", watchKey, "a"},
		{"key b (absent)", watchKey, "b"},
		{"key web", watchKey, "web"},
		{"prefix web/", watchPrefix, "web/"},
		{"prefix we", watchPrefix, "we"},
		{"prefix api/", watchPrefix, "api/"},
		{"prefix all", watchPrefix, ""},
		{"sessions", watchTable, tableSessions},
	}
	cases := []struct {
		write string
		wake  []string
	}{
		{"b", []string{"key b (absent)", "prefix all"}},
		{"web/y", []string{"prefix web/", "prefix we", "prefix all"}},
		{"a", []string{"key a", "prefix all"}},
		{"api/z", []string{"prefix api/", "prefix all"}},
	}
	for _, c := range cases {
		t.Run("write "+c.write, func(t *testing.T) {
			chans := map[string]<-chan struct{}{}
			var releases []func()
			for _, wt := range watches {
				ch, rel := w.watch(wt.kind, wt.key)
				chans[wt.name] = ch
				releases = append(releases, rel)
			}
			ts.kv(VerbSet, c.write, "v")
			for _, wt := range watches {
				want := false
				for _, n := range c.wake {
					want = want || n == wt.name
				}
				if got := fired(chans[wt.name]); got != want {
					t.Errorf("write %q: watcher %s woken = %v, want %v", c.write, wt.name, got, want)
				}
			}
			for _, r := range releases {
				r()
			}
			if n := w.count(); n != 0 {
				t.Fatalf("%d watch groups left after release", n)
			}
		})
	}
}

func TestWaitKeyAndPrefix(t *testing.T) {
	ts := newTState(t)
	ts.kv(VerbSet, "a", "v") // 1

	t.Run("returns at once below the index", func(t *testing.T) {
		idx, err := ts.s.WaitKey(context.Background(), "a", 0)
		if err != nil || idx != 1 {
			t.Fatalf("WaitKey(a, 0) = %d, %v; want 1, nil", idx, err)
		}
	})
	t.Run("times out with the same index", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		idx, err := ts.s.WaitKey(ctx, "a", 1)
		if !errors.Is(err, context.DeadlineExceeded) || idx != 1 {
			t.Fatalf("WaitKey(a, 1) = %d, %v; want 1, deadline exceeded", idx, err)
		}
	})
	t.Run("woken by a write under the prefix", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		min := ts.s.PrefixIndex("web/")
		type out struct {
			idx uint64
			err error
		}
		got := make(chan out, 1)
		go func() {
			idx, err := ts.s.WaitPrefix(ctx, "web/", min)
			got <- out{idx, err}
		}()
		// Writes elsewhere do not end the wait; this one does.
		ts.kv(VerbSet, "other", "v")
		ts.kv(VerbSet, "web/new", "v")
		want := ts.idx
		o := <-got
		if o.err != nil || o.idx != want {
			t.Fatalf("WaitPrefix = %d, %v; want %d, nil", o.idx, o.err, want)
		}
	})
	waitUntil(t, time.Second, "watch groups released", func() bool { return ts.s.watch.count() == 0 })
}

func TestTxnVerbs(t *testing.T) {
	ts := newTState(t)
	ts.kv(VerbSet, "x", "old") // 1
	ts.kv(VerbSet, "t/1", "a") // 2
	ts.kv(VerbSet, "t/2", "b") // 3
	sess := ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s1"}}).Session

	res := ts.do(Command{Type: CmdTxn, Ops: []KVOp{
		{Verb: VerbSet, Key: "n", Value: []byte("new"), Flags: 7},
		{Verb: VerbCAS, Key: "x", Value: []byte("x2"), Index: 1},
		{Verb: VerbGet, Key: "n"},
		{Verb: VerbGetTree, Key: "t/"},
		{Verb: VerbCheckIndex, Key: "t/1", Index: 2},
		{Verb: VerbCheckNotExists, Key: "nope"},
		{Verb: VerbLock, Key: "l", Value: []byte("held"), Session: sess.ID},
		{Verb: VerbCheckSession, Key: "l", Session: sess.ID},
		{Verb: VerbUnlock, Key: "l", Value: []byte("free"), Session: sess.ID},
		{Verb: VerbDelete, Key: "t/2"},
		{Verb: VerbDeleteCAS, Key: "t/1", Index: 2},
		{Verb: VerbDeleteTree, Key: "gone/"},
	}})
	if !res.OK || res.Errors != nil {
		t.Fatalf("txn: OK %v errors %+v", res.OK, res.Errors)
	}
	var got []string
	for _, e := range res.Results {
		got = append(got, e.Key+"="+string(e.Value))
	}
	// Values only for get and get-tree, as Consul.
	want := []string{"n=", "x=", "n=new", "t/1=a", "t/2=b", "t/1=", "l=", "l=", "l="}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("txn results = %q, want %q", got, want)
	}
	idx := ts.idx
	ts.wantEntry("n", &Entry{Key: "n", Value: []byte("new"), Flags: 7, CreateIndex: idx, ModifyIndex: idx})
	ts.wantEntry("l", &Entry{Key: "l", Value: []byte("free"), CreateIndex: idx, ModifyIndex: idx, LockIndex: 1})
	ts.wantEntry("t/1", nil)
	ts.wantEntry("t/2", nil)
	if string(ts.get("x").Value) != "x2" {
		t.Fatal("cas in txn not applied")
	}
}

func TestTxnAllOrNothing(t *testing.T) {
	ts := newTState(t)
	ts.kv(VerbSet, "x", "1")
	ts.kv(VerbSet, "y", "1")
	before, _ := ts.s.List("")
	prefixIdx := ts.s.PrefixIndex("")

	ch, release := ts.s.watch.watch(watchPrefix, "")
	defer release()
	res := ts.do(Command{Type: CmdTxn, Ops: []KVOp{
		{Verb: VerbSet, Key: "x", Value: []byte("2")},
		{Verb: VerbCAS, Key: "y", Value: []byte("2"), Index: 99},
		{Verb: VerbDelete, Key: "y"},
		{Verb: VerbGet, Key: "missing"},
		{Verb: VerbCheckNotExists, Key: "x"},
		{Verb: VerbCheckIndex, Key: "x", Index: 1},
		{Verb: VerbLock, Key: "z", Session: "no-such-session"},
		{Verb: VerbSet, Key: "z", Value: []byte("2")},
	}})
	if res.OK || res.Results != nil {
		t.Fatalf("failed txn: OK %v results %d, want false and none", res.OK, len(res.Results))
	}
	want := []TxnError{
		{1, `failed to set key "y", index is stale`},
		{3, `key "missing" doesn't exist`},
		{4, `key "x" exists`},
		// check-index sees op 0's write: x is at the txn's index now.
		{5, "current modify index 3 != 1"},
		{6, `invalid session "no-such-session"`},
	}
	if !reflect.DeepEqual(res.Errors, want) {
		t.Fatalf("errors = %+v\nwant %+v", res.Errors, want)
	}
	after, _ := ts.s.List("")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("rolled-back txn changed the store:\n%+v\n%+v", before, after)
	}
	if got := ts.s.PrefixIndex(""); got != prefixIdx {
		t.Fatalf("index after rolled-back txn = %d, want %d", got, prefixIdx)
	}
	select {
	case <-ch:
		t.Fatal("rolled-back txn woke a watcher")
	default:
	}
}

func TestReadTxn(t *testing.T) {
	ts := newTState(t)
	ts.kv(VerbSet, "a", "1")
	res, idx, err := ts.s.ReadTxn([]KVOp{{Verb: VerbGet, Key: "a"}, {Verb: VerbCheckIndex, Key: "a", Index: 1}})
	if err != nil || !res.OK || len(res.Results) != 2 || idx != 1 {
		t.Fatalf("ReadTxn = %+v, %d, %v", res, idx, err)
	}
	if _, _, err := ts.s.ReadTxn([]KVOp{{Verb: VerbSet, Key: "a"}}); !errors.Is(err, ErrNotReadOnly) {
		t.Fatalf("ReadTxn with set: err %v, want ErrNotReadOnly", err)
	}
	res, _, _ = ts.s.ReadTxn([]KVOp{{Verb: VerbGet, Key: "b"}})
	if res.OK || len(res.Errors) != 1 {
		t.Fatalf("ReadTxn get of a missing key = %+v, want one error", res)
	}
}

func TestLocks(t *testing.T) {
	ts := newTState(t)
	s1 := ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s1", Node: "n1"}}).Session
	s2 := ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s2", Node: "n2"}}).Session
	if s1.Behavior != BehaviorRelease || s1.CreateIndex != 1 {
		t.Fatalf("created session = %+v, want behavior release at 1", s1)
	}

	r := ts.kv(VerbLock, "k", "v1", withSession("s1"))
	if !r.OK {
		t.Fatal("acquire by s1: got false")
	}
	acq := ts.idx
	ts.wantEntry("k", &Entry{Key: "k", Value: []byte("v1"), CreateIndex: acq, ModifyIndex: acq, LockIndex: 1, Session: "s1"})

	t.Run("holder re-acquires without incrementing", func(t *testing.T) {
		if !ts.kv(VerbLock, "k", "v2", withSession("s1")).OK {
			t.Fatal("re-acquire: got false")
		}
		ts.wantEntry("k", &Entry{Key: "k", Value: []byte("v2"), CreateIndex: acq, ModifyIndex: ts.idx, LockIndex: 1, Session: "s1"})
	})
	t.Run("other session cannot acquire", func(t *testing.T) {
		if ts.kv(VerbLock, "k", "x", withSession("s2")).OK {
			t.Fatal("acquire by s2 of a held lock: got true")
		}
	})
	t.Run("plain set on a locked key", func(t *testing.T) {
		if !ts.kv(VerbSet, "k", "v3").OK {
			t.Fatal("set on a locked key: got false")
		}
		ts.wantEntry("k", &Entry{Key: "k", Value: []byte("v3"), CreateIndex: acq, ModifyIndex: ts.idx, LockIndex: 1, Session: "s1"})
	})
	t.Run("release by non-holder fails", func(t *testing.T) {
		if ts.kv(VerbUnlock, "k", "x", withSession("s2")).OK {
			t.Fatal("release by s2: got true")
		}
	})
	t.Run("release by holder", func(t *testing.T) {
		if !ts.kv(VerbUnlock, "k", "v4", withSession("s1")).OK {
			t.Fatal("release by s1: got false")
		}
		ts.wantEntry("k", &Entry{Key: "k", Value: []byte("v4"), CreateIndex: acq, ModifyIndex: ts.idx, LockIndex: 1})
		if got := ts.s.SessionLocks("s1"); len(got) != 0 {
			t.Fatalf("s1 still holds %q", got)
		}
	})
	t.Run("next acquire increments LockIndex", func(t *testing.T) {
		if !ts.kv(VerbLock, "k", "v5", withSession(s2.ID)).OK {
			t.Fatal("acquire by s2: got false")
		}
		if e := ts.get("k"); e.LockIndex != 2 || e.Session != "s2" {
			t.Fatalf("after s2 acquires: %+v, want LockIndex 2 Session s2", e)
		}
	})
	t.Run("unknown session is an error", func(t *testing.T) {
		_, err := ts.try(Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "k2", Session: "nope"}})
		if !errors.Is(err, ErrInvalidSession) {
			t.Fatalf("acquire with unknown session: err %v, want ErrInvalidSession", err)
		}
	})
	t.Run("delete of a held key drops the lock", func(t *testing.T) {
		ts.kv(VerbLock, "k3", "v", withSession("s1"))
		ts.kv(VerbDelete, "k3", "")
		if got := ts.s.SessionLocks("s1"); len(got) != 0 {
			t.Fatalf("s1 still holds %q after delete", got)
		}
	})
	t.Run("duplicate session ID", func(t *testing.T) {
		_, err := ts.try(Command{Type: CmdSessionCreate, Session: Session{ID: "s1"}})
		if !errors.Is(err, ErrSessionExists) {
			t.Fatalf("create s1 again: err %v, want ErrSessionExists", err)
		}
	})
}

func TestSessionInvalidation(t *testing.T) {
	ts := newTState(t)
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "rel", LockDelay: 10 * time.Second}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "del", Behavior: BehaviorDelete}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "other"}})
	ts.kv(VerbLock, "r/1", "v", withSession("rel"))
	ts.kv(VerbLock, "r/2", "v", withSession("rel"))
	ts.kv(VerbLock, "d/1", "v", withSession("del"))
	ts.kv(VerbSet, "plain", "v")

	sessIdx := ts.s.load().sessionsIndex
	ch, release := ts.s.watch.watch(watchTable, tableSessions)
	defer release()

	res := ts.do(Command{Type: CmdSessionDestroy, Session: Session{ID: "rel"}})
	destroyedAt := ts.idx
	if !res.OK {
		t.Fatal("destroy: got false")
	}
	for _, k := range []string{"r/1", "r/2"} {
		e := ts.get(k)
		if e == nil || e.Session != "" || e.ModifyIndex != destroyedAt || e.LockIndex != 1 {
			t.Fatalf("%s after release-behavior invalidation = %+v", k, e)
		}
	}
	if x, idx := ts.s.Session("rel"); x != nil || idx != destroyedAt || idx <= sessIdx {
		t.Fatalf("Session(rel) = %+v at %d, want nil at %d", x, idx, destroyedAt)
	}
	select {
	case <-ch:
	default:
		t.Fatal("destroy did not wake session watchers")
	}

	t.Run("lock-delay", func(t *testing.T) {
		if until := ts.s.LockDelay("r/1"); !until.Equal(ts.now.Add(10 * time.Second)) {
			t.Fatalf("LockDelay(r/1) = %v, want %v", until, ts.now.Add(10*time.Second))
		}
		ts.now = ts.now.Add(time.Second)
		if ts.kv(VerbLock, "r/1", "v", withSession("other")).OK {
			t.Fatal("acquire during lock-delay: got true")
		}
		// A plain write is not held back.
		if !ts.kv(VerbSet, "r/1", "w").OK {
			t.Fatal("set during lock-delay: got false")
		}
		ts.now = ts.now.Add(10 * time.Second)
		if !ts.kv(VerbLock, "r/1", "v", withSession("other")).OK {
			t.Fatal("acquire after lock-delay: got false")
		}
	})
	t.Run("delete behavior", func(t *testing.T) {
		ts.do(Command{Type: CmdSessionDestroy, Session: Session{ID: "del"}})
		ts.wantEntry("d/1", nil)
		if ts.get("plain") == nil {
			t.Fatal("invalidation deleted a key the session did not hold")
		}
	})
	t.Run("destroying a missing session", func(t *testing.T) {
		if ts.do(Command{Type: CmdSessionDestroy, Session: Session{ID: "del"}}).OK {
			t.Fatal("destroy of a missing session: got true")
		}
	})
	t.Run("lists", func(t *testing.T) {
		ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "n2a", Node: "n2"}})
		all, _ := ts.s.Sessions()
		n2, _ := ts.s.NodeSessions("n2")
		if len(all) != 2 || len(n2) != 1 || n2[0].ID != "n2a" {
			t.Fatalf("Sessions = %d, NodeSessions(n2) = %+v", len(all), n2)
		}
	})
}

func TestCommandValidate(t *testing.T) {
	big := strings.Repeat("k", MaxKeySize+1)
	cases := []struct {
		name string
		c    Command
		want error
	}{
		{"ok set", Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "a"}}, nil},
		{"read verb alone", Command{Type: CmdKV, KV: KVOp{Verb: VerbGet, Key: "a"}}, ErrInvalidCommand},
		{"unknown verb", Command{Type: CmdKV, KV: KVOp{Verb: "frob", Key: "a"}}, ErrInvalidCommand},
		{"empty key", Command{Type: CmdKV, KV: KVOp{Verb: VerbSet}}, ErrInvalidCommand},
		{"delete-tree of everything", Command{Type: CmdKV, KV: KVOp{Verb: VerbDeleteTree}}, nil},
		{"key too large", Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: big}}, ErrKeyTooLarge},
		{"value too large", Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: "a", Value: make([]byte, MaxValueSize+1)}}, ErrValueTooLarge},
		{"lock without session", Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "a"}}, ErrInvalidCommand},
		{"too many ops", Command{Type: CmdTxn, Ops: make([]KVOp, MaxTxnOps+1)}, ErrTooManyOps},
		{"bad op in txn", Command{Type: CmdTxn, Ops: []KVOp{{Verb: VerbGet, Key: "a"}, {Verb: "x"}}}, ErrInvalidCommand},
		{"session behavior", Command{Type: CmdSessionCreate, Session: Session{Behavior: "explode"}}, ErrInvalidCommand},
		{"lock-delay too long", Command{Type: CmdSessionCreate, Session: Session{LockDelay: time.Hour}}, ErrInvalidSessionTTL},
		{"destroy without ID", Command{Type: CmdSessionDestroy}, ErrInvalidCommand},
		{"unknown type", Command{Type: 99}, ErrInvalidCommand},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.c.Validate()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Validate() = %v, want %v", err, c.want)
			}
		})
	}
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(delay)
	}
}
