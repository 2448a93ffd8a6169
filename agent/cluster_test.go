package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testutil"
)

// testWriter routes an agent's logs to t.Log until the test ends; later
// lines (memberlist timers fire after Shutdown) are dropped.
type testWriter struct {
	t      *testing.T
	name   string
	mu     sync.Mutex
	closed bool
}

func newTestWriter(t *testing.T, name string) *testWriter {
	w := &testWriter{t: t, name: name}
	t.Cleanup(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Logf("%s: %s", w.name, b)
	}
	return len(b), nil
}

type testAgent struct {
	*Agent
	name   string
	cancel context.CancelFunc
	done   chan error
}

func (ta *testAgent) url(path string) string { return "http://" + ta.HTTPAddr().String() + path }

// startAgent runs one agent on fresh loopback ports with short timings.
func startAgent(t *testing.T, name string, server bool, expect int, join ...string) *testAgent {
	t.Helper()
	return startAgentOpts(t, name, server, expect, nil, join...)
}

func startAgentOpts(t *testing.T, name string, server bool, expect int, opts []Option, join ...string) *testAgent {
	t.Helper()
	return startAgentConfig(t, name, server, expect, nil, opts, join...)
}

// startAgentConfig is startAgentOpts with a last say on the configuration.
func startAgentConfig(t *testing.T, name string, server bool, expect int, adjust func(*config.Config), opts []Option, join ...string) *testAgent {
	t.Helper()
	cfg := config.DefaultConfig()
	cfg.NodeName = name
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = "127.0.0.1"
	cfg.ClientAddr = "127.0.0.1"
	cfg.Ports = config.Ports{HTTP: testutil.FreePort(t), DNS: testutil.FreePort(t), SerfLAN: testutil.FreePort(t), Server: testutil.FreePort(t)}
	cfg.Server = server
	cfg.BootstrapExpect = expect
	cfg.RetryJoin = join
	cfg.RetryInterval = 100 * time.Millisecond
	if adjust != nil {
		adjust(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(newTestWriter(t, name), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := New(cfg, logger, append([]Option{WithGossipProfile("local"), WithFastRaft()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(ta.stop)
	return ta
}

// stop ends the agent without a graceful leave (a crash, as others see it).
func (ta *testAgent) stop() {
	ta.cancel()
	<-ta.done
	ta.done <- nil // let a second stop return
}

func getJSON(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func startServers(t *testing.T, n int) []*testAgent {
	t.Helper()
	first := startAgent(t, "s1", true, n)
	servers := []*testAgent{first}
	for i := 2; i <= n; i++ {
		servers = append(servers, startAgent(t, "s"+strconv.Itoa(i), true, n, first.GossipAddr()))
	}
	return servers
}

func waitPeers(t *testing.T, via *testAgent, want int) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d raft peers via %s", want, via.name), func() error {
		var peers []string
		if err := getJSON(via.url("/v1/status/peers"), &peers); err != nil {
			return err
		}
		var leader string
		if err := getJSON(via.url("/v1/status/leader"), &leader); err != nil {
			return err
		}
		if len(peers) != want || leader == "" {
			return fmt.Errorf("peers %v leader %q", peers, leader)
		}
		return nil
	})
}

func leaderOf(servers []*testAgent) *testAgent {
	for _, s := range servers {
		if s.server.store.IsLeader() {
			return s
		}
	}
	return nil
}

func TestServersBootstrapAndClientForwards(t *testing.T) {
	servers := startServers(t, 3)
	client := startAgent(t, "c1", false, 0, servers[0].GossipAddr())
	waitPeers(t, client, 3)
	for _, s := range servers {
		waitPeers(t, s, 3)
	}
	// Exactly one cluster: every server reports the same leader.
	var leaders = map[string]bool{}
	for _, s := range servers {
		var l string
		if err := getJSON(s.url("/v1/status/leader?stale"), &l); err != nil {
			t.Fatal(err)
		}
		leaders[l] = true
	}
	if len(leaders) != 1 {
		t.Errorf("servers disagree on the leader: %v", leaders)
	}
}

func TestLeaderKilledNewLeaderElected(t *testing.T) {
	servers := startServers(t, 3)
	waitPeers(t, servers[0], 3)
	var old *testAgent
	testutil.WaitFor(t, 10*time.Second, "a leader", func() error {
		if old = leaderOf(servers); old == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	start := time.Now()
	old.stop()
	var rest []*testAgent
	for _, s := range servers {
		if s != old {
			rest = append(rest, s)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "a new leader", func() error {
		if l := leaderOf(rest); l == nil {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	t.Logf("new leader after %v", time.Since(start).Round(time.Millisecond))
	// A crashed server stays in the configuration (it may come back).
	waitPeers(t, rest[0], 3)
}

func TestServerLeaveRemovedFromRaft(t *testing.T) {
	servers := startServers(t, 3)
	waitPeers(t, servers[0], 3)
	var follower *testAgent
	for _, s := range servers {
		if !s.server.store.IsLeader() {
			follower = s
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := follower.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s != follower {
			waitPeers(t, s, 2)
		}
	}
}

func TestLeaderLeaveHandsOver(t *testing.T) {
	servers := startServers(t, 3)
	waitPeers(t, servers[0], 3)
	var leader *testAgent
	testutil.WaitFor(t, 10*time.Second, "a leader", func() error {
		if leader = leaderOf(servers); leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s != leader {
			waitPeers(t, s, 2)
		}
	}
}

func TestDeadServerRemovedKeepingQuorum(t *testing.T) {
	opts := []Option{WithDeadServerCleanup(time.Second)}
	first := startAgentOpts(t, "s1", true, 3, opts)
	servers := []*testAgent{first}
	for i := 2; i <= 4; i++ {
		servers = append(servers, startAgentOpts(t, "s"+strconv.Itoa(i), true, 3, opts, first.GossipAddr()))
	}
	// The fourth server joined after bootstrap: the leader adds it.
	waitPeers(t, first, 4)
	var victim *testAgent
	for _, s := range servers {
		if !s.server.store.IsLeader() {
			victim = s
			break
		}
	}
	victim.stop()
	var rest []*testAgent
	for _, s := range servers {
		if s != victim {
			rest = append(rest, s)
		}
	}
	// Failed for longer than the threshold: removed, down to 3 voters.
	waitPeers(t, rest[0], 3)
	// Another failure would leave fewer than bootstrap_expect voters: kept.
	for _, s := range rest {
		if !s.server.store.IsLeader() {
			s.stop()
			break
		}
	}
	time.Sleep(3 * time.Second) // well past the 1s threshold
	for _, s := range rest {
		if s.server.store.IsLeader() {
			if n := len(s.server.Peers()); n != 3 {
				t.Errorf("peers = %d after a second failure, want 3 (never below bootstrap_expect)", n)
			}
		}
	}
}

func serfStatus(via *testAgent, node string) (string, error) {
	var checks []struct{ CheckID, Status string }
	if err := getJSON(via.url("/v1/health/node/"+node), &checks); err != nil {
		return "", err
	}
	for _, c := range checks {
		if c.CheckID == "serfHealth" {
			return c.Status, nil
		}
	}
	return "", nil
}

func TestCatalogFollowsGossip(t *testing.T) {
	servers := startServers(t, 3)
	c1 := startAgent(t, "c1", false, 0, servers[0].GossipAddr())
	c2 := startAgent(t, "c2", false, 0, servers[0].GossipAddr())
	waitPeers(t, c1, 3)
	for _, n := range []string{"s1", "s2", "s3", "c1", "c2"} {
		testutil.WaitFor(t, 40*time.Second, n+" passing in the catalog", func() error {
			st, err := serfStatus(c1, n)
			if err != nil || st != "passing" {
				return fmt.Errorf("serfHealth of %s = %q, %v", n, st, err)
			}
			return nil
		})
	}
	// A crashed agent's node goes critical; a leaving one is deregistered.
	c2.stop()
	testutil.WaitFor(t, 45*time.Second, "c2 critical", func() error {
		st, err := serfStatus(servers[0], "c2")
		if err != nil || st != "critical" {
			return fmt.Errorf("serfHealth of c2 = %q, %v", st, err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "c1 deregistered", func() error {
		var nodes []struct{ Node string }
		if err := getJSON(servers[0].url("/v1/catalog/nodes"), &nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Node == "c1" {
				return fmt.Errorf("c1 still in the catalog: %v", nodes)
			}
		}
		return nil
	})
}
