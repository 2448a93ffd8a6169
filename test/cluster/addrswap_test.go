package cluster

import (
	"fmt"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

// TestServersSwapAddresses stops all three servers and starts them again
// with s1's and s3's server addresses swapped, as containers restarted
// together may come back on each other's IPs: Raft reaches each server at
// its address from gossip, so they elect a leader and keep their data.
func TestServersSwapAddresses(t *testing.T) {
	c := startCluster(t, 0)
	kv := client(t, c.servers[0]).KV()
	if _, err := kv.Put(&consul.KVPair{Key: "swap/a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.servers {
		s.Stop()
	}
	s1, s3 := c.servers[0], c.servers[2]
	s1.RPCPort, s3.RPCPort = s3.RPCPort, s1.RPCPort
	restarted := time.Now()
	for _, s := range c.servers {
		s.Start()
	}
	testutil.WaitFor(t, 60*time.Second, "a leader, three voters at their new addresses, and the data", func() error {
		for _, s := range c.servers {
			cl := client(t, s)
			peers, err := cl.Status().Peers()
			if err != nil {
				return err
			}
			want := map[string]bool{s1.RPCAddr(): true, c.servers[1].RPCAddr(): true, s3.RPCAddr(): true}
			for _, p := range peers {
				delete(want, p)
			}
			if len(peers) != 3 || len(want) != 0 {
				return fmt.Errorf("%s: peers %v", s.Name, peers)
			}
			p, _, err := cl.KV().Get("swap/a", nil)
			if err != nil || p == nil || string(p.Value) != "1" {
				return fmt.Errorf("%s: swap/a = %v, %v", s.Name, p, err)
			}
		}
		return nil
	})
	t.Logf("FIGURE servers restarted on swapped addresses: whole again after %v", time.Since(restarted).Round(time.Millisecond))
}
