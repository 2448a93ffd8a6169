// Package cluster tests the agent as users run it: real processes — three
// servers and client agents on loopback — driven through the Consul Go
// client and raw HTTP while servers are killed and restarted.
package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

type testCluster struct {
	servers []*testutil.Proc
	clients []*testutil.Proc
}

// startCluster starts three servers (-bootstrap-expect 3) and n clients.
func startCluster(t *testing.T, clients int) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("process cluster test: skipped in -short mode")
	}
	bin := testutil.AgentBinary(t)
	c := &testCluster{}
	var seed string
	for i := 1; i <= 3; i++ {
		args := []string{"-server", "-bootstrap-expect", "3"}
		if seed != "" {
			args = append(args, "-retry-join", seed)
		}
		p := testutil.NewProc(t, bin, fmt.Sprintf("s%d", i), args...)
		if seed == "" {
			seed = p.SerfAddr()
		}
		p.Start()
		c.servers = append(c.servers, p)
	}
	for i := 1; i <= clients; i++ {
		p := testutil.NewProc(t, bin, fmt.Sprintf("c%d", i), "-retry-join", seed)
		p.Start()
		c.clients = append(c.clients, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(c.servers, c.clients...) {
				t.Logf("--- %s log (tail):\n%s", p.Name, tail(p.Logs(), 40))
			}
		}
	})
	for _, p := range append(c.servers, c.clients...) {
		c.waitLeader(t, p)
	}
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func client(t *testing.T, p *testutil.Proc) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: p.HTTPAddr(), HttpClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitLeader waits until p knows a leader and three peers.
func (c *testCluster) waitLeader(t *testing.T, p *testutil.Proc) {
	t.Helper()
	cl := client(t, p)
	testutil.WaitFor(t, 60*time.Second, p.Name+" to know a leader", func() error {
		l, err := cl.Status().Leader()
		if err != nil {
			return err
		}
		peers, err := cl.Status().Peers()
		if err != nil {
			return err
		}
		if l == "" || len(peers) != 3 {
			return fmt.Errorf("leader %q peers %v", l, peers)
		}
		return nil
	})
}

// leader returns the server process that leads now.
func (c *testCluster) leader(t *testing.T) *testutil.Proc {
	t.Helper()
	var found *testutil.Proc
	testutil.WaitFor(t, 30*time.Second, "a leader among running servers", func() error {
		for _, s := range c.servers {
			if !s.Running() {
				continue
			}
			l, err := client(t, s).Status().Leader()
			if err != nil {
				continue
			}
			for _, cand := range c.servers {
				if cand.RPCAddr() == l && cand.Running() {
					found = cand
					return nil
				}
			}
		}
		return fmt.Errorf("no running leader")
	})
	return found
}
