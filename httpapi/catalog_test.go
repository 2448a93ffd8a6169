package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/kvstore"
)

const testNodeID = "11111111-1111-4111-8111-111111111111"

// register registers through the Consul client and fails the test on error.
func (e *kvEnv) register(t testing.TB, reg *consul.CatalogRegistration) {
	t.Helper()
	if _, err := e.client.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("Register(%s): %v", reg.Node, err)
	}
}

// seedCatalog registers web on n1 (passing) and n2 (warning), and api on
// n2, each node with a passing serfHealth.
func (e *kvEnv) seedCatalog(t testing.TB) {
	t.Helper()
	e.register(t, &consul.CatalogRegistration{
		ID: testNodeID, Node: "n1", Address: "10.0.0.1",
		TaggedAddresses: map[string]string{"lan": "10.0.0.1"}, NodeMeta: map[string]string{"rack": "r1"},
		Service: &consul.AgentService{ID: "web-1", Service: "web", Tags: []string{"prod", "v1"}, Port: 8080,
			Address: "10.0.0.11", Meta: map[string]string{"version": "1.0"}},
		Check: &consul.AgentCheck{CheckID: "web-1-http", Name: "HTTP on 8080", ServiceID: "web-1", Status: "passing",
			Output: "HTTP GET: 200 OK", Type: "http",
			Definition: consul.HealthCheckDefinition{HTTP: "http://10.0.0.11:8080/health", IntervalDuration: 10 * time.Second}},
		Checks: consul.HealthChecks{{CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Type: "serf"}},
	})
	e.register(t, &consul.CatalogRegistration{
		Node: "n2", Address: "10.0.0.2", NodeMeta: map[string]string{"rack": "r2"},
		Service: &consul.AgentService{ID: "web-2", Service: "web", Tags: []string{"canary", "v2"}, Port: 8080,
			Weights: consul.AgentWeights{Passing: 5, Warning: 1}},
		Checks: consul.HealthChecks{
			{CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing"},
			{CheckID: "web-2-http", Name: "HTTP", ServiceID: "web-2", Status: "warning", Output: "429"},
		},
	})
	e.register(t, &consul.CatalogRegistration{Node: "n2", SkipNodeUpdate: true,
		Service: &consul.AgentService{Service: "api", Port: 9090}})
}

func TestCatalogConsulClient(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	cat := e.client.Catalog()

	dcs, err := cat.Datacenters()
	if err != nil || !reflect.DeepEqual(dcs, []string{"dc1"}) {
		t.Fatalf("Datacenters() = %v, %v; want [dc1]", dcs, err)
	}

	services, qm, err := cat.Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"web": {"canary", "prod", "v1", "v2"}, "api": {}}
	if !reflect.DeepEqual(services, want) || qm.LastIndex == 0 || !qm.KnownLeader {
		t.Fatalf("Services() = %v (meta %+v), want %v", services, qm, want)
	}
	services, _, err = cat.Services(&consul.QueryOptions{NodeMeta: map[string]string{"rack": "r1"}})
	if err != nil || !reflect.DeepEqual(services, map[string][]string{"web": {"prod", "v1"}}) {
		t.Fatalf("Services(node-meta rack:r1) = %v, %v", services, err)
	}

	web, qm, err := cat.Service("web", "", nil)
	if err != nil || len(web) != 2 {
		t.Fatalf("Service(web) = %+v, %v", web, err)
	}
	if qm.LastIndex != e.store.State().ServiceIndex("web") {
		t.Errorf("Service(web) index %d, want the service's index %d", qm.LastIndex, e.store.State().ServiceIndex("web"))
	}
	w1 := web[0]
	if w1.ID != testNodeID || w1.Node != "n1" || w1.Address != "10.0.0.1" || w1.Datacenter != "dc1" ||
		w1.TaggedAddresses["lan"] != "10.0.0.1" || w1.NodeMeta["rack"] != "r1" || w1.ServiceID != "web-1" ||
		w1.ServiceName != "web" || w1.ServiceAddress != "10.0.0.11" || w1.ServicePort != 8080 ||
		!reflect.DeepEqual(w1.ServiceTags, []string{"prod", "v1"}) || w1.ServiceMeta["version"] != "1.0" ||
		w1.ServiceWeights != (consul.Weights{Passing: 1, Warning: 1}) || w1.CreateIndex == 0 || w1.ModifyIndex == 0 {
		t.Errorf("Service(web)[0] = %+v", w1)
	}
	if web[1].ServiceWeights != (consul.Weights{Passing: 5, Warning: 1}) {
		t.Errorf("web-2 weights = %+v, want the registered 5/1", web[1].ServiceWeights)
	}
	if web, _, _ := cat.Service("web", "v2", nil); len(web) != 1 || web[0].ServiceID != "web-2" {
		t.Errorf("Service(web, tag v2) = %+v", web)
	}
	if web, _, _ := cat.ServiceMultipleTags("web", []string{"prod", "v1"}, nil); len(web) != 1 || web[0].ServiceID != "web-1" {
		t.Errorf("ServiceMultipleTags(web, prod+v1) = %+v", web)
	}
	if web, _, _ := cat.ServiceMultipleTags("web", []string{"prod", "v2"}, nil); len(web) != 0 {
		t.Errorf("ServiceMultipleTags(web, prod+v2) = %+v, want none: all tags must match", web)
	}
	if none, _, err := cat.Service("nope", "", nil); err != nil || len(none) != 0 {
		t.Errorf("Service(nope) = %+v, %v", none, err)
	}

	nodes, _, err := cat.Nodes(nil)
	if err != nil || len(nodes) != 2 || nodes[0].Node != "n1" || nodes[0].ID != testNodeID || nodes[1].Meta["rack"] != "r2" {
		t.Fatalf("Nodes() = %+v, %v", nodes, err)
	}
	if nodes, _, _ := cat.Nodes(&consul.QueryOptions{NodeMeta: map[string]string{"rack": "r2"}}); len(nodes) != 1 || nodes[0].Node != "n2" {
		t.Errorf("Nodes(node-meta rack:r2) = %+v", nodes)
	}

	node, _, err := cat.Node("n2", nil)
	if err != nil || node == nil || node.Node.Address != "10.0.0.2" || len(node.Services) != 2 {
		t.Fatalf("Node(n2) = %+v, %v", node, err)
	}
	if s := node.Services["api"]; s == nil || s.Service != "api" || s.Port != 9090 || s.Tags == nil {
		t.Errorf("Node(n2).Services[api] = %+v (ID defaults to the name; tags never null)", s)
	}
	if node, _, err := cat.Node("ghost", nil); err != nil || node != nil {
		t.Errorf("Node(ghost) = %+v, %v; want nil", node, err)
	}

	// Deregistration: a check, a service (with its checks), a node.
	if _, err := cat.Deregister(&consul.CatalogDeregistration{Node: "n2", CheckID: "serfHealth"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Deregister(&consul.CatalogDeregistration{Node: "n2", ServiceID: "web-2"}, nil); err != nil {
		t.Fatal(err)
	}
	if checks, _, _ := e.client.Health().Node("n2", nil); len(checks) != 0 {
		t.Errorf("checks of n2 after removing serfHealth and web-2 = %+v", checks)
	}
	if _, err := cat.Deregister(&consul.CatalogDeregistration{Node: "n1"}, nil); err != nil {
		t.Fatal(err)
	}
	services, _, _ = cat.Services(nil)
	if !reflect.DeepEqual(services, map[string][]string{"api": {}}) {
		t.Errorf("Services() after deregistrations = %v, want api only", services)
	}
}

func TestHealthConsulClient(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	h := e.client.Health()

	entries, qm, err := h.Service("web", "", false, nil)
	if err != nil || len(entries) != 2 {
		t.Fatalf("Health().Service(web) = %+v, %v", entries, err)
	}
	if qm.LastIndex != e.store.State().ServiceIndex("web") {
		t.Errorf("index %d, want the service's index %d", qm.LastIndex, e.store.State().ServiceIndex("web"))
	}
	e1 := entries[0]
	if e1.Node.Node != "n1" || e1.Node.ID != testNodeID || e1.Node.Datacenter != "dc1" || e1.Node.Meta["rack"] != "r1" ||
		e1.Service.ID != "web-1" || e1.Service.Service != "web" || e1.Service.Port != 8080 || e1.Service.Address != "10.0.0.11" ||
		e1.Service.Weights != (consul.AgentWeights{Passing: 1, Warning: 1}) {
		t.Errorf("entry 0 = node %+v service %+v", e1.Node, e1.Service)
	}
	var ids []string
	for _, c := range e1.Checks {
		ids = append(ids, c.CheckID)
	}
	if !reflect.DeepEqual(ids, []string{"serfHealth", "web-1-http"}) {
		t.Errorf("checks of web on n1 = %v, want the node's serfHealth and the service's own", ids)
	}
	c := e1.Checks[1]
	if c.Node != "n1" || c.Status != "passing" || c.ServiceID != "web-1" || c.ServiceName != "web" ||
		!reflect.DeepEqual(c.ServiceTags, []string{"prod", "v1"}) || c.Output != "HTTP GET: 200 OK" || c.Type != "http" ||
		c.Definition.HTTP != "http://10.0.0.11:8080/health" || c.Definition.IntervalDuration != 10*time.Second {
		t.Errorf("service check = %+v (definition %+v)", c, c.Definition)
	}
	if got := e1.Checks.AggregatedStatus(); got != "passing" {
		t.Errorf("n1 aggregated status %q, want passing", got)
	}
	if got := entries[1].Checks.AggregatedStatus(); got != "warning" {
		t.Errorf("n2 aggregated status %q, want warning", got)
	}

	passing, _, err := h.Service("web", "", true, nil)
	if err != nil || len(passing) != 1 || passing[0].Node.Node != "n1" {
		t.Errorf("Health().Service(web, passing) = %+v, %v; want n1 only (warning is not passing)", passing, err)
	}
	if tagged, _, _ := h.Service("web", "canary", false, nil); len(tagged) != 1 || tagged[0].Service.ID != "web-2" {
		t.Errorf("Health().Service(web, canary) = %+v", tagged)
	}
	if tagged, _, _ := h.ServiceMultipleTags("web", []string{"canary", "prod"}, false, nil); len(tagged) != 0 {
		t.Errorf("Health().ServiceMultipleTags(web, canary+prod) = %+v, want none", tagged)
	}

	states := map[string]int{"any": 4, "passing": 3, "warning": 1, "critical": 0}
	for state, n := range states {
		checks, qm, err := h.State(state, nil)
		if err != nil || len(checks) != n || qm.LastIndex == 0 {
			t.Errorf("State(%s) = %d checks (index %d), %v; want %d", state, len(checks), qm.LastIndex, err, n)
		}
	}
	if checks, _, _ := h.Node("n2", nil); len(checks) != 2 {
		t.Errorf("Health().Node(n2) = %+v", checks)
	}
	if checks, _, _ := h.Checks("web", nil); len(checks) != 2 || checks[0].CheckID != "web-1-http" || checks[1].CheckID != "web-2-http" {
		t.Errorf("Health().Checks(web) = %+v, want both instances' service checks", checks)
	}
	if checks, _, err := h.Checks("api", nil); err != nil || len(checks) != 0 {
		t.Errorf("Health().Checks(api) = %+v, %v; want none", checks, err)
	}
}

// The JSON is Consul's: field names as CONSUL-COMPAT.md lists them, lists
// and maps never null.
func TestCatalogJSONShapes(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.register(t, &consul.CatalogRegistration{Node: "bare", Address: "10.0.0.9",
		Service: &consul.AgentService{Service: "plain"}})

	get := func(t *testing.T, path string) any {
		t.Helper()
		code, body, _ := call(t, "GET", e.base+path, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
		return v
	}
	fieldsOf := func(m any) []string {
		var out []string
		for k := range m.(map[string]any) {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	mustHave := func(t *testing.T, what string, m any, fields ...string) {
		t.Helper()
		obj := m.(map[string]any)
		for _, f := range fields {
			v, ok := obj[f]
			if !ok {
				t.Errorf("%s lacks %q (has %v)", what, f, fieldsOf(m))
				continue
			}
			if v == nil {
				t.Errorf("%s.%s is null", what, f)
			}
		}
	}

	v := get(t, "/v1/catalog/service/plain")
	mustHave(t, "catalog service entry", v.([]any)[0], "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta",
		"ServiceID", "ServiceName", "ServiceAddress", "ServiceTags", "ServicePort", "ServiceMeta", "ServiceWeights",
		"ServiceEnableTagOverride", "CreateIndex", "ModifyIndex")

	v = get(t, "/v1/catalog/nodes")
	mustHave(t, "node", v.([]any)[0], "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta")

	v = get(t, "/v1/catalog/services")
	if tags := v.(map[string]any)["plain"]; tags == nil || len(tags.([]any)) != 0 {
		t.Errorf("catalog/services plain = %v, want []", tags)
	}

	v = get(t, "/v1/catalog/node/bare")
	mustHave(t, "catalog node", v, "Node", "Services")
	mustHave(t, "catalog node service", v.(map[string]any)["Services"].(map[string]any)["plain"], "ID", "Service", "Tags", "Meta", "Port", "Address", "Weights")

	e.register(t, &consul.CatalogRegistration{Node: "bare", SkipNodeUpdate: true,
		Checks: consul.HealthChecks{{CheckID: "c", Name: "c", ServiceID: "plain", Status: "critical"}}})
	v = get(t, "/v1/health/service/plain")
	entry := v.([]any)[0]
	mustHave(t, "health entry", entry, "Node", "Service", "Checks")
	mustHave(t, "health entry node", entry.(map[string]any)["Node"], "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta")
	mustHave(t, "health entry service", entry.(map[string]any)["Service"], "ID", "Service", "Tags", "Address", "Port", "Meta", "Weights")
	mustHave(t, "health check", entry.(map[string]any)["Checks"].([]any)[0], "Node", "CheckID", "Name", "Status", "Notes",
		"Output", "ServiceID", "ServiceName", "ServiceTags", "Type", "Definition")
	if st := entry.(map[string]any)["Checks"].([]any)[0].(map[string]any)["Status"]; st != "critical" {
		t.Errorf("check status %v, want critical", st)
	}

	for _, path := range []string{"/v1/catalog/service/none", "/v1/health/service/none", "/v1/health/checks/none",
		"/v1/health/node/none", "/v1/health/state/warning"} {
		if code, body, _ := call(t, "GET", e.base+path, nil); code != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET %s = %d %q, want 200 []", path, code, body)
		}
	}
	if code, body, _ := call(t, "GET", e.base+"/v1/catalog/node/none", nil); code != 200 || strings.TrimSpace(body) != "null" {
		t.Errorf("GET /v1/catalog/node/none = %d %q, want 200 null", code, body)
	}
}

// A watcher of web's health sleeps through a registration of api and is
// woken by a change to web's checks.
func TestBlockingHealthServiceGranularity(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	idx := e.store.State().ServiceIndex("web")

	const wait = 400 * time.Millisecond
	b := e.startGet(context.Background(), fmt.Sprintf("/v1/health/service/web?index=%d&wait=%s", idx, wait))
	e.waitBlocked(t, 1)
	e.register(t, &consul.CatalogRegistration{Node: "n3", Address: "10.0.0.3",
		Service: &consul.AgentService{Service: "api"}, Check: &consul.AgentCheck{CheckID: "api", ServiceID: "api", Status: "critical"}})
	e.register(t, &consul.CatalogRegistration{Node: "n2", SkipNodeUpdate: true,
		Service: &consul.AgentService{Service: "api", Port: 9999}})
	if _, err := e.client.KV().Put(&consul.KVPair{Key: "web", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	r := b.result(t, 10*time.Second)
	if r.code != 200 || r.index != idx || r.elapsed < wait {
		t.Fatalf("got %d at index %d after %s; want 200 at the same index %d after the full wait: woken by writes to others", r.code, r.index, r.elapsed, idx)
	}

	// With the Consul client, as Prometheus and consul-template block.
	type res struct {
		entries []*consul.ServiceEntry
		qm      *consul.QueryMeta
		err     error
	}
	done := make(chan res, 1)
	go func() {
		entries, qm, err := e.client.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: idx, WaitTime: time.Minute})
		done <- res{entries, qm, err}
	}()
	e.waitBlocked(t, 1)
	e.register(t, &consul.CatalogRegistration{Node: "n2", SkipNodeUpdate: true,
		Checks: consul.HealthChecks{{CheckID: "web-2-http", Name: "HTTP", ServiceID: "web-2", Status: "critical", Output: "503"}}})
	select {
	case got := <-done:
		if got.err != nil || got.qm.LastIndex <= idx || got.entries[1].Checks.AggregatedStatus() != "critical" {
			t.Fatalf("blocking Health().Service(web) = %+v, %+v, %v; want the critical check at an index above %d", got.entries, got.qm, got.err, idx)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking Health().Service(web) not woken by a change to web's check")
	}

	// A node-level check belongs to every instance on the node.
	idx = e.store.State().ServiceIndex("web")
	b = e.startGet(context.Background(), fmt.Sprintf("/v1/health/service/web?index=%d&wait=1m", idx))
	e.waitBlocked(t, 1)
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Checks: consul.HealthChecks{{CheckID: "serfHealth", Name: "Serf Health Status", Status: "critical"}}})
	if r := b.result(t, 10*time.Second); r.index <= idx || !strings.Contains(r.body, `"CheckID":"serfHealth","Name":"Serf Health Status","Status":"critical"`) {
		t.Fatalf("after n1's serfHealth went critical: index %d (was %d), body %s", r.index, idx, trim(r.body))
	}
}

// Prometheus' consul_sd_configs: a blocking, stale /v1/catalog/services.
// It wakes for a new service and sleeps through health changes.
func TestPrometheusStyleServicesWatch(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	code, _, hdr := call(t, "GET", e.base+"/v1/catalog/services?stale", nil)
	if code != 200 || hdr.Get("X-Consul-Effective-Consistency") != "stale" {
		t.Fatalf("stale services: %d, consistency %q", code, hdr.Get("X-Consul-Effective-Consistency"))
	}
	var idx uint64
	fmt.Sscan(hdr.Get("X-Consul-Index"), &idx)
	b := e.startGet(context.Background(), fmt.Sprintf("/v1/catalog/services?stale&index=%d&wait=2m", idx))
	e.waitBlocked(t, 1)

	// Health changes do not touch the service list.
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Checks: consul.HealthChecks{{CheckID: "web-1-http", Name: "HTTP", ServiceID: "web-1", Status: "critical"}}})
	select {
	case r := <-b.done:
		t.Fatalf("services watch woken by a check change: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Service: &consul.AgentService{Service: "cache", Tags: []string{"redis"}}})
	r := b.result(t, 10*time.Second)
	if r.code != 200 || r.index <= idx || !strings.Contains(r.body, `"cache":["redis"]`) {
		t.Fatalf("services watch: %d at %d (was %d) %s; want the new service", r.code, r.index, idx, r.body)
	}
	// The Consul client, as Prometheus uses it.
	_, qm, err := e.client.Catalog().Services(&consul.QueryOptions{AllowStale: true, WaitIndex: r.index, WaitTime: 50 * time.Millisecond})
	if err != nil || qm.LastIndex != r.index {
		t.Fatalf("Services(stale, wait index %d) = meta %+v, %v; want the same index at the timeout", r.index, qm, err)
	}
}

func TestBlockingCatalogNodeAndState(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	st := e.store.State()

	t.Run("node", func(t *testing.T) {
		idx := st.NodeIndex("n1")
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/catalog/node/n1?index=%d&wait=300ms", idx))
		e.waitBlocked(t, 1)
		e.register(t, &consul.CatalogRegistration{Node: "n2", SkipNodeUpdate: true, Service: &consul.AgentService{Service: "x"}})
		if r := b.result(t, 10*time.Second); r.index != idx || r.elapsed < 300*time.Millisecond {
			t.Fatalf("n1's watcher woken by a write on n2: index %d after %s", r.index, r.elapsed)
		}
		b = e.startGet(context.Background(), fmt.Sprintf("/v1/catalog/node/n1?index=%d&wait=1m", idx))
		e.waitBlocked(t, 1)
		e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true, Service: &consul.AgentService{Service: "y"}})
		if r := b.result(t, 10*time.Second); r.index <= idx || !strings.Contains(r.body, `"y":{`) {
			t.Fatalf("n1's watcher: index %d, body %s", r.index, r.body)
		}
	})
	t.Run("state", func(t *testing.T) {
		idx := st.ChecksInStateIndex("critical")
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/health/state/critical?index=%d&wait=1m", idx))
		e.waitBlocked(t, 1)
		e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
			Checks: consul.HealthChecks{{CheckID: "disk", Name: "disk", Status: "critical"}}})
		if r := b.result(t, 10*time.Second); r.index <= idx || !strings.Contains(r.body, `"CheckID":"disk"`) {
			t.Fatalf("critical watcher: index %d, body %s", r.index, r.body)
		}
	})
}

// A check turning critical through the catalog invalidates the sessions
// that depend on it, and deregistering a node destroys its sessions.
func TestCatalogInvalidatesSessions(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	sess, _, err := e.client.Session().Create(&consul.SessionEntry{Node: "n1"}, nil) // depends on serfHealth
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := e.client.KV().Acquire(&consul.KVPair{Key: "leader", Value: []byte("n1"), Session: sess}, nil)
	if err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Checks: consul.HealthChecks{{CheckID: "serfHealth", Name: "Serf Health Status", Status: "critical"}}})
	if info, _, _ := e.client.Session().Info(sess, nil); info != nil {
		t.Fatalf("session %s survived its node's serfHealth going critical", sess)
	}
	if p, _, _ := e.client.KV().Get("leader", nil); p == nil || p.Session != "" {
		t.Fatalf("lock after invalidation = %+v, want released", p)
	}

	sess2, _, err := e.client.Session().Create(&consul.SessionEntry{Node: "n2", Checks: []string{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Catalog().Deregister(&consul.CatalogDeregistration{Node: "n2"}, nil); err != nil {
		t.Fatal(err)
	}
	if info, _, _ := e.client.Session().Info(sess2, nil); info != nil {
		t.Fatalf("session %s survived the deregistration of its node", sess2)
	}
}

func TestCatalogReadMeta(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	for _, path := range []string{
		"/v1/catalog/services", "/v1/catalog/service/web", "/v1/catalog/nodes", "/v1/catalog/node/n1",
		"/v1/health/service/web", "/v1/health/checks/web", "/v1/health/node/n1", "/v1/health/state/any",
	} {
		for mode, q := range map[string]string{"leader": "", "consistent": "?consistent", "stale": "?stale"} {
			code, _, hdr := call(t, "GET", e.base+path+q, nil)
			if code != 200 {
				t.Errorf("GET %s%s: %d", path, q, code)
			}
			if hdr.Get("X-Consul-Index") == "" || hdr.Get("X-Consul-Index") == "0" || hdr.Get("X-Consul-KnownLeader") != "true" ||
				hdr.Get("X-Consul-LastContact") != "0" || hdr.Get("X-Consul-Effective-Consistency") != mode {
				t.Errorf("GET %s%s: headers %v", path, q, hdr)
			}
		}
	}
}

// catalogContents is the whole catalog, for checking that a refused
// request changed nothing.
func catalogContents(t testing.TB, st *kvstore.Store) string {
	t.Helper()
	nodes, _ := st.State().Nodes()
	services, _ := st.State().Services()
	checks, _ := st.State().ChecksInState(kvstore.HealthAny)
	var instances []*kvstore.ServiceNode
	for _, name := range slices.Sorted(maps.Keys(services)) {
		sn, _ := st.State().ServiceNodes(name, nil)
		instances = append(instances, sn...)
	}
	b, err := json.Marshal([]any{nodes, instances, checks})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCatalogBadInput(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	cases := []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"missing node", "PUT", "/v1/catalog/register", `{"Address":"10.0.0.5"}`, 400, `"Node"`},
		{"missing address", "PUT", "/v1/catalog/register", `{"Node":"n5"}`, 400, `"Address"`},
		{"bad node ID", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","ID":"nope"}`, 400, `"ID"`},
		{"missing service name", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Service":{"ID":"x","Port":80}}`, 400, `"Service.Service"`},
		{"bad port", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Service":{"Service":"x","Port":70000}}`, 400, `"Service.Port"`},
		{"proxy not an object", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Service":{"Service":"x","Proxy":"yes"}}`, 400, `"Service.Proxy"`},
		{"bad check status", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Check":{"CheckID":"c","Status":"fine"}}`, 400, `Invalid check status "fine" for check "c" (Check.Status)`},
		{"bad status in checks", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Checks":[{"CheckID":"a"},{"CheckID":"c","Status":"ok"}]}`, 400, "(Checks[1].Status)"},
		{"check without ID", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Check":{"Status":"passing"}}`, 400, `"CheckID"`},
		{"check of another node", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Check":{"CheckID":"c","Node":"n1"}}`, 400, "(Check.Node)"},
		{"check for unknown service", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Check":{"CheckID":"c","ServiceID":"web-1"}}`, 400, `service ID "web-1"`},
		{"skip node update of unknown node", "PUT", "/v1/catalog/register", `{"Node":"n5","SkipNodeUpdate":true,"Service":{"Service":"x"}}`, 400, "missing node registration"},
		{"taking a healthy node's name", "PUT", "/v1/catalog/register", `{"Node":"n1","Address":"a","ID":"22222222-2222-4222-8222-222222222222"}`, 409, `node name "n1" is held by healthy node`},
		{"NUL in node", "PUT", "/v1/catalog/register", `{"Node":"a\u0000b","Address":"a"}`, 400, "NUL"},
		{"bad JSON", "PUT", "/v1/catalog/register", `{"Node":`, 400, "Request decode failed"},
		{"wrong type", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Service":{"Service":"x","Port":"80"}}`, 400, "Request decode failed"},
		{"empty body", "PUT", "/v1/catalog/register", ``, 400, "Missing request body"},
		{"other datacenter", "PUT", "/v1/catalog/register", `{"Node":"n5","Address":"a","Datacenter":"dc9"}`, 500, "No path to datacenter"},
		{"body too large", "PUT", "/v1/catalog/register", strings.Repeat(" ", maxCatalogBody+1), 413, "too large"},
		{"deregister without node", "PUT", "/v1/catalog/deregister", `{"ServiceID":"web-1"}`, 400, `"Node"`},
		{"deregister bad JSON", "PUT", "/v1/catalog/deregister", `[`, 400, "Request decode failed"},
		{"unknown state", "GET", "/v1/health/state/sick", "", 400, `Invalid check state "sick"`},
		{"missing state", "GET", "/v1/health/state/", "", 400, "Missing check state"},
		{"missing service", "GET", "/v1/health/service/", "", 400, "Missing service name"},
		{"missing catalog service", "GET", "/v1/catalog/service/", "", 400, "Missing service name"},
		{"missing node", "GET", "/v1/catalog/node/", "", 400, "Missing node name"},
		{"bad passing", "GET", "/v1/health/service/web?passing=maybe", "", 400, "?passing"},
		{"filter syntax", "GET", "/v1/catalog/services?filter=" + url.QueryEscape(`ServiceName ==`), "", 400, "?filter"},
		{"filter unknown selector", "GET", "/v1/catalog/service/web?filter=" + url.QueryEscape(`Nope == "x"`), "", 400, "?filter"},
		{"filter twice", "GET", "/v1/health/service/web?filter=a&filter=b", "", 400, "more than once"},
		{"bad index", "GET", "/v1/health/service/web?index=x", "", 400, `Invalid index "x"`},
		{"stale and consistent", "GET", "/v1/catalog/nodes?stale&consistent", "", 400, "?stale with ?consistent"},
		{"other dc read", "GET", "/v1/catalog/services?dc=dc9", "", 500, "No path to datacenter"},
	}
	before := catalogContents(t, e.store)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := call(t, tc.method, e.base+tc.path, strings.NewReader(tc.body))
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, code, trim(body), tc.code, tc.msg)
			}
			if after := catalogContents(t, e.store); after != before {
				t.Errorf("%s %s changed the catalog", tc.method, tc.path)
			}
		})
	}
}

// On a client agent (no store) catalog and health requests are forwarded;
// /v1/catalog/datacenters is answered locally.
func TestCatalogForwardWithoutStore(t *testing.T) {
	t.Parallel()
	backend, got := recordingBackend(t)
	e := startKV(t, nil, func(c *Config) {
		c.Router = fakeRouter{target: strings.TrimPrefix(backend.URL, "http://")}
		c.ForwardTransport = &http.Transport{}
	})
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/catalog/services?stale&index=3&wait=1s", ""},
		{"GET", "/v1/health/service/web?passing&tag=a&tag=b", ""},
		{"PUT", "/v1/catalog/register", `{"Node":"n1","Address":"a"}`},
		{"PUT", "/v1/catalog/deregister", `{"Node":"n1"}`},
	} {
		code, body, _ := call(t, tc.method, e.base+tc.path, strings.NewReader(tc.body))
		if code != 200 || body != `"from the server"` {
			t.Errorf("%s %s: %d %q, want the server's answer", tc.method, tc.path, code, body)
			continue
		}
		if r := next(t, got); r.method != tc.method || r.body != tc.body {
			t.Errorf("%s %s: backend saw %s %q", tc.method, tc.path, r.method, r.body)
		}
	}
	code, body, _ := call(t, "GET", e.base+"/v1/catalog/datacenters", nil)
	if code != 200 || strings.TrimSpace(body) != `["dc1"]` {
		t.Errorf("datacenters: %d %q", code, body)
	}
}

func TestCompactDefinition(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`{"Interval":"0s","Timeout":"0s","HTTP":"","TLSSkipVerify":false,"Header":null}`: "",
		`{"Interval":"10s","HTTP":"http://x","Header":{},"TCP":""}`:                      `{"HTTP":"http://x","Interval":"10s"}`,
		`{"GRPC":"x:1","GRPCUseTLS":true}`:                                               `{"GRPC":"x:1","GRPCUseTLS":true}`,
	}
	for in, want := range cases {
		if got := string(compactDefinition([]byte(in))); got != want {
			t.Errorf("compactDefinition(%s) = %s, want %s", in, got, want)
		}
	}
}

// ?filter is Consul's filtering language (go-bexpr) over each endpoint's
// result elements, as the Consul client and Prometheus send it.
func TestCatalogFilter(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	cat, hl := e.client.Catalog(), e.client.Health()

	cases := []struct {
		expr string
		want []string // service IDs, in order
	}{
		{`ServiceMeta.version == "1.0"`, []string{"web-1"}},
		{`"canary" in ServiceTags`, []string{"web-2"}},
		{`NodeMeta.rack == "r1" or ServicePort == 8080`, []string{"web-1", "web-2"}},
		{`not ("v1" in ServiceTags) and Node == "n2"`, []string{"web-2"}},
		{`ServiceAddress is empty`, []string{"web-2"}},
		{`Node matches "^n[0-9]$" and ServiceName != "web"`, []string{}},
	}
	for _, tc := range cases {
		got, _, err := cat.Service("web", "", &consul.QueryOptions{Filter: tc.expr})
		if err != nil {
			t.Fatalf("catalog filter %q: %v", tc.expr, err)
		}
		ids := []string{}
		for _, s := range got {
			ids = append(ids, s.ServiceID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("catalog filter %q = %v, want %v", tc.expr, ids, tc.want)
		}
	}

	entries, _, err := hl.Service("web", "", false, &consul.QueryOptions{Filter: `"canary" in Service.Tags and Node.Meta.rack == "r2"`})
	if err != nil || len(entries) != 1 || entries[0].Service.ID != "web-2" {
		t.Errorf("health filter on Service.Tags = %v, %v; want web-2 only", entries, err)
	}
	entries, _, err = hl.Service("web", "", false, &consul.QueryOptions{Filter: `Service.Weights.Passing == 5`})
	if err != nil || len(entries) != 1 || entries[0].Service.ID != "web-2" {
		t.Errorf("health filter on Service.Weights = %v, %v; want web-2 only", entries, err)
	}

	services, _, err := cat.Services(&consul.QueryOptions{Filter: `NodeMeta.rack == "r2"`})
	want := map[string][]string{"web": {"canary", "v2"}, "api": {}}
	if err != nil || !reflect.DeepEqual(services, want) {
		t.Errorf("Services(filter rack r2) = %v, %v; want %v", services, err, want)
	}
	nodes, _, err := cat.Nodes(&consul.QueryOptions{Filter: `Meta.rack == "r1"`})
	if err != nil || len(nodes) != 1 || nodes[0].Node != "n1" {
		t.Errorf("Nodes(filter) = %v, %v; want n1", nodes, err)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`ServiceName == "web"`, `"v1" in ServiceTags and not (Node matches "x")`, `a ==`, `((((`, `Meta.x is not empty`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		rf, rerr := parseFilter(url.Values{"filter": {expr}})
		if rerr != nil {
			if rerr.code != 400 || rerr.msg == "" {
				t.Fatalf("parseFilter(%q): %d %q", expr, rerr.code, rerr.msg)
			}
			return
		}
		// Whatever parses may be applied without a panic.
		_, _ = rf.apply([]catalogServiceJSON{{ServiceName: "web", ServiceTags: []string{"v1"}, ServiceMeta: map[string]string{"a": "b"}}})
	})
}
