package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testutil"
)

// consulClient is the unchanged Consul Go client pointed at ta.
func consulClient(t *testing.T, ta *testAgent) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: ta.HTTPAddr().String(),
		HttpClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// healthApp is an application behind an HTTP check whose answer the test
// sets.
type healthApp struct {
	*httptest.Server
	code atomic.Int32
}

func newHealthApp(t *testing.T) *healthApp {
	h := &healthApp{}
	h.code.Store(http.StatusOK)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(h.code.Load()))
		fmt.Fprintf(w, "status %d\n", h.code.Load())
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthApp) port() int {
	_, p, _ := strings.Cut(strings.TrimPrefix(h.URL, "http://"), ":")
	n, _ := strconv.Atoi(p)
	return n
}

// serviceEntry is the part of a /v1/health/service entry the tests read.
type serviceEntry struct {
	Node    struct{ Node, Address string }
	Service struct {
		ID, Service string
		Port        int
		Tags        []string
	}
	Checks []struct{ CheckID, Status, ServiceID, Output string }
}

func healthService(via *testAgent, query string) ([]serviceEntry, error) {
	var out []serviceEntry
	err := getJSON(via.url("/v1/health/service/"+query), &out)
	return out, err
}

// checkStatus is the status of check id on node in entries, or "".
func checkStatus(entries []serviceEntry, node, id string) string {
	for _, e := range entries {
		if e.Node.Node != node {
			continue
		}
		for _, c := range e.Checks {
			if c.CheckID == id {
				return c.Status
			}
		}
	}
	return ""
}

// waitCheck waits until via's /v1/health/service/<svc> shows check id of
// node with status want ("" for: the check is gone).
func waitCheck(t *testing.T, via *testAgent, svc, node, id, want string) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%s of %s %q via %s", id, node, want, via.name), func() error {
		entries, err := healthService(via, svc)
		if err != nil {
			return err
		}
		if got := checkStatus(entries, node, id); got != want {
			return fmt.Errorf("status %q in %+v", got, entries)
		}
		return nil
	})
}

// waitPassing waits until via's /v1/health/service/<svc>?passing lists
// exactly the nodes in want.
func waitPassing(t *testing.T, via *testAgent, svc string, want ...string) {
	t.Helper()
	slices.Sort(want)
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%s passing on %v via %s", svc, want, via.name), func() error {
		entries, err := healthService(via, svc+"?passing")
		if err != nil {
			return err
		}
		got := []string{}
		for _, e := range entries {
			got = append(got, e.Node.Node)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("passing on %v: %+v", got, entries)
		}
		return nil
	})
}

func catalogNodes(via *testAgent, svc string) ([]string, error) {
	var out []struct{ Node, ServiceID string }
	if err := getJSON(via.url("/v1/catalog/service/"+svc), &out); err != nil {
		return nil, err
	}
	var nodes []string
	for _, e := range out {
		nodes = append(nodes, e.Node)
	}
	slices.Sort(nodes)
	return nodes, nil
}

func waitCatalog(t *testing.T, via *testAgent, svc string, want ...string) {
	t.Helper()
	slices.Sort(want)
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%s in the catalog on %v via %s", svc, want, via.name), func() error {
		got, err := catalogNodes(via, svc)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("on %v", got)
		}
		return nil
	})
}

func put(t *testing.T, url string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(http.MethodPut, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServiceRegisteredOnClientSeenClusterWide registers a service with an
// HTTP check on one client agent with the Consul Go client and follows it
// through another agent: passing, critical, TTL updates, maintenance, a
// deletion on the servers repaired by anti-entropy, and deregistration.
func TestServiceRegisteredOnClientSeenClusterWide(t *testing.T) {
	servers := startServers(t, 3)
	c1 := startAgentOpts(t, "c1", false, 0, []Option{WithSyncInterval(time.Second)}, servers[0].GossipAddr())
	c2 := startAgent(t, "c2", false, 0, servers[0].GossipAddr())
	waitPeers(t, c2, 3)
	app := newHealthApp(t)
	api := consulClient(t, c1).Agent()

	err := api.ServiceRegister(&consul.AgentServiceRegistration{
		Name: "web", Port: app.port(), Tags: []string{"v1"}, Meta: map[string]string{"team": "a"},
		Check: &consul.AgentServiceCheck{HTTP: app.URL + "/health", Interval: "1s", Timeout: "2s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitCatalog(t, c2, "web", "c1")
	waitPassing(t, c2, "web", "c1")
	waitCheck(t, c2, "web", "c1", "serfHealth", "passing")
	entries, _ := healthService(c2, "web")
	if len(entries) != 1 || entries[0].Service.Port != app.port() || !slices.Equal(entries[0].Service.Tags, []string{"v1"}) {
		t.Errorf("entry via c2 = %+v", entries)
	}

	// The application starts failing: critical everywhere.
	app.code.Store(http.StatusInternalServerError)
	waitCheck(t, c2, "web", "c1", "service:web", "critical")
	waitPassing(t, servers[1], "web")
	app.code.Store(http.StatusOK)
	waitPassing(t, c2, "web", "c1")

	// A TTL check of the service, driven through the Go client.
	if err := api.CheckRegister(&consul.AgentCheckRegistration{ID: "web-ttl", Name: "web TTL", ServiceID: "web",
		AgentServiceCheck: consul.AgentServiceCheck{TTL: "30s"}}); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "web-ttl", "critical")
	if err := api.PassTTL("web-ttl", "all good"); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "web-ttl", "passing")
	waitPassing(t, c2, "web", "c1")
	if err := api.FailTTL("web-ttl", "broken"); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "web-ttl", "critical")
	if err := api.UpdateTTL("web-ttl", "warming up", consul.HealthWarning); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "web-ttl", "warning")
	if err := api.UpdateTTL("web-ttl", "ready", "pass"); err != nil {
		t.Fatal(err)
	}
	waitPassing(t, c2, "web", "c1")
	if err := api.WarnTTL("nope", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("WarnTTL of an unknown check: %v, want a 404", err)
	}

	// Maintenance takes the instance out of the healthy list.
	if err := api.EnableServiceMaintenance("web", "deploying"); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "_service_maintenance:web", "critical")
	waitPassing(t, c2, "web")
	if err := api.DisableServiceMaintenance("web"); err != nil {
		t.Fatal(err)
	}
	waitPassing(t, c2, "web", "c1")
	if err := api.EnableNodeMaintenance("reboot"); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, c2, "web", "c1", "_node_maintenance", "critical")
	waitPassing(t, c2, "web")
	if err := api.DisableNodeMaintenance(); err != nil {
		t.Fatal(err)
	}
	waitPassing(t, c2, "web", "c1")

	// Someone deletes the instance on the servers directly: anti-entropy
	// puts it back.
	if code, body := put(t, servers[0].url("/v1/catalog/deregister"), map[string]string{"Node": "c1", "ServiceID": "web"}); code != 200 {
		t.Fatalf("catalog deregister: %d %s", code, body)
	}
	waitCatalog(t, c2, "web", "c1")
	waitPassing(t, c2, "web", "c1")

	// Deregistered: gone everywhere, with its checks.
	if err := api.ServiceDeregister("web"); err != nil {
		t.Fatal(err)
	}
	waitCatalog(t, c2, "web")
	var checks []struct{ CheckID string }
	if err := getJSON(servers[0].url("/v1/health/node/c1"), &checks); err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.CheckID != "serfHealth" {
			t.Errorf("check %s of c1 left in the catalog", c.CheckID)
		}
	}
	if err := api.ServiceDeregister("web"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("deregister twice: %v, want a 404", err)
	}
}

// flagConfig returns what `agent run` would make of args.
func flagConfig(t *testing.T, args ...string) config.Config {
	t.Helper()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := config.NewFlags(fs)
	if err := fs.Parse(append([]string{"-node", "x", "-data-dir", t.TempDir()}, args...)); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(f, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServicesFromConfigAndFlags starts clients whose services come from
// a configuration's services section and from the -service flags; a
// killed client's instances go critical, a leaving one's disappear.
func TestServicesFromConfigAndFlags(t *testing.T) {
	s1 := startAgent(t, "s1", true, 1)
	app := newHealthApp(t)
	fromFlags := flagConfig(t, "-service", "api", "-service-port", strconv.Itoa(app.port()), "-service-tag", "blue",
		"-check-http", app.URL+"/health", "-check-interval", "1s")

	c1 := startAgentConfig(t, "c1", false, 0, func(c *config.Config) {
		c.Extra = map[string]any{
			"services": []any{
				map[string]any{"name": "db", "port": 5432, "tags": []any{"primary"},
					"checks": []any{map[string]any{"id": "db-ttl", "name": "db TTL", "ttl": "1m", "status": "passing"}}},
				map[string]any{"name": "cache", "port": 6379},
			},
			"check": []any{map[string]any{"id": "mem", "name": "memory", "ttl": "1m", "status": "passing"}},
		}
	}, nil, s1.GossipAddr())
	c2 := startAgentConfig(t, "c2", false, 0, func(c *config.Config) { c.Extra = fromFlags.Extra }, nil, s1.GossipAddr())

	waitPassing(t, s1, "db", "c1")
	waitPassing(t, s1, "cache", "c1")
	waitPassing(t, s1, "api", "c2")
	entries, _ := healthService(s1, "api")
	if len(entries) != 1 || entries[0].Service.Port != app.port() || !slices.Equal(entries[0].Service.Tags, []string{"blue"}) {
		t.Errorf("api = %+v", entries)
	}
	var nodeChecks []struct{ CheckID, Status string }
	if err := getJSON(s1.url("/v1/health/node/c1"), &nodeChecks); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(nodeChecks, func(c struct{ CheckID, Status string }) bool { return c.CheckID == "mem" && c.Status == "passing" }) {
		t.Errorf("node check mem missing: %+v", nodeChecks)
	}

	// A crashed client: its instances go critical through serfHealth.
	c1.stop()
	waitCheck(t, s1, "db", "c1", "serfHealth", "critical")
	waitPassing(t, s1, "db")
	// A leaving client: its instances leave the catalog.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c2.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitCatalog(t, s1, "api")
}

// loneAgent is a client agent with no servers: its own endpoints work
// without them (anti-entropy keeps retrying).
func loneAgent(t *testing.T, adjust func(*config.Config)) *testAgent {
	t.Helper()
	return startAgentConfig(t, "lone", false, 0, adjust, nil)
}

func TestScriptChecksNeedEnabling(t *testing.T) {
	script := map[string]any{"Name": "job", "Check": map[string]any{"Args": []string{"true"}, "Interval": "1s"}}

	off := loneAgent(t, nil)
	code, body := put(t, off.url("/v1/agent/service/register"), script)
	if code != http.StatusBadRequest || !strings.Contains(body, "Args") || !strings.Contains(body, "enable_script_checks") {
		t.Errorf("script check without enable_script_checks: %d %q", code, body)
	}
	code, body = put(t, off.url("/v1/agent/check/register"), map[string]any{"Name": "s", "Args": []string{"true"}, "Interval": "1s"})
	if code != http.StatusBadRequest || !strings.Contains(body, "enable_script_checks") {
		t.Errorf("check register: %d %q", code, body)
	}
	if svcs, _ := consulClient(t, off).Agent().Services(); len(svcs) != 0 {
		t.Errorf("refused registration left %v", svcs)
	}

	on := startAgentConfig(t, "on", false, 0, func(c *config.Config) { c.EnableScriptChecks = true }, nil)
	if code, body := put(t, on.url("/v1/agent/service/register"), script); code != 200 {
		t.Fatalf("with enable_script_checks: %d %q", code, body)
	}
	testutil.WaitFor(t, 20*time.Second, "the script check passing", func() error {
		checks, err := consulClient(t, on).Agent().Checks()
		if err != nil {
			return err
		}
		if c := checks["service:job"]; c == nil || c.Status != "passing" {
			return fmt.Errorf("checks %+v", checks)
		}
		return nil
	})
}

func TestBadRegistrationsNameTheField(t *testing.T) {
	a := loneAgent(t, nil)
	for _, tc := range []struct {
		path, body string
		code       int
		want       []string
	}{
		{"service/register", `{"Port": 80}`, 400, []string{"Name", "missing"}},
		{"service/register", `{"Name": "web", "Port": 70000}`, 400, []string{"Port", "70000"}},
		{"service/register", `{"Name": "web", "Bogus": 1}`, 400, []string{"Bogus"}},
		{"service/register", `{"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "soon"}}`, 400, []string{"Interval", "soon"}},
		{"service/register", `{"Name": "web", "Checks": [{"TTL": "10s"}, {"HTTP": "http://127.0.0.1:1/"}]}`, 400, []string{"Checks[1]", "Interval", "missing"}},
		{"service/register", `{"Name": "web", "Meta": {"consul-x": "y"}}`, 400, []string{`Meta["consul-x"]`}},
		{"service/register", `[1]`, 400, []string{"object"}},
		{"service/register", ``, 400, []string{"body"}},
		{"check/register", `{"Name": "c", "TCP": "nohost", "Interval": "1s"}`, 400, []string{"TCP", "nohost"}},
		{"check/register", `{"Name": "c", "TTL": "10s", "ServiceID": "absent"}`, 400, []string{"absent"}},
		{"check/register", `{"ID": "serfHealth", "Name": "c", "TTL": "10s"}`, 400, []string{"serfHealth"}},
		{"check/update/none", `{"Status": "passing"}`, 404, []string{"none"}},
		{"check/update/none", `{"Status": "fine"}`, 400, []string{"Status", "fine"}},
		{"check/pass/none", ``, 404, []string{"none"}},
		{"check/deregister/none", ``, 404, []string{"none"}},
		{"service/deregister/none", ``, 404, []string{"none"}},
		{"maintenance", ``, 400, []string{"enable"}},
		{"service/maintenance/none?enable=true", ``, 404, []string{"none"}},
	} {
		code, body := put(t, a.url("/v1/agent/"+tc.path), tc.body)
		if code != tc.code {
			t.Errorf("%s %s: %d %q, want %d", tc.path, tc.body, code, body, tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s %s: %q does not name %q", tc.path, tc.body, body, w)
			}
		}
	}
	// A pass on a check that is not a TTL check.
	if code, body := put(t, a.url("/v1/agent/check/register"), `{"Name": "tcp", "TCP": "127.0.0.1:1", "Interval": "10s"}`); code != 200 {
		t.Fatalf("register tcp check: %d %s", code, body)
	}
	if code, body := put(t, a.url("/v1/agent/check/pass/tcp"), nil); code != 400 || !strings.Contains(body, "TTL") {
		t.Errorf("pass of a TCP check: %d %q", code, body)
	}
}

// TestConsulClientAgentShapes checks what the Consul Go client's Agent()
// calls decode from the agent's own endpoints.
func TestConsulClientAgentShapes(t *testing.T) {
	a := loneAgent(t, func(c *config.Config) { c.NodeName = "shapes" })
	api := consulClient(t, a).Agent()
	app := newHealthApp(t)

	err := api.ServiceRegister(&consul.AgentServiceRegistration{
		ID: "web-1", Name: "web", Port: 8080, Address: "10.0.0.9", Tags: []string{"a", "b"},
		Meta:    map[string]string{"version": "2"},
		Weights: &consul.AgentWeights{Passing: 3, Warning: 1},
		Checks: consul.AgentServiceChecks{
			{CheckID: "web-http", Name: "http", HTTP: app.URL, Interval: "1s", Header: map[string][]string{"X-A": {"b"}}},
			{TTL: "1m", Status: "passing", Notes: "heartbeat"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := api.Services()
	if err != nil {
		t.Fatal(err)
	}
	s := svcs["web-1"]
	if s == nil || s.Service != "web" || s.Port != 8080 || s.Address != "10.0.0.9" || !slices.Equal(s.Tags, []string{"a", "b"}) ||
		s.Meta["version"] != "2" || s.Weights != (consul.AgentWeights{Passing: 3, Warning: 1}) || s.Datacenter != "dc1" {
		t.Errorf("Services()[web-1] = %+v", s)
	}

	testutil.WaitFor(t, 20*time.Second, "the HTTP check passing", func() error {
		checks, err := api.Checks()
		if err != nil {
			return err
		}
		c := checks["web-http"]
		if c == nil || c.Status != "passing" {
			return fmt.Errorf("checks %+v", checks)
		}
		if c.Node != "shapes" || c.ServiceID != "web-1" || c.ServiceName != "web" || c.Type != "http" ||
			c.Definition.HTTP != app.URL || c.Definition.IntervalDuration != time.Second || c.Definition.Header["X-A"][0] != "b" ||
			!strings.Contains(c.Output, "200") {
			t.Errorf("Checks()[web-http] = %+v", c)
		}
		ttl := checks["service:web-1:2"]
		if ttl == nil || ttl.Status != "passing" || ttl.Notes != "heartbeat" || ttl.Type != "ttl" {
			t.Errorf("Checks()[service:web-1:2] = %+v", ttl)
		}
		return nil
	})

	// A node check, and a service's replaced checks.
	if err := api.CheckRegister(&consul.AgentCheckRegistration{ID: "disk", Name: "disk",
		AgentServiceCheck: consul.AgentServiceCheck{TTL: "1m"}}); err != nil {
		t.Fatal(err)
	}
	err = api.ServiceRegisterOpts(&consul.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8080,
		Check: &consul.AgentServiceCheck{CheckID: "web-tcp", TCP: strings.TrimPrefix(app.URL, "http://"), Interval: "1s"}},
		consul.ServiceRegisterOpts{ReplaceExistingChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := api.Checks()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range checks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if want := []string{"disk", "web-tcp"}; !slices.Equal(ids, want) {
		t.Errorf("checks after replace-existing-checks: %v, want %v", ids, want)
	}

	// Content-hash blocking on one service.
	svc, meta, err := api.Service("web-1", nil)
	if err != nil || svc.ContentHash == "" || meta.LastContentHash != svc.ContentHash {
		t.Fatalf("Service = %+v, %+v, %v", svc, meta, err)
	}
	woke := make(chan *consul.AgentService, 1)
	go func() {
		s, _, err := api.Service("web-1", &consul.QueryOptions{WaitHash: meta.LastContentHash, WaitTime: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woke <- s
	}()
	// An unchanged answer would come back only after the wait.
	if err := api.EnableServiceMaintenance("web-1", "testing"); err != nil {
		t.Fatal(err)
	}
	if err := api.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 9090}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-woke:
		if s == nil || s.Port != 9090 || s.ContentHash == meta.LastContentHash {
			t.Errorf("blocking Service woke with %+v", s)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("blocking Service did not wake on the change")
	}
	checks, _ = api.Checks()
	if c := checks["_service_maintenance:web-1"]; c == nil || c.Status != "critical" || c.Notes != "testing" {
		t.Errorf("maintenance check = %+v", c)
	}
	if _, _, err := api.Service("nope", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Service(nope) = %v, want a 404", err)
	}

	if err := api.ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := api.Services(); len(svcs) != 0 {
		t.Errorf("services after deregister: %v", svcs)
	}
	checks, _ = api.Checks()
	if len(checks) != 1 || checks["disk"] == nil {
		t.Errorf("checks after deregister: %v", checks)
	}
}

func TestSidecarRegisteredWithItsService(t *testing.T) {
	a := loneAgent(t, nil)
	api := consulClient(t, a).Agent()
	reg := &consul.AgentServiceRegistration{Name: "web", Port: 8080,
		Connect: &consul.AgentServiceConnect{SidecarService: &consul.AgentServiceRegistration{}}}
	if err := api.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if err := api.ServiceRegister(&consul.AgentServiceRegistration{Name: "api", Port: 9090,
		Connect: &consul.AgentServiceConnect{SidecarService: &consul.AgentServiceRegistration{}}}); err != nil {
		t.Fatal(err)
	}
	svcs, err := api.Services()
	if err != nil {
		t.Fatal(err)
	}
	web, apiProxy := svcs["web-sidecar-proxy"], svcs["api-sidecar-proxy"]
	if web == nil || web.Kind != consul.ServiceKindConnectProxy || web.Port != 21000 ||
		web.Proxy == nil || web.Proxy.DestinationServiceName != "web" || web.Proxy.LocalServicePort != 8080 {
		t.Fatalf("web's sidecar = %+v", web)
	}
	if apiProxy == nil || apiProxy.Port != 21001 {
		t.Fatalf("api's sidecar = %+v, want the next free port", apiProxy)
	}
	// Registering again keeps the sidecar's port.
	if err := api.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := api.Services(); svcs["web-sidecar-proxy"] == nil || svcs["web-sidecar-proxy"].Port != 21000 {
		t.Errorf("after re-registering: %+v", svcs["web-sidecar-proxy"])
	}
	checks, _ := api.Checks()
	if c := checks["service:web-sidecar-proxy"]; c == nil || c.Type != "tcp" {
		t.Errorf("sidecar check = %+v", c)
	}
	if err := api.ServiceDeregister("web"); err != nil {
		t.Fatal(err)
	}
	svcs, _ = api.Services()
	if _, ok := svcs["web-sidecar-proxy"]; ok || len(svcs) != 2 {
		t.Errorf("after deregistering web: %v", svcs)
	}
}
