package agent

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/internal/testutil"
)

func dnsQuery(t *testing.T, a *testAgent, name string, qtype uint16, proto string) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, a.dns.Addr())
	return r, err
}

// TestDNSAnswersFromTheLocalView: a service registered on one agent is
// resolvable through another agent's DNS, and follows health.
func TestDNSAnswersFromTheLocalView(t *testing.T) {
	servers := startServers(t, 3)
	c1 := startAgent(t, "c1", false, 0, servers[0].GossipAddr())
	c2 := startAgent(t, "c2", false, 0, servers[0].GossipAddr())
	waitPeers(t, c2, 3)
	cl, err := consul.NewClient(&consul.Config{Address: c1.HTTPAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	reg := &consul.AgentServiceRegistration{Name: "web", Port: 8080, Tags: []string{"v1"},
		Check: &consul.AgentServiceCheck{CheckID: "web-ttl", TTL: "30s", Status: "passing"}}
	if err := cl.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "web.service.consul A through c2", func() error {
		r, err := dnsQuery(t, c2, "web.service.consul", dns.TypeA, "udp")
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			return fmt.Errorf("rcode %s answers %v", dns.RcodeToString[r.Rcode], r.Answer)
		}
		if a, ok := r.Answer[0].(*dns.A); !ok || !a.A.Equal(net.ParseIP("127.0.0.1")) {
			return fmt.Errorf("answer %v", r.Answer[0])
		}
		return nil
	})
	r, err := dnsQuery(t, c2, "_web._tcp.service.consul", dns.TypeSRV, "tcp")
	if err != nil || len(r.Answer) != 1 || len(r.Extra) == 0 {
		t.Fatalf("SRV: %v %v", r, err)
	}
	if srv := r.Answer[0].(*dns.SRV); srv.Port != 8080 || !strings.HasPrefix(srv.Target, "c1.node.") {
		t.Errorf("SRV = %v", srv)
	}
	if r, _ := dnsQuery(t, c2, "v2.web.service.consul", dns.TypeA, "udp"); r == nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown tag: %v", r)
	}
	if r, _ := dnsQuery(t, c2, "example.org", dns.TypeA, "udp"); r == nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("outside the domain without recursors: %v", r)
	}
	if r, _ := dnsQuery(t, c2, "c1.node.consul", dns.TypeA, "udp"); r == nil || len(r.Answer) != 1 {
		t.Errorf("node lookup: %v", r)
	}
	// The check fails: the instance leaves DNS.
	if err := cl.Agent().FailTTL("web-ttl", "down"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "web gone from DNS", func() error {
		r, err := dnsQuery(t, c2, "web.service.consul", dns.TypeA, "udp")
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeNameError {
			return fmt.Errorf("rcode %s answers %v", dns.RcodeToString[r.Rcode], r.Answer)
		}
		return nil
	})
}

// TestDiscoveryWithEveryServerDown: a client agent keeps answering health
// reads and DNS from its local view when every server is gone, with the
// staleness visible in X-Consul-LastContact.
func TestDiscoveryWithEveryServerDown(t *testing.T) {
	servers := startServers(t, 3)
	c1 := startAgent(t, "c1", false, 0, servers[0].GossipAddr())
	c2 := startAgent(t, "c2", false, 0, servers[0].GossipAddr())
	waitPeers(t, c2, 3)
	cl, err := consul.NewClient(&consul.Config{Address: c1.HTTPAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "api", Port: 9090}); err != nil {
		t.Fatal(err)
	}
	c2c, err := consul.NewClient(&consul.Config{Address: c2.HTTPAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "api visible through c2 (and c2's view subscribed)", func() error {
		entries, _, err := c2c.Health().Service("api", "", true, nil)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("entries %v err %v", entries, err)
		}
		// The view reads ?stale from any server: wait until it holds the
		// instance, not merely the subscription.
		if snap, ok := c2.view.Peek("api"); !ok || len(snap.Entries) != 1 {
			return fmt.Errorf("view not caught up yet (subscribed %v)", ok)
		}
		return nil
	})
	for _, s := range servers {
		s.stop()
	}
	testutil.WaitFor(t, 30*time.Second, "health read from c2's local view", func() error {
		entries, meta, err := c2c.Health().Service("api", "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 1 || entries[0].Service.Port != 9090 || meta.KnownLeader {
			return fmt.Errorf("entries %v meta %+v", entries, meta)
		}
		return nil
	})
	r, err := dnsQuery(t, c2, "api.service.consul", dns.TypeA, "udp")
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("DNS with every server down: %v %v", r, err)
	}
}
