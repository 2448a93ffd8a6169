package httpapi

import (
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// The Consul Go client must work unchanged against these endpoints.
func TestConsulGoClient(t *testing.T) {
	base := startServer(t, testAgent(), fakeStatus{})
	c, err := consul.NewClient(&consul.Config{Address: strings.TrimPrefix(base, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	members, err := c.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].Name != "n1" || !members[0].IsConsulServer() || members[1].Status != 4 {
		t.Errorf("members = %+v", members)
	}
	name, err := c.Agent().NodeName()
	if err != nil || name != "n1" {
		t.Errorf("NodeName = %q, %v", name, err)
	}
	leader, err := c.Status().Leader()
	if err != nil || leader != "127.0.0.1:8300" {
		t.Errorf("Leader = %q, %v", leader, err)
	}
	peers, err := c.Status().Peers()
	if err != nil || len(peers) != 2 {
		t.Errorf("Peers = %v, %v", peers, err)
	}
	if err := c.Agent().Join("127.0.0.3", false); err != nil {
		t.Errorf("Join: %v", err)
	}
	if _, err := c.Agent().Metrics(); err != nil {
		t.Errorf("Metrics: %v", err)
	}
}
