package compose

import (
	"bytes"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// These tests break the servers; each restores the cluster and waits until
// it is whole again before it returns. They run after compose_test.go's.

// raftServer is one entry of /v1/operator/raft/configuration.
type raftServer struct {
	ID, Node, Address string
	Leader, Voter     bool
}

func (c *cluster) raftConfig(node string, stale bool) ([]raftServer, error) {
	addr, err := c.httpAddr(node)
	if err != nil {
		return nil, err
	}
	q := ""
	if stale {
		q = "?stale"
	}
	var cfg struct{ Servers []raftServer }
	if err := getJSON(addr, "/v1/operator/raft/configuration"+q, &cfg); err != nil {
		return nil, err
	}
	return cfg.Servers, nil
}

func raftIDs(cfg []raftServer) map[string]string {
	m := map[string]string{}
	for _, s := range cfg {
		m[s.Node] = s.ID
	}
	return m
}

func others(of string) []string {
	var o []string
	for _, s := range servers {
		if s != of {
			o = append(o, s)
		}
	}
	return o
}

// waitLeaderAmong waits until the given servers agree on one leader other
// than not, and returns it.
func (c *cluster) waitLeaderAmong(t *testing.T, timeout time.Duration, among []string, not string) string {
	t.Helper()
	var leader string
	testutil.WaitFor(t, timeout, fmt.Sprintf("%v to agree on a leader other than %s", among, not), func() error {
		var ls []string
		for _, s := range among {
			l, err := c.leader(s)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			if l != ls[0] || l == not {
				return fmt.Errorf("leaders seen: %v", ls)
			}
		}
		leader = ls[0]
		return nil
	})
	return leader
}

// checkNoLoss reads every acknowledged key back (consistent mode) and
// fails the test for each one missing.
func checkNoLoss(t *testing.T, c *cluster, w *writer, node string) (acked int) {
	t.Helper()
	missing, acked, err := w.lost(node, "consistent", c)
	if err != nil {
		t.Fatalf("reading the written keys back through %s: %v", node, err)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes lost, e.g. %v", len(missing), acked, missing[:min(5, len(missing))])
	}
	return acked
}

// 4. The leader's container killed with SIGKILL: the two others elect a
// new leader, writes through a client agent resume, and the killed
// server, started again, rejoins as the same Raft server with its data.
// No acknowledged write is lost.
func TestLeaderKilled(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	web1, err := c.httpAddr("web1")
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.raftConfig("web1", false)
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(web1, "leaderkill")
	halted := false
	defer func() {
		if !halted {
			w.halt()
		}
	}()
	w.waitAcks(t, 20, 30*time.Second, "writes through web1's sidecar")

	old, err := c.leader("web1")
	if err != nil {
		t.Fatal(err)
	}
	ackedBefore, failedBefore, _ := w.snapshot()
	started := false
	defer func() {
		if !started { // a failure before the restart: leave it running
			_, _ = docker(60*time.Second, "start", c.id(old))
		}
	}()
	kill := time.Now()
	if _, err := docker(30*time.Second, "kill", "-s", "KILL", c.id(old)); err != nil {
		t.Fatal(err)
	}
	nl := c.waitLeaderAmong(t, 30*time.Second, others(old), old)
	failover := time.Since(kill)
	w.waitAcks(t, 20, 30*time.Second, "writes to resume after the leader was killed")
	resumedAt := time.Since(kill)
	gap := w.gapAround(kill, time.Now())
	_, failedNow, _ := w.snapshot()
	verdict := "met"
	if failover > 5*time.Second {
		verdict = "missed"
	}

	// The killed server started again: it answers from its own state (the
	// keys acknowledged before the kill) and rejoins as the same server.
	started = true
	if _, err := docker(60*time.Second, "start", c.id(old)); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	var ownKeys int
	testutil.WaitFor(t, 60*time.Second, old+" serving stale reads again", func() error {
		addr, err := c.httpAddr(old)
		if err != nil {
			return err
		}
		keys, err := kvKeys(addr, "leaderkill/", "stale")
		if err != nil {
			return err
		}
		w.mu.Lock()
		pre := append([]string(nil), w.acked[:ackedBefore]...)
		w.mu.Unlock()
		ownKeys = 0
		for _, k := range pre {
			if keys[k] {
				ownKeys++
			}
		}
		if ownKeys != len(pre) {
			return fmt.Errorf("%s holds %d of the %d keys acknowledged before it was killed", old, ownKeys, len(pre))
		}
		return nil
	})
	c.waitWhole(t, 2*time.Minute)
	back := time.Since(restarted)
	after, err := c.raftConfig(old, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := raftIDs(before), raftIDs(after); len(a) != 3 || a[old] != b[old] {
		t.Errorf("Raft configuration after the restart: %v, want the same 3 servers as before %v", a, b)
	}
	w.waitAcks(t, 10, 30*time.Second, "writes with the old leader back")
	w.halt()
	halted = true
	acked := checkNoLoss(t, c, w, "api1")
	_, failed, _ := w.snapshot()
	t.Logf("FIGURE compose leader kill: %s killed (SIGKILL), new leader %s after %v (goal < 5s %s); writes through a client agent resumed after %v, longest write gap %v, %d writes failed meanwhile (%s)",
		old, nl, failover.Round(time.Millisecond), verdict, resumedAt.Round(time.Millisecond), gap.Round(time.Millisecond), failedNow-failedBefore, w.errSummary())
	t.Logf("FIGURE compose leader kill: %s restarted served all %d keys acknowledged before the kill from its own state; cluster whole %v after its start; acknowledged writes %d, lost %d, failed (unknown outcome) %d",
		old, ownKeys, back.Round(time.Millisecond), acked, len(mustLost(t, c, w)), failed)
}

func mustLost(t *testing.T, c *cluster, w *writer) []string {
	t.Helper()
	missing, _, err := w.lost("api1", "consistent", c)
	if err != nil {
		t.Fatal(err)
	}
	return missing
}

// 5. One server cut off with `docker network disconnect` (the leader, the
// harder case): the two others elect a leader and keep taking writes; the
// cut-off one refuses writes with an error naming the missing leader and
// still serves ?stale reads; reconnected, it converges.
func TestPartitionedServer(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	web1, err := c.httpAddr("web1")
	if err != nil {
		t.Fatal(err)
	}
	netName, err := c.network()
	if err != nil {
		t.Fatal(err)
	}
	if err := kvPut(httpClient, web1, "partition/before", "written-before"); err != nil {
		t.Fatal(err)
	}
	w := startWriter(web1, "partition")
	halted := false
	defer func() {
		if !halted {
			w.halt()
		}
	}()
	w.waitAcks(t, 20, 30*time.Second, "writes through web1's sidecar")

	victim, err := c.leader("web1")
	if err != nil {
		t.Fatal(err)
	}
	ipBefore, err := c.ip(victim)
	if err != nil {
		t.Fatal(err)
	}
	reconnected := false
	reconnect := func() {
		if reconnected {
			return
		}
		reconnected = true
		if _, err := docker(30*time.Second, "network", "connect", "--alias", victim, netName, c.id(victim)); err != nil {
			t.Errorf("reconnecting %s: %v", victim, err)
		}
	}
	defer reconnect()
	cut := time.Now()
	if _, err := docker(30*time.Second, "network", "disconnect", netName, c.id(victim)); err != nil {
		t.Fatal(err)
	}
	majority := others(victim)
	nl := c.waitLeaderAmong(t, 30*time.Second, majority, victim)
	election := time.Since(cut)
	w.waitAcks(t, 20, 30*time.Second, "writes through web1's sidecar to resume with the majority")
	resumed := time.Since(cut)
	// A write straight to a majority server, too.
	maddr, err := c.httpAddr(majority[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := kvPut(httpClient, maddr, "partition/majority", "yes"); err != nil {
		t.Fatalf("write through majority server %s: %v", majority[0], err)
	}

	// The minority refuses writes, with an error that says why.
	refuseStart := time.Now()
	out, err := c.agentExec(60*time.Second, victim, "kv", "put", "partition/minority", "must-not-be-acknowledged")
	refuseTook := time.Since(refuseStart)
	if err == nil {
		t.Fatalf("cut-off %s acknowledged a write: %q", victim, out)
	}
	if !strings.Contains(strings.ToLower(out), "leader") {
		t.Errorf("cut-off %s refused the write with %q, want an error naming the missing leader", victim, strings.TrimSpace(out))
	}
	refusal := firstLine(out)
	// ... and a default (leader) read likewise, but it serves stale reads.
	if out, err := c.agentExec(60*time.Second, victim, "kv", "get", "partition/before"); err == nil {
		t.Errorf("cut-off %s answered a default read without a leader: %q", victim, out)
	}
	out, err = c.agentExec(60*time.Second, victim, "kv", "get", "-stale", "partition/before")
	if err != nil || strings.TrimSpace(out) != "written-before" {
		t.Fatalf("cut-off %s stale read: %q %v, want written-before", victim, out, err)
	}
	ackedDuring, _, _ := w.snapshot()
	partitioned := time.Since(cut)

	heal := time.Now()
	reconnect()
	ipAfter, err := c.ip(victim)
	if err != nil {
		t.Fatal(err)
	}
	if ipAfter != ipBefore {
		t.Logf("%s came back with address %s (was %s)", victim, ipAfter, ipBefore)
	}
	// Converged: it follows the leader and holds what the majority wrote.
	testutil.WaitFor(t, 60*time.Second, victim+" to converge after the partition healed", func() error {
		l, err := c.leader(victim)
		if err != nil {
			return err
		}
		if l == victim {
			return fmt.Errorf("%s still calls itself leader", victim)
		}
		addr, err := c.httpAddr(victim)
		if err != nil {
			return err
		}
		if v, err := kvGet(addr, "partition/majority", "stale"); err != nil || v != "yes" {
			return fmt.Errorf("%s stale read of partition/majority: %q %v", victim, v, err)
		}
		keys, err := kvKeys(addr, "partition/", "stale")
		if err != nil {
			return err
		}
		w.mu.Lock()
		need := append([]string(nil), w.acked[:ackedDuring]...)
		w.mu.Unlock()
		for _, k := range need {
			if !keys[k] {
				return fmt.Errorf("%s lacks %s", victim, k)
			}
		}
		return nil
	})
	converged := time.Since(heal)
	c.waitWhole(t, 2*time.Minute)
	w.waitAcks(t, 10, 30*time.Second, "writes after the partition healed")
	w.halt()
	halted = true
	acked := checkNoLoss(t, c, w, "api1")
	if v, err := kvGet(c.http, "partition/minority", "consistent"); err == nil {
		t.Logf("note: the write the cut-off server refused is in the store after all (%q); it was refused, not acknowledged, so no rule is broken", v)
	}
	_, failed, _ := w.snapshot()
	t.Logf("FIGURE compose partition: leader %s cut off; majority elected %s after %v, client writes resumed after %v; minority refused a write in %v (%q) and served stale reads; healed after %v, converged %v later; acknowledged %d, lost %d, failed %d (%s)",
		victim, nl, election.Round(time.Millisecond), resumed.Round(time.Millisecond), refuseTook.Round(time.Millisecond), refusal, partitioned.Round(time.Millisecond), converged.Round(time.Millisecond), acked, len(mustLost(t, c, w)), failed, w.errSummary())
}

// 6. The three servers restarted one at a time (docker restart: SIGTERM,
// then start) under continuous writes through a client agent: no
// acknowledged write is lost; the write gap of each restart is printed.
func TestRollingRestart(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	web1, err := c.httpAddr("web1")
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(web1, "rolling")
	halted := false
	defer func() {
		if !halted {
			w.halt()
		}
	}()
	w.waitAcks(t, 20, 30*time.Second, "writes through web1's sidecar")
	defer func() {
		if t.Failed() { // whatever step failed, leave every server running
			for _, s := range servers {
				_, _ = docker(60*time.Second, "start", c.id(s))
			}
		}
	}()
	var report []string
	for _, s := range servers {
		leader, err := c.leader("web1")
		if err != nil {
			t.Fatal(err)
		}
		_, failedBefore, _ := w.snapshot()
		start := time.Now()
		if _, err := docker(90*time.Second, "restart", "-t", "10", c.id(s)); err != nil {
			t.Fatal(err)
		}
		restartTook := time.Since(start)
		whole := c.waitWhole(t, 2*time.Minute)
		w.waitAcks(t, 10, 30*time.Second, "writes after restarting "+s)
		gap := w.gapAround(start, time.Now())
		_, failedNow, _ := w.snapshot()
		role := "follower"
		if leader == s {
			role = "leader"
		}
		report = append(report, fmt.Sprintf("%s (%s): restart %v, whole %v later, write gap %v, %d failed",
			s, role, restartTook.Round(time.Millisecond), whole.Round(time.Millisecond), gap.Round(time.Millisecond), failedNow-failedBefore))
	}
	w.halt()
	halted = true
	acked := checkNoLoss(t, c, w, "api2")
	_, failed, _ := w.snapshot()
	t.Logf("FIGURE compose rolling restart: %s; acknowledged %d, lost %d, failed %d (%s)",
		strings.Join(report, "; "), acked, len(mustLost(t, c, w)), failed, w.errSummary())
}

// 8. Every server stopped: the sidecars keep answering DNS from their last
// known view, web keeps reaching api through its upstream and the ingress
// keeps routing; K/V writes fail with an error naming the missing servers. The servers started again, the
// cluster is whole and writes work.
func TestAllServersStopped(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	ipsOf := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			ip, err := c.ip(n)
			if err != nil {
				t.Fatal(err)
			}
			m[ip] = true
		}
		return m
	}
	want := map[string]map[string]bool{
		"api.service.consul.": ipsOf("api1", "api2"),
		"web.service.consul.": ipsOf("web1", "web2"),
	}
	dnsAddr, appAddr := map[string]string{}, map[string]string{}
	for _, app := range apps {
		var err error
		if dnsAddr[app], err = c.published(app, "8600/udp"); err != nil {
			t.Fatal(err)
		}
		if appAddr[app], err = c.published(app, "8080/tcp"); err != nil {
			t.Fatal(err)
		}
	}
	// One round: every sidecar's DNS answers both names in full, and both
	// webs get an answer from api.
	round := func() error {
		for _, app := range apps {
			for name, ips := range want {
				got, err := lookupA(dnsAddr[app], name)
				if err != nil {
					return fmt.Errorf("%s's DNS: %v", app, err)
				}
				if !sameSet(got, ips) {
					return fmt.Errorf("%s's DNS: %s → %v, want %v", app, name, keys(got), keys(ips))
				}
			}
		}
		for _, web := range []string{"web1", "web2"} {
			code, body, err := httpGet("http://" + appAddr[web] + "/")
			if err != nil || code != 200 {
				return fmt.Errorf("GET %s: %d %q %v", web, code, body, err)
			}
		}
		code, body, err := httpGet("http://" + c.ingress + "/")
		if err != nil || code != 200 {
			return fmt.Errorf("GET through the ingress: %d %q %v", code, body, err)
		}
		return nil
	}
	if err := round(); err != nil { // also subscribes every view
		t.Fatal(err)
	}

	ipsBefore := map[string]string{}
	for _, s := range servers {
		ip, err := c.ip(s)
		if err != nil {
			t.Fatal(err)
		}
		ipsBefore[s] = ip
	}
	// Started again one by one in the order of their old addresses, each
	// gets its own back (Docker hands out the lowest free one), as servers
	// with fixed addresses would. Started in another order they may trade
	// addresses, and the cluster then takes about a minute to elect (see
	// the report of issue 7); that case is not what this test is about.
	order := append([]string(nil), servers...)
	sort.Slice(order, func(i, j int) bool {
		a, b := net.ParseIP(ipsBefore[order[i]]).To4(), net.ParseIP(ipsBefore[order[j]]).To4()
		return bytes.Compare(a, b) < 0
	})
	var ids []string
	for _, s := range order {
		ids = append(ids, c.id(s))
	}
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			if _, err := docker(90*time.Second, append([]string{"start"}, ids...)...); err != nil {
				t.Errorf("starting the servers again: %v", err)
			}
		}
	}
	defer restart()
	stop := time.Now()
	if _, err := docker(90*time.Second, append([]string{"stop", "-t", "10"}, ids...)...); err != nil {
		t.Fatal(err)
	}
	stopTook := time.Since(stop)
	// The sidecars see the servers gone.
	web1, err := c.httpAddr("web1")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "web1's sidecar to see every server failed", func() error {
		var ms []member
		if err := getJSON(web1, "/v1/agent/members", &ms); err != nil {
			return err
		}
		var up []string
		for _, m := range ms {
			if m.Tags["role"] == "consul" && m.Status == 1 {
				up = append(up, m.Name)
			}
		}
		if len(up) > 0 {
			return fmt.Errorf("servers still alive: %v", up)
		}
		return nil
	})
	detected := time.Since(stop)
	const rounds = 40
	failed := 0
	var firstErr error
	for i := 0; i < rounds; i++ {
		if err := round(); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
		time.Sleep(50 * time.Millisecond) // spread the rounds over a few seconds
	}
	if failed > 0 {
		t.Errorf("with every server stopped, %d of %d rounds failed; first: %v", failed, rounds, firstErr)
	}
	putErr := kvPut(httpClient, web1, "allstopped/x", "y")
	if putErr == nil {
		t.Errorf("a K/V write was acknowledged with every server stopped")
	}

	start := time.Now()
	restart()
	var moved []string
	for _, s := range servers {
		ip, err := c.ip(s)
		if err != nil {
			t.Fatal(err)
		}
		if ip != ipsBefore[s] {
			moved = append(moved, fmt.Sprintf("%s %s→%s", s, ipsBefore[s], ip))
		}
	}
	if len(moved) > 0 {
		t.Logf("servers came back at new addresses: %v", moved)
	}
	whole := c.waitWhole(t, 2*time.Minute)
	testutil.WaitFor(t, 30*time.Second, "a K/V write after the servers are back", func() error {
		return kvPut(httpClient, web1, "allstopped/x", "y")
	})
	t.Logf("FIGURE compose all servers stopped: docker stop took %v, sidecars saw them failed %v after it began; %d rounds (4 sidecars' DNS, 2 names each; both webs → api; ingress → web → api) failed %d; K/V write meanwhile: %v; servers started again: cluster whole after %v, writes after %v",
		stopTook.Round(time.Millisecond), detected.Round(time.Millisecond), rounds, failed, putErr, whole.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
