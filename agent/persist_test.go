package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testutil"
)

// Services and checks registered through the API survive a restart of
// the agent on the same data directory; deregistered ones do not come
// back.
func TestRegistrationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	var httpPort, dnsPort, serfPort, serverPort int
	adjust := func(c *config.Config) {
		c.DataDir = dir
		if httpPort == 0 {
			httpPort, dnsPort, serfPort, serverPort = c.Ports.HTTP, c.Ports.DNS, c.Ports.SerfLAN, c.Ports.Server
		}
		c.Ports = config.Ports{HTTP: httpPort, DNS: dnsPort, SerfLAN: serfPort, Server: serverPort}
	}
	a := startAgentConfig(t, "n1", true, 1, adjust, nil)
	cl := consulClient(t, a)
	ag := cl.Agent()
	for _, reg := range []*consul.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Port: 8080, Tags: []string{"v1"},
			Check: &consul.AgentServiceCheck{CheckID: "web-ttl", TTL: "1h"}},
		{ID: "gone", Name: "gone", Port: 1},
	} {
		if err := ag.ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := ag.CheckRegister(&consul.AgentCheckRegistration{ID: "node-ttl", Name: "node ttl",
		AgentServiceCheck: consul.AgentServiceCheck{TTL: "1h"}}); err != nil {
		t.Fatal(err)
	}
	if err := ag.ServiceDeregister("gone"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "services", "*.json"))
	if len(files) != 1 {
		t.Fatalf("kept service files: %v, want one (web-1)", files)
	}
	a.stop()

	b := startAgentConfig(t, "n1", true, 1, adjust, nil)
	services, err := consulClient(t, b).Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := services["web-1"]; !ok || s.Port != 8080 || len(s.Tags) != 1 || s.Tags[0] != "v1" {
		t.Errorf("after restart web-1 = %+v (services %v)", s, services)
	}
	if _, ok := services["gone"]; ok {
		t.Error("a deregistered service came back after the restart")
	}
	checks, err := consulClient(t, b).Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := checks["web-ttl"]; !ok {
		t.Errorf("web-1's check missing after restart: %v", checks)
	}
	if _, ok := checks["node-ttl"]; !ok {
		t.Errorf("node check missing after restart: %v", checks)
	}
	// And the restored service reaches the catalog.
	testutil.WaitFor(t, 20*time.Second, "web in the catalog after the restart", func() error {
		cs, _, err := consulClient(t, b).Catalog().Service("web", "", nil)
		if err == nil && len(cs) != 1 {
			err = fmt.Errorf("%d instances", len(cs))
		}
		return err
	})
}

// A kept file that no longer parses is skipped with a log line, and the
// agent starts.
func TestUnreadableKeptRegistration(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "services"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "services", "x.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgentConfig(t, "n1", true, 1, func(c *config.Config) { c.DataDir = dir }, nil)
	services, err := consulClient(t, a).Agent().Services()
	if err != nil || len(services) != 0 {
		t.Fatalf("services %v, %v", services, err)
	}
}
