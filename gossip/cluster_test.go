package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClusterForms(t *testing.T) {
	nodes := makeCluster(t, 5, func(i int, c *Config) {
		c.Tags[TagHTTPPort] = fmt.Sprint(8500 + i)
	})
	for _, nd := range nodes {
		ms := nd.Members()
		if len(ms) != 5 {
			t.Fatalf("%s: %d members, want 5", nd.name, len(ms))
		}
		for i, m := range ms {
			want := fmt.Sprintf("node%d", i) // sorted by name
			if m.Name != want {
				t.Errorf("%s: member %d is %s, want %s", nd.name, i, m.Name, want)
			}
			if m.Status != StatusAlive {
				t.Errorf("%s: %s is %s, want alive", nd.name, m.Name, m.Status)
			}
			wantTags := map[string]string{TagRole: "node", TagDatacenter: "dc1", TagID: "id-" + want, TagHTTPPort: fmt.Sprint(8500 + i)}
			if fmt.Sprint(m.Tags) != fmt.Sprint(wantTags) {
				t.Errorf("%s: %s tags %v, want %v", nd.name, m.Name, m.Tags, wantTags)
			}
			if got := net.JoinHostPort(m.Addr.String(), fmt.Sprint(m.Port)); got != nodes[i].addr {
				t.Errorf("%s: %s at %s, want %s", nd.name, m.Name, got, nodes[i].addr)
			}
			if m.ProtocolCur == 0 || m.DelegateCur != metaVersion {
				t.Errorf("%s: %s protocol %d delegate %d", nd.name, m.Name, m.ProtocolCur, m.DelegateCur)
			}
		}
		if lm := nd.LocalMember(); lm.Name != nd.name || lm.Status != StatusAlive {
			t.Errorf("%s: LocalMember = %s %s", nd.name, lm.Name, lm.Status)
		}
	}
	// Metrics on the node's own registry.
	n0 := nodes[0]
	if err := testutil.GatherAndCompare(n0.reg, strings.NewReader(`
# HELP outrigger_gossip_members Members known to this agent, by status.
# TYPE outrigger_gossip_members gauge
outrigger_gossip_members{status="alive"} 5
outrigger_gossip_members{status="failed"} 0
outrigger_gossip_members{status="leaving"} 0
outrigger_gossip_members{status="left"} 0
`), "outrigger_gossip_members"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(n0.met.events.WithLabelValues("join")); got < 5 {
		t.Errorf("join events counted: %v, want >= 5", got)
	}
	if n, err := testutil.GatherAndCount(n0.reg, "outrigger_gossip_health_score", "outrigger_gossip_sent_bytes_total"); err != nil || n != 3 {
		t.Errorf("health and sent-bytes series: %d, %v; want 3", n, err)
	}
	if s := n0.Stats(); s.SentPacketBytes == 0 || s.SentStreamBytes == 0 {
		t.Errorf("Stats = %+v, want bytes sent on both transports", s)
	}
}

func TestFailedMemberDetected(t *testing.T) {
	nodes := makeCluster(t, 5, nil)
	victim, others := nodes[4], nodes[:4]
	var subs []<-chan Event
	for _, o := range others {
		ch, cancel := o.Subscribe(16)
		t.Cleanup(cancel)
		subs = append(subs, ch)
	}

	start := time.Now()
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, others, victim.name, StatusFailed, 30*time.Second)
	t.Logf("all 4 saw %s failed after %v", victim.name, time.Since(start).Round(time.Millisecond))

	for i, ch := range subs {
		ev := waitEvent(t, ch, EventFailed, victim.name, 5*time.Second)
		if ev.Member.Status != StatusFailed || ev.Member.Tags[TagID] != "id-node4" {
			t.Errorf("%s: event member %+v", others[i].name, ev.Member)
		}
	}
	for _, o := range others {
		line, ok := o.logs.find("member failed", "name=node4", "addr="+victim.addr)
		if !ok {
			t.Errorf("%s did not log the failure", o.name)
		} else if !strings.Contains(line, "level=WARN") {
			t.Errorf("%s: failure logged as %q, want level WARN", o.name, line)
		}
		if got := o.NumAlive(); got != 4 {
			t.Errorf("%s: NumAlive = %d, want 4", o.name, got)
		}
		if got := len(o.Members()); got != 5 {
			t.Errorf("%s: %d members listed, want 5 (failed ones stay until reaped)", o.name, got)
		}
	}
	if got := victim.Shutdown(); got != nil {
		t.Errorf("second Shutdown: %v", got)
	}
}

func TestLeftMember(t *testing.T) {
	nodes := makeCluster(t, 5, nil)
	leaver, others := nodes[2], append(append([]*testNode{}, nodes[:2]...), nodes[3:]...)
	ch, cancel := others[0].Subscribe(16)
	defer cancel()

	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if st := leaver.LocalMember().Status; st != StatusLeft {
		t.Errorf("leaver's own status %s, want left", st)
	}
	waitStatus(t, others, leaver.name, StatusLeft, 10*time.Second)
	waitEvent(t, ch, EventLeave, leaver.name, 5*time.Second)
	for _, o := range others {
		if _, ok := o.logs.find("member left", "name=node2"); !ok {
			t.Errorf("%s did not log the leave", o.name)
		}
	}
	if err := leaver.Leave(ctx); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := leaver.SetTags(map[string]string{"a": "b"}); !errors.Is(err, ErrLeft) {
		t.Errorf("SetTags after Leave = %v, want ErrLeft", err)
	}
	// After Shutdown it still reads as left, not failed.
	if err := leaver.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Nothing to wait for: memberlist never probes a member that left.
	for _, o := range others {
		if m, _ := o.Member(leaver.name); m.Status != StatusLeft {
			t.Errorf("%s sees %s %s after its shutdown, want left", o.name, leaver.name, m.Status)
		}
	}
	if err := leaver.Leave(ctx); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown = %v, want ErrShutdown", err)
	}
}

func TestSetTags(t *testing.T) {
	nodes := makeCluster(t, 2, nil)
	ch, cancel := nodes[1].Subscribe(4)
	defer cancel()
	if err := nodes[0].SetTags(map[string]string{TagRole: "consul", TagServerPort: "8300"}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ch, EventUpdate, "node0", 10*time.Second)
	if ev.Member.Tags[TagRole] != "consul" || ev.Member.Tags[TagServerPort] != "8300" {
		t.Errorf("update event tags %v", ev.Member.Tags)
	}
	if m, _ := nodes[1].Member("node0"); m.Tags[TagRole] != "consul" {
		t.Errorf("node1 sees node0 tags %v", m.Tags)
	}
	if m := nodes[0].LocalMember(); m.Tags[TagRole] != "consul" {
		t.Errorf("node0's own tags %v", m.Tags)
	}
	big := map[string]string{"x": strings.Repeat("y", 600)}
	if err := nodes[0].SetTags(big); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("SetTags(600 bytes) = %v, want ErrTagsTooLarge", err)
	}
}

func TestNewPortInUse(t *testing.T) {
	a := startNode(t, testConfig("a"))
	_, port := a.Addr()
	cfg := testConfig("b")
	cfg.BindPort = port
	_, err := New(cfg)
	want := fmt.Sprintf("gossip: bind 127.0.0.1:%d: address already in use", port)
	if err == nil || err.Error() != want {
		t.Fatalf("New on a used port: %v, want %q", err, want)
	}
	if !errors.Is(err, ErrAddrInUse) {
		t.Errorf("error does not wrap ErrAddrInUse")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig("a")
	cfg.SecretKey = []byte("short")
	if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with a 5-byte key: %v, want ErrInvalidConfig", err)
	}
}

func TestJoinErrors(t *testing.T) {
	a := startNode(t, testConfig("a"))
	ctx := context.Background()
	if _, err := a.Join(ctx, nil); !errors.Is(err, ErrNoAddrs) {
		t.Errorf("Join(nil) = %v, want ErrNoAddrs", err)
	}
	if _, err := a.Join(ctx, []string{"1.2.3.4:99999"}); err == nil || !strings.Contains(err.Error(), "99999") {
		t.Errorf("Join(bad port) = %v", err)
	}
	// A port nobody listens on: connection refused, no key hint.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	n, err := a.Join(ctx, []string{closed})
	if n != 0 || err == nil || errors.Is(err, ErrKeyMismatch) || !strings.HasPrefix(err.Error(), "gossip: join: ") {
		t.Errorf("Join(closed port) = %d, %v", n, err)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Join(ctx, []string{closed}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown = %v, want ErrShutdown", err)
	}
	if err := a.SetTags(nil); !errors.Is(err, ErrShutdown) {
		t.Errorf("SetTags after Shutdown = %v, want ErrShutdown", err)
	}
	ch, cancel := a.Subscribe(1)
	if _, ok := <-ch; ok {
		t.Error("Subscribe after Shutdown: channel open")
	}
	cancel()
}

func TestShutdownClosesSubscriptions(t *testing.T) {
	a := startNode(t, testConfig("a"))
	ch, cancel := a.Subscribe(0)
	defer cancel()
	ch2, cancel2 := a.Subscribe(0)
	cancel2()
	if _, ok := <-ch2; ok {
		t.Error("channel open after unsubscribe")
	}
	cancel2() // idempotent
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range ch { // drains, then ends because Shutdown closed it
	}
}

func TestReapLoopForgetsFailedMembers(t *testing.T) {
	nodes := makeCluster(t, 3, func(i int, c *Config) {
		c.ReapFailed = 300 * time.Millisecond
		c.ReapInterval = 50 * time.Millisecond
	})
	ch, cancel := nodes[0].Subscribe(8)
	defer cancel()
	nodes[2].Shutdown()
	waitEvent(t, ch, EventFailed, "node2", 30*time.Second)
	ev := waitEvent(t, ch, EventReap, "node2", 10*time.Second)
	if ev.Member.Status != StatusFailed {
		t.Errorf("reaped member status %s, want failed", ev.Member.Status)
	}
	if _, ok := nodes[0].Member("node2"); ok {
		t.Error("node2 still listed after reaping")
	}
	if _, ok := nodes[0].logs.find("member reaped", "name=node2", "status=failed"); !ok {
		t.Error("reap not logged")
	}
}
