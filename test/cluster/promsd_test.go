package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"
)

// TestPrometheusConsulSDLibrary runs Prometheus's own Consul service
// discovery (github.com/prometheus/prometheus/discovery/consul, the code
// behind consul_sd_configs) against a client agent, configured from the
// YAML a user writes, with Prometheus's filter and health_filter. Debian's
// prometheus binary is built without Consul discovery, so this is how the
// real discovery code is exercised here.
func TestPrometheusConsulSDLibrary(t *testing.T) {
	_, agents := startSmallCluster(t, map[string][]string{"c1": nil})
	c1 := agents["c1"]
	ag := client(t, c1).Agent()
	for _, r := range []*consul.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Port: 8081, Address: "127.0.0.1", Tags: []string{"prod", "v1"}, Meta: map[string]string{"team": "a"}},
		{ID: "web-2", Name: "web", Port: 8082, Address: "127.0.0.1", Tags: []string{"canary"}, Meta: map[string]string{"team": "b"}},
		{ID: "api-1", Name: "api", Port: 9090, Address: "127.0.0.1"},
	} {
		if err := ag.ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}

	yml := fmt.Sprintf(`
server: %s
services: [web]
allow_stale: true
refresh_interval: 1s
filter: 'ServiceMeta.team != "z"'
health_filter: 'Service.Address == "127.0.0.1" and Node.Node == "c1"'
`, c1.HTTPAddr())
	var conf promconsul.SDConfig
	if err := yaml.UnmarshalStrict([]byte(yml), &conf); err != nil {
		t.Fatalf("consul_sd_configs YAML: %v", err)
	}
	reg := promclient.NewRegistry()
	d, err := conf.NewDiscoverer(discovery.DiscovererOptions{
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Metrics: conf.NewDiscovererMetrics(reg, discovery.NewRefreshMetrics(reg)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan []*targetgroup.Group, 16)
	go d.Run(ctx, ch)

	// targets returns "address tags" of the web group's targets.
	latest := map[string]*targetgroup.Group{}
	targets := func() []string {
		var out []string
		for _, g := range latest {
			for _, tgt := range g.Targets {
				out = append(out, string(tgt["__address__"])+" "+string(tgt["__meta_consul_tags"])+" "+
					string(tgt["__meta_consul_health"])+" "+string(tgt["__meta_consul_service_metadata_team"]))
			}
		}
		sort.Strings(out)
		return out
	}
	waitTargets := func(what string, want []string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			if got := targets(); strings.Join(got, "|") == strings.Join(want, "|") {
				return
			}
			select {
			case groups := <-ch:
				for _, g := range groups {
					latest[g.Source] = g
				}
			case <-deadline:
				t.Fatalf("%s: targets %q, want %q", what, targets(), want)
			}
		}
	}
	waitTargets("discovery", []string{
		"127.0.0.1:8081 ,prod,v1, passing a",
		"127.0.0.1:8082 ,canary, passing b",
	})
	if err := ag.ServiceDeregister("web-2"); err != nil {
		t.Fatal(err)
	}
	waitTargets("after deregistering web-2", []string{"127.0.0.1:8081 ,prod,v1, passing a"})
}

// testWriter sends a library's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
