package gossip

import (
	"net"
	"testing"
	"time"
)

func member(name string, tags map[string]string) Member {
	return Member{Name: name, Addr: net.IPv4(10, 0, 0, 1), Port: 8301, Tags: tags}
}

func TestTableTransitions(t *testing.T) {
	t0 := time.Unix(0, 0)
	tb := newMemberTable("self")
	step := func(what string, ev Event, ok bool, wantType EventType, wantStatus Status) {
		t.Helper()
		if wantType == 0 {
			if ok {
				t.Errorf("%s: unexpected event %v", what, ev.Type)
			}
			return
		}
		if !ok || ev.Type != wantType || ev.Member.Status != wantStatus {
			t.Errorf("%s: event %v %v (ok %v), want %v %v", what, ev.Type, ev.Member.Status, ok, wantType, wantStatus)
		}
	}
	ev, ok := tb.alive(member("self", nil), 1, t0)
	step("self joins", ev, ok, EventJoin, StatusAlive)
	ev, ok = tb.alive(member("a", map[string]string{"r": "1"}), 7, t0)
	step("a joins", ev, ok, EventJoin, StatusAlive)
	ev, ok = tb.alive(member("a", map[string]string{"r": "1"}), 7, t0)
	step("a alive again, unchanged", ev, ok, 0, 0)
	ev, ok = tb.alive(member("a", map[string]string{"r": "2"}), 7, t0)
	step("a new tags", ev, ok, EventUpdate, StatusAlive)
	if m, _ := tb.get("a"); m.Tags["r"] != "2" {
		t.Errorf("tags not updated: %v", m.Tags)
	}

	ev, ok = tb.gone(member("a", nil), 7, false, t0.Add(time.Second))
	step("a gone without intent", ev, ok, EventFailed, StatusFailed)
	if m, _ := tb.get("a"); m.Tags["r"] != "2" || m.Since != t0.Add(time.Second) {
		t.Errorf("failed member lost its tags or time: %+v", m)
	}
	ev, ok = tb.gone(member("a", nil), 7, false, t0.Add(2*time.Second))
	step("a gone twice", ev, ok, 0, 0)
	ev, emit, changed := tb.leaveIntent("a", 7, t0)
	step("late intent", ev, emit, EventLeave, StatusLeft)
	if !changed {
		t.Error("late intent: not reported as news")
	}

	ev, ok = tb.alive(member("a", nil), 8, t0)
	step("a rejoins", ev, ok, EventJoin, StatusAlive)
	if _, emit, changed = tb.leaveIntent("a", 7, t0); emit || changed {
		t.Error("intent from the previous run applied")
	}
	if _, emit, changed = tb.leaveIntent("a", 8, t0); emit || !changed {
		t.Error("intent: alive should become leaving without an event")
	}
	if m, _ := tb.get("a"); m.Status != StatusLeaving {
		t.Errorf("a is %s, want leaving", m.Status)
	}
	if _, _, changed = tb.leaveIntent("a", 8, t0); changed {
		t.Error("repeated intent reported as news")
	}
	ev, ok = tb.gone(member("a", nil), 8, false, t0)
	step("leaving member gone", ev, ok, EventLeave, StatusLeft)

	if _, ok := tb.gone(member("self", nil), 1, false, t0); ok {
		t.Error("the local member was marked gone by memberlist")
	}
	if _, _, changed := tb.leaveIntent("self", 1, t0); changed {
		t.Error("own intent applied")
	}
	tb.setLocalStatus(StatusLeaving, t0)
	if got := tb.numAlive(); got != 0 {
		t.Errorf("numAlive = %d while the only other member left and we leave", got)
	}
	ev, ok = tb.alive(member("self", map[string]string{"x": "y"}), 1, t0)
	step("own tags change while leaving", ev, ok, EventUpdate, StatusLeaving)
}

func TestTableRestartedWhileLeaving(t *testing.T) {
	tb := newMemberTable("self")
	t0 := time.Unix(0, 0)
	tb.alive(member("a", nil), 1, t0)
	tb.leaveIntent("a", 1, t0)
	// memberlist reports a new run of a with a new run ID before it saw it go.
	ev, ok := tb.alive(member("a", nil), 2, t0)
	if !ok || ev.Type != EventUpdate || ev.Member.Status != StatusAlive {
		t.Errorf("restarted member: %v %v %v, want update to alive", ev.Type, ev.Member.Status, ok)
	}
}

func TestReap(t *testing.T) {
	t0 := time.Unix(0, 0)
	tb := newMemberTable("self")
	tb.alive(member("self", nil), 1, t0)
	for _, n := range []string{"alive", "failed", "left", "failed-recent"} {
		tb.alive(member(n, nil), 1, t0)
	}
	tb.gone(member("failed", nil), 1, false, t0)
	tb.gone(member("left", nil), 1, true, t0)
	tb.gone(member("failed-recent", nil), 1, false, t0.Add(2*time.Hour))

	if evs := tb.reap(t0.Add(time.Hour), 3*time.Hour, 2*time.Hour); len(evs) != 0 {
		t.Fatalf("reaped too early: %v", evs)
	}
	evs := tb.reap(t0.Add(3*time.Hour), 3*time.Hour, 2*time.Hour)
	if len(evs) != 2 || evs[0].Member.Name != "failed" || evs[1].Member.Name != "left" ||
		evs[0].Type != EventReap || evs[0].Member.Status != StatusFailed || evs[1].Member.Status != StatusLeft {
		t.Fatalf("reap at 3h: %+v", evs)
	}
	if got := len(tb.list()); got != 3 {
		t.Errorf("%d members left after reaping, want 3", got)
	}
	evs = tb.reap(t0.Add(5*time.Hour), 3*time.Hour, 2*time.Hour)
	if len(evs) != 1 || evs[0].Member.Name != "failed-recent" {
		t.Errorf("reap at 5h: %+v", evs)
	}
	tb.setLocalStatus(StatusLeft, t0)
	if evs := tb.reap(t0.Add(100*time.Hour), time.Hour, time.Hour); len(evs) != 0 {
		t.Errorf("the local member was reaped: %+v", evs)
	}
}

func TestTablePeers(t *testing.T) {
	t0 := time.Unix(0, 0)
	tb := newMemberTable("self")
	tb.alive(member("self", nil), 1, t0)
	for i, n := range []string{"a", "b", "c", "d"} {
		m := member(n, nil)
		m.Port = uint16(9000 + i)
		tb.alive(m, 1, t0.Add(time.Duration(i)*time.Second))
	}
	tb.gone(member("b", nil), 1, false, t0) // failed: kept, after the alive ones
	tb.gone(member("c", nil), 1, true, t0)  // left: dropped
	got := tb.peers(10)
	if len(got) != 3 || got[0].Name != "d" || got[1].Name != "a" || got[2].Name != "b" {
		t.Fatalf("peers = %+v", got)
	}
	if got[0].Addr != "10.0.0.1:9003" {
		t.Errorf("addr %q", got[0].Addr)
	}
	if got := tb.peers(1); len(got) != 1 {
		t.Errorf("limit ignored: %v", got)
	}
}

func TestMemberCloneIsDeep(t *testing.T) {
	tb := newMemberTable("self")
	tb.alive(member("a", map[string]string{"k": "v"}), 1, time.Unix(0, 0))
	ms := tb.list()
	ms[0].Tags["k"] = "changed"
	ms[0].Addr[0] = 99
	if m, _ := tb.get("a"); m.Tags["k"] != "v" || m.Addr[0] == 99 {
		t.Errorf("caller's changes leaked into the table: %+v", m)
	}
}
