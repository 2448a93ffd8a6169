package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// promTargets is the part of Prometheus's GET /api/v1/targets answer the
// test reads.
type promTargets struct {
	Status string
	Data   struct {
		ActiveTargets []struct {
			DiscoveredLabels map[string]string
			Labels           map[string]string
			ScrapePool       string
			Health           string
			LastError        string
		}
	}
}

// TestPrometheusConsulSD runs Debian's Prometheus with consul_sd_configs
// pointed at a client agent and checks that it discovers both instances
// of a service registered there through the Consul Go client — the
// catalog, health and agent/self reads of Prometheus's Consul discovery,
// blocking queries included.
func TestPrometheusConsulSD(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster test: skipped in -short mode")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus binary not found in PATH (Debian package prometheus; not installed by make test because Debian builds it without Consul discovery): " + err.Error())
	}
	// Debian's prometheus (bookworm's 2.42.0+ds among them) is built
	// without Consul discovery ("Disable Consul SD until its Debian package
	// is back in shape"): its configuration parser then rejects
	// consul_sd_configs. Ask promtool, when present, before starting a
	// cluster; the start below catches the same error without promtool.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		probe := filepath.Join(t.TempDir(), "probe.yml")
		if err := os.WriteFile(probe, []byte("scrape_configs:\n  - job_name: probe\n    consul_sd_configs:\n      - server: '127.0.0.1:8500'\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", "config", probe).CombinedOutput(); err != nil {
			skipIfNoConsulSD(t, promBin, string(out))
			t.Fatalf("promtool check config of a consul_sd_configs probe: %v\n%s", err, out)
		}
	}
	c := startCluster(t, 1)
	agent := c.clients[0]

	// Two instances of web, each an HTTP server with a /metrics page so
	// that Prometheus's scrapes succeed too.
	var ports []int
	for i := 0; i < 2; i++ {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "# TYPE outrigger_test_up gauge\noutrigger_test_up %d\n", i+1)
		}))
		t.Cleanup(srv.Close)
		ports = append(ports, srv.Listener.Addr().(*net.TCPAddr).Port)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: consul
    scrape_interval: 1s
    scrape_timeout: 1s
    consul_sd_configs:
      - server: '%s'
        refresh_interval: 1s
        allow_stale: true
        services: ['web']
`, agent.HTTPAddr())
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	var promLog lockedBuffer
	cmd := exec.Command(promBin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
		"--log.level=debug")
	cmd.Stdout, cmd.Stderr = &promLog, &promLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", promBin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- prometheus log (consul/discovery/error lines):\n%s", promSDLines(promLog.String()))
			t.Logf("--- prometheus log (tail):\n%s", tail(promLog.String(), 40))
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second}
	testutil.WaitFor(t, 30*time.Second, "prometheus to be ready", func() error {
		select {
		case <-exited:
			skipIfNoConsulSD(t, promBin, promLog.String())
			t.Fatalf("prometheus exited before it was ready: %s", tail(promLog.String(), 20))
		default:
		}
		resp, err := hc.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})

	// Register after Prometheus has started, so that discovery must see
	// the change (through its blocking queries), not just a first read.
	cl := client(t, agent)
	for i, port := range ports {
		reg := &consul.AgentServiceRegistration{
			ID: fmt.Sprintf("web-%d", i+1), Name: "web", Address: "127.0.0.1", Port: port, Tags: []string{"v1"},
		}
		if err := cl.Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("register %s: %v", reg.ID, err)
		}
	}

	want := []string{"127.0.0.1:" + strconv.Itoa(ports[0]), "127.0.0.1:" + strconv.Itoa(ports[1])}
	sort.Strings(want)
	var last promTargets
	testutil.WaitFor(t, 60*time.Second, "prometheus to list both web instances", func() error {
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", tail(promLog.String(), 20))
		default:
		}
		resp, err := hc.Get("http://" + promAddr + "/api/v1/targets")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var tg promTargets
		if err := json.NewDecoder(resp.Body).Decode(&tg); err != nil {
			return fmt.Errorf("decode /api/v1/targets: %v", err)
		}
		last = tg
		var got []string
		for _, at := range tg.Data.ActiveTargets {
			if at.DiscoveredLabels["__meta_consul_service"] == "web" {
				got = append(got, at.DiscoveredLabels["__address__"])
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("web targets %v, want %v", got, want)
		}
		return nil
	})

	for _, at := range last.Data.ActiveTargets {
		dl := at.DiscoveredLabels
		if dl["__meta_consul_node"] != agent.Name || dl["__meta_consul_dc"] != "dc1" ||
			!strings.HasPrefix(dl["__meta_consul_service_id"], "web-") || dl["__meta_consul_tags"] != ",v1," {
			t.Errorf("target %s: discovered labels %v, want node %s, dc dc1, service id web-N, tags ,v1,",
				dl["__address__"], dl, agent.Name)
		}
		if at.Labels["job"] != "consul" {
			t.Errorf("target %s: labels %v, want job consul", dl["__address__"], at.Labels)
		}
	}
	if errs := promSDErrors(promLog.String()); errs != "" {
		t.Logf("prometheus logged consul discovery errors (discovery still succeeded):\n%s", errs)
	}
}

// skipIfNoConsulSD skips the test when out (promtool's or prometheus's
// output) shows a build without Consul service discovery.
func skipIfNoConsulSD(t *testing.T, promBin, out string) {
	t.Helper()
	if strings.Contains(out, "field consul_sd_configs not found") {
		t.Skipf("%s is built without Consul service discovery (consul_sd_configs is not a known field; "+
			"Debian's package disables it), so it cannot be tested against the agent: %s",
			promBin, strings.TrimSpace(tail(out, 3)))
	}
}

// promSDLines picks the lines of Prometheus's log about service discovery
// and errors.
func promSDLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "consul") || strings.Contains(ll, "discovery") || strings.Contains(ll, "level=error") {
			out = append(out, l)
		}
	}
	return tail(strings.Join(out, "\n"), 60)
}

// promSDErrors picks the consul discovery lines at warn or error level.
func promSDErrors(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "consul") && (strings.Contains(ll, "level=error") || strings.Contains(ll, "level=warn")) {
			out = append(out, l)
		}
	}
	return tail(strings.Join(out, "\n"), 30)
}

// TestPrometheusConsulSDQueries replays, with the Consul Go client
// Prometheus's discovery is built on, the reads of Prometheus's Consul
// discovery (discovery/consul, v2.42) against a client agent, so that the
// agent's side is covered where the prometheus binary lacks Consul
// discovery: the datacenter from /v1/agent/self, a blocking stale
// /v1/catalog/services that wakes on a registration, and blocking stale
// /v1/health/service reads whose entries carry what the targets' labels
// are made of.
func TestPrometheusConsulSDQueries(t *testing.T) {
	c := startCluster(t, 1)
	agent := c.clients[0]
	cl := client(t, agent)
	const watchTimeout = 2 * time.Minute // Prometheus's

	// getDatacenter: info["Config"]["Datacenter"].(string).
	self, err := cl.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	if dc, ok := self["Config"]["Datacenter"].(string); !ok || dc != "dc1" {
		t.Fatalf("agent/self Config.Datacenter = %#v, want the string dc1", self["Config"]["Datacenter"])
	}

	// watchServices: a first read, then a blocking one woken by a change.
	stale := func(index uint64, wait time.Duration) *consul.QueryOptions {
		return &consul.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}
	}
	_, meta, err := cl.Catalog().Services(stale(0, watchTimeout))
	if err != nil || meta.LastIndex == 0 {
		t.Fatalf("catalog services: index %v, %v", meta, err)
	}
	type servicesAnswer struct {
		srvs  map[string][]string
		index uint64
		err   error
	}
	woke := make(chan servicesAnswer, 1)
	go func() {
		idx := meta.LastIndex
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) { // as Prometheus loops on watchTimeout
			srvs, m, err := cl.Catalog().Services(stale(idx, 30*time.Second))
			if err != nil || srvs["web"] != nil {
				woke <- servicesAnswer{srvs, m.LastIndex, err}
				return
			}
			idx = m.LastIndex
		}
		woke <- servicesAnswer{err: fmt.Errorf("web never appeared")}
	}()
	time.Sleep(200 * time.Millisecond) // let the query block first

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ports := map[string]int{"web-1": l.Addr().(*net.TCPAddr).Port, "web-2": l2.Addr().(*net.TCPAddr).Port}
	for id, port := range ports {
		reg := &consul.AgentServiceRegistration{ID: id, Name: "web", Address: "127.0.0.1", Port: port,
			Tags: []string{"v1"}, Meta: map[string]string{"team": "x"}}
		if err := cl.Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	select {
	case a := <-woke:
		if a.err != nil || a.index <= meta.LastIndex {
			t.Fatalf("blocking catalog services woke with %v, index %d (was %d), %v", a.srvs, a.index, meta.LastIndex, a.err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("blocking catalog services did not wake on the registration")
	}

	// watchService: health/service?stale, both instances with the fields
	// the target labels are made of.
	var entries []*consul.ServiceEntry
	testutil.WaitFor(t, 30*time.Second, "both web instances in health/service", func() error {
		entries, meta, err = cl.Health().ServiceMultipleTags("web", nil, false, stale(0, watchTimeout))
		if err != nil {
			return err
		}
		if len(entries) != 2 || meta.LastIndex == 0 {
			return fmt.Errorf("%d entries, index %d", len(entries), meta.LastIndex)
		}
		return nil
	})
	for _, e := range entries {
		if e.Node == nil || e.Service == nil {
			t.Fatalf("entry without Node or Service: %+v", e)
		}
		addr := net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
		if ports[e.Service.ID] == 0 || addr != "127.0.0.1:"+strconv.Itoa(ports[e.Service.ID]) ||
			e.Node.Node != agent.Name || e.Node.Address != "127.0.0.1" || e.Node.Datacenter != "dc1" ||
			strings.Join(e.Service.Tags, ",") != "v1" || e.Service.Meta["team"] != "x" ||
			e.Checks.AggregatedStatus() != consul.HealthPassing {
			t.Errorf("entry %s: address %s, node %+v, service %+v, health %s", e.Service.ID, addr, e.Node, e.Service, e.Checks.AggregatedStatus())
		}
	}

	// A blocking read with nothing changed returns the same index when its
	// wait ends (Prometheus then keeps its targets). Writes right after the
	// registrations (the anti-entropy sync) may still move it a little
	// first, so wait for it to settle ...
	settled := false
	for i := 0; i < 10 && !settled; i++ {
		start := time.Now()
		_, m2, err := cl.Health().ServiceMultipleTags("web", nil, false, stale(meta.LastIndex, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m2.LastIndex == meta.LastIndex {
			if time.Since(start) < 500*time.Millisecond {
				t.Fatalf("blocking health read at index %d returned the same index after %v, before its 1s wait", meta.LastIndex, time.Since(start))
			}
			settled = true
		}
		meta = m2
	}
	if !settled {
		t.Fatalf("health/service index for web never settled; last %d", meta.LastIndex)
	}
	// ... and wakes with a new one when an instance goes.
	done := make(chan int, 1)
	go func() {
		idx := meta.LastIndex
		for i := 0; i < 10; i++ {
			es, m, err := cl.Health().ServiceMultipleTags("web", nil, false, stale(idx, 10*time.Second))
			if err == nil && len(es) == 1 && m.LastIndex != meta.LastIndex {
				done <- len(es)
				return
			}
			idx = m.LastIndex
		}
		done <- -1
	}()
	time.Sleep(200 * time.Millisecond)
	if err := cl.Agent().ServiceDeregister("web-2"); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("blocking health read never showed web-2 gone")
		}
	case <-time.After(40 * time.Second):
		t.Fatal("blocking health read did not wake on the deregistration")
	}
}
