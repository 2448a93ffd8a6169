package kvstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	uuid1 = "11111111-1111-4111-8111-111111111111"
	uuid2 = "22222222-2222-4222-8222-222222222222"
)

func (ts *tstate) register(r CatalogRegistration) *Result {
	ts.t.Helper()
	return ts.do(Command{Type: CmdCatalogRegister, Register: &r})
}

func (ts *tstate) deregister(d CatalogDeregistration) *Result {
	ts.t.Helper()
	return ts.do(Command{Type: CmdCatalogDeregister, Deregister: &d})
}

// instance registers node (address 10.0.0.<n>) with one service and its
// checks.
func (ts *tstate) instance(node string, svc NodeService, checks ...*HealthCheck) {
	ts.t.Helper()
	ts.register(CatalogRegistration{Node: Node{Node: node, Address: "10.0.0.1"}, Service: &svc, Checks: checks})
}

// serviceOn registers a service on an existing node.
func (ts *tstate) serviceOn(node string, svc NodeService) {
	ts.t.Helper()
	ts.register(CatalogRegistration{Node: Node{Node: node}, SkipNodeUpdate: true, Service: &svc})
}

// nodeCheck registers a node-level check (the node must exist).
func (ts *tstate) nodeCheck(node, id, status string) {
	ts.t.Helper()
	ts.register(CatalogRegistration{Node: Node{Node: node}, SkipNodeUpdate: true,
		Checks: []*HealthCheck{{CheckID: id, Name: id, Status: status}}})
}

func svcCheck(id, serviceID, status string) *HealthCheck {
	return &HealthCheck{CheckID: id, Name: id, ServiceID: serviceID, Status: status}
}

func checkIDs(cs []*HealthCheck) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Node+"/"+c.CheckID+"="+c.Status)
	}
	return out
}

func TestCatalogRegisterAndRead(t *testing.T) {
	ts := newTState(t)
	ts.register(CatalogRegistration{
		Node: Node{ID: uuid1, Node: "n1", Address: "10.0.0.1", Datacenter: "dc1",
			TaggedAddresses: map[string]string{"lan": "10.0.0.1"}, Meta: map[string]string{"rack": "a"}},
		Service: &NodeService{Service: "web", Tags: []string{"v1", "prod"}, Port: 80,
			Meta: map[string]string{"version": "1"}, Weights: Weights{Passing: 3, Warning: 1},
			TaggedAddresses: map[string]ServiceAddress{"wan": {Address: "1.2.3.4", Port: 8080}}},
		Checks: []*HealthCheck{
			{Name: "web-http", ServiceID: "web", Status: HealthPassing, Output: "200 OK", Definition: []byte(`{"HTTP":"http://x"}`)},
			{CheckID: SerfCheckID, Name: "Serf Health Status", Status: HealthPassing},
			{CheckID: "disk"}, // no status: critical
		},
	}) // 1
	ts.instance("n2", NodeService{ID: "web-2", Service: "web", Tags: []string{"v2"}, Port: 81},
		svcCheck("web-2-tcp", "web-2", HealthWarning)) // 2
	ts.instance("n2", NodeService{Service: "api", Port: 90}) // 3

	nodes, idx := ts.s.Nodes()
	if len(nodes) != 2 || nodes[0].Node != "n1" || nodes[1].Node != "n2" || idx != 2 {
		t.Fatalf("Nodes() = %v at %d, want n1, n2 at 2", nodes, idx)
	}
	want := Node{ID: uuid1, Node: "n1", Address: "10.0.0.1", Datacenter: "dc1",
		TaggedAddresses: map[string]string{"lan": "10.0.0.1"}, Meta: map[string]string{"rack": "a"}, CreateIndex: 1, ModifyIndex: 1}
	if !reflect.DeepEqual(*nodes[0], want) {
		t.Fatalf("node n1 = %+v, want %+v", *nodes[0], want)
	}

	services, idx := ts.s.Services()
	if !reflect.DeepEqual(services, map[string][]string{"web": {"prod", "v1", "v2"}, "api": {}}) || idx != 3 {
		t.Fatalf("Services() = %v at %d", services, idx)
	}
	byMeta, _ := ts.s.ServicesByNodeMeta(map[string]string{"rack": "a"})
	if !reflect.DeepEqual(byMeta, map[string][]string{"web": {"prod", "v1"}}) {
		t.Fatalf("ServicesByNodeMeta(rack=a) = %v", byMeta)
	}

	sn, idx := ts.s.ServiceNodes("WEB", nil) // names are case-insensitive
	if len(sn) != 2 || sn[0].Node.Node != "n1" || sn[0].Service.ID != "web" || sn[1].Service.ID != "web-2" || idx != 2 {
		t.Fatalf("ServiceNodes(web) = %+v at %d", sn, idx)
	}
	if s := sn[0].Service; s.Node != "n1" || s.Port != 80 || s.Weights.Passing != 3 || s.TaggedAddresses["wan"].Port != 8080 || s.CreateIndex != 1 {
		t.Fatalf("web on n1 = %+v", s)
	}
	if sn, _ := ts.s.ServiceNodes("web", []string{"PROD", "v1"}); len(sn) != 1 || sn[0].Node.Node != "n1" {
		t.Fatalf("ServiceNodes(web, [PROD v1]) = %+v, want the n1 instance only", sn)
	}
	if sn, _ := ts.s.ServiceNodes("web", []string{"v1", "v2"}); len(sn) != 0 {
		t.Fatalf("ServiceNodes(web, [v1 v2]) = %+v, want none: every tag must match", sn)
	}

	csn, _ := ts.s.CheckServiceNodes("web", nil, false)
	if len(csn) != 2 {
		t.Fatalf("CheckServiceNodes(web) = %d entries", len(csn))
	}
	if got := checkIDs(csn[0].Checks); !reflect.DeepEqual(got, []string{"n1/disk=critical", "n1/serfHealth=passing", "n1/web-http=passing"}) {
		t.Fatalf("checks of web on n1 = %v (node-level checks belong to every instance)", got)
	}
	if c := csn[0].Checks[2]; c.ServiceName != "web" || !reflect.DeepEqual(c.ServiceTags, []string{"v1", "prod"}) || string(c.Definition) != `{"HTTP":"http://x"}` {
		t.Fatalf("service check = %+v, want the service's name and tags copied in", c)
	}
	if got := checkIDs(csn[1].Checks); !reflect.DeepEqual(got, []string{"n2/web-2-tcp=warning"}) {
		t.Fatalf("checks of web-2 on n2 = %v", got)
	}
	if csn, _ := ts.s.CheckServiceNodes("web", nil, true); len(csn) != 0 {
		t.Fatalf("passing only: %d entries, want 0 (n1 has a critical check, n2 a warning)", len(csn))
	}
	if csn, _ := ts.s.CheckServiceNodes("api", nil, true); len(csn) != 1 {
		t.Fatalf("passing only api (no checks at all): %d entries, want 1", len(csn))
	}

	ns, nidx := ts.s.Node("N1")
	if ns == nil || ns.Node.Node != "n1" || len(ns.Services) != 1 || ns.Services[0].ID != "web" || nidx != 1 {
		t.Fatalf("Node(n1) = %+v at %d", ns, nidx)
	}
	if ns, _ := ts.s.Node("nope"); ns != nil {
		t.Fatalf("Node(nope) = %+v", ns)
	}
	if nc, idx := ts.s.NodeChecks("n2"); len(nc) != 1 || idx != 3 {
		t.Fatalf("NodeChecks(n2) = %v at %d", checkIDs(nc), idx)
	}
	if sc, _ := ts.s.ServiceChecks("web"); !reflect.DeepEqual(checkIDs(sc), []string{"n1/web-http=passing", "n2/web-2-tcp=warning"}) {
		t.Fatalf("ServiceChecks(web) = %v", checkIDs(sc))
	}
	for state, want := range map[string][]string{
		HealthAny:      {"n1/disk=critical", "n1/serfHealth=passing", "n1/web-http=passing", "n2/web-2-tcp=warning"},
		HealthPassing:  {"n1/serfHealth=passing", "n1/web-http=passing"},
		HealthWarning:  {"n2/web-2-tcp=warning"},
		HealthCritical: {"n1/disk=critical"},
		"bogus":        nil,
	} {
		if got, _ := ts.s.ChecksInState(state); !reflect.DeepEqual(checkIDs(got), want) {
			t.Errorf("ChecksInState(%s) = %v, want %v", state, checkIDs(got), want)
		}
	}
}

func TestCatalogRegisterErrors(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"})
	base := func() CatalogRegistration {
		return CatalogRegistration{Node: Node{Node: "n2", Address: "10.0.0.2"}, Service: &NodeService{Service: "db"}}
	}
	cases := []struct {
		name string
		mod  func(*CatalogRegistration)
		want error
		msg  string
	}{
		{"missing node", func(r *CatalogRegistration) { r.Node.Node = "" }, ErrInvalidCommand, "(Node)"},
		{"missing address", func(r *CatalogRegistration) { r.Node.Address = "" }, ErrInvalidCommand, "(Address)"},
		{"bad node ID", func(r *CatalogRegistration) { r.Node.ID = "not-a-uuid" }, ErrInvalidCommand, "(ID)"},
		{"NUL in node name", func(r *CatalogRegistration) { r.Node.Node = "a\x00b" }, ErrInvalidCommand, "NUL"},
		{"long node name", func(r *CatalogRegistration) { r.Node.Node = strings.Repeat("n", MaxCatalogNameSize+1) }, ErrInvalidCommand, "longer"},
		{"missing service name", func(r *CatalogRegistration) { r.Service.Service = "" }, ErrInvalidCommand, "(Service.Service)"},
		{"bad port", func(r *CatalogRegistration) { r.Service.Port = 70000 }, ErrInvalidCommand, "(Service.Port)"},
		{"bad proxy JSON", func(r *CatalogRegistration) { r.Service.Proxy = []byte("{") }, ErrInvalidCommand, "(Service.Proxy)"},
		{"check without ID", func(r *CatalogRegistration) { r.Checks = []*HealthCheck{{Status: HealthPassing}} }, ErrInvalidCommand, "Checks[0].CheckID"},
		{"bad status", func(r *CatalogRegistration) { r.Checks = []*HealthCheck{{CheckID: "c", Status: "fine"}} }, ErrInvalidCommand, "(Checks[0].Status)"},
		{"check of another node", func(r *CatalogRegistration) { r.Checks = []*HealthCheck{{CheckID: "c", Node: "n1"}} }, ErrInvalidCommand, "(Checks[0].Node)"},
		{"check of unknown service", func(r *CatalogRegistration) {
			r.Checks = []*HealthCheck{{CheckID: "ok"}, {CheckID: "c", ServiceID: "web"}} // web is on n1, not n2
		}, ErrUnknownService, `service ID "web"`},
		{"skip node update of unknown node", func(r *CatalogRegistration) { r.SkipNodeUpdate = true }, ErrMissingNode, `"n2"`},
		{"too many checks", func(r *CatalogRegistration) { r.Checks = make([]*HealthCheck, MaxCatalogChecks+1) }, ErrTooManyOps, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := base()
			c.mod(&reg)
			before := ts.s.load()
			_, err := ts.try(Command{Type: CmdCatalogRegister, Register: &reg})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("register: err %v, want %v containing %q", err, c.want, c.msg)
			}
			after := ts.s.load()
			for _, tr := range []struct{ a, b any }{{before.nodes, after.nodes}, {before.services, after.services},
				{before.checks, after.checks}, {before.svcIdx, after.svcIdx}, {before.nodeIdx, after.nodeIdx}, {before.cat, after.cat}} {
				if tr.a != tr.b {
					t.Fatalf("a refused registration changed the catalog")
				}
			}
		})
	}
}

func TestCatalogUnchangedRegistrationIsANoOp(t *testing.T) {
	ts := newTState(t)
	reg := CatalogRegistration{Node: Node{ID: uuid1, Node: "n1", Address: "10.0.0.1", Meta: map[string]string{}},
		Service: &NodeService{Service: "web", Tags: []string{}}, Checks: []*HealthCheck{svcCheck("c", "web", HealthPassing)}}
	ts.register(reg)
	before := ts.s.load()
	ts.register(reg)
	// The node ID may be left out: the stored one is kept.
	reg.Node.ID = ""
	ts.register(reg)
	after := ts.s.load()
	if before.cat != after.cat || before.svcIdx != after.svcIdx || before.nodeIdx != after.nodeIdx || before.checks != after.checks {
		t.Fatal("re-registering an unchanged node, service and check moved an index")
	}
	if n, _ := ts.s.Node("n1"); n.Node.ID != uuid1 {
		t.Fatalf("node ID after registering without one = %q, want %q kept", n.Node.ID, uuid1)
	}
	reg.Service.Port = 8080
	ts.register(reg)
	if idx := ts.s.ServiceIndex("web"); idx != ts.idx {
		t.Fatalf("ServiceIndex after a port change = %d, want %d", idx, ts.idx)
	}
	if sn, _ := ts.s.ServiceNodes("web", nil); sn[0].Service.CreateIndex != 1 || sn[0].Service.ModifyIndex != ts.idx {
		t.Fatalf("service indexes = %d/%d, want 1/%d", sn[0].Service.CreateIndex, sn[0].Service.ModifyIndex, ts.idx)
	}
}

func TestCatalogDeregister(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"}, svcCheck("web-c", "web", HealthPassing))
	ts.instance("n1", NodeService{Service: "api"}, svcCheck("api-c", "api", HealthPassing))
	ts.nodeCheck("n1", SerfCheckID, HealthPassing)
	ts.instance("n2", NodeService{Service: "web"})

	t.Run("service takes its checks", func(t *testing.T) {
		ts.deregister(CatalogDeregistration{Node: "n1", ServiceID: "API"})
		if nc, _ := ts.s.NodeChecks("n1"); !reflect.DeepEqual(checkIDs(nc), []string{"n1/serfHealth=passing", "n1/web-c=passing"}) {
			t.Fatalf("NodeChecks(n1) = %v", checkIDs(nc))
		}
		if s, _ := ts.s.Services(); len(s) != 1 {
			t.Fatalf("Services() = %v, want web only", s)
		}
	})
	t.Run("check", func(t *testing.T) {
		ts.deregister(CatalogDeregistration{Node: "n1", CheckID: "web-c"})
		if nc, _ := ts.s.NodeChecks("n1"); len(nc) != 1 {
			t.Fatalf("NodeChecks(n1) = %v", checkIDs(nc))
		}
	})
	t.Run("what does not exist", func(t *testing.T) {
		before := ts.s.load()
		ts.deregister(CatalogDeregistration{Node: "n1", ServiceID: "ghost"})
		ts.deregister(CatalogDeregistration{Node: "n1", CheckID: "ghost"})
		ts.deregister(CatalogDeregistration{Node: "ghost"})
		if after := ts.s.load(); after.cat != before.cat || after.nodeIdx != before.nodeIdx || after.svcIdx != before.svcIdx {
			t.Fatal("deregistering nothing moved an index")
		}
	})
	t.Run("node cascades to services, checks and sessions", func(t *testing.T) {
		ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s-n1", Node: "N1", NodeChecks: []string{}}})
		ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s-n2", Node: "n2"}})
		ts.kv(VerbLock, "lock", "v", withSession("s-n1"))
		ts.deregister(CatalogDeregistration{Node: "n1"})
		if ns, _ := ts.s.Node("n1"); ns != nil {
			t.Fatalf("Node(n1) = %+v after deregistration", ns)
		}
		if sn, _ := ts.s.ServiceNodes("web", nil); len(sn) != 1 || sn[0].Node.Node != "n2" {
			t.Fatalf("ServiceNodes(web) = %+v, want n2's only", sn)
		}
		if all, _ := ts.s.ChecksInState(HealthAny); len(all) != 0 {
			t.Fatalf("checks left: %v", checkIDs(all))
		}
		if s, _ := ts.s.Session("s-n1"); s != nil {
			t.Fatal("the session of the deregistered node survived")
		}
		if s, _ := ts.s.Session("s-n2"); s == nil {
			t.Fatal("the session of another node was destroyed")
		}
		if e := ts.get("lock"); e == nil || e.Session != "" {
			t.Fatalf("lock after its session's node left = %+v, want released", e)
		}
	})
}

func TestCatalogCheckInvalidatesSessions(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"}, svcCheck("web-c", "web", HealthPassing))
	ts.nodeCheck("n1", SerfCheckID, HealthPassing)
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "serf", Node: "n1", NodeChecks: []string{SerfCheckID}}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "svc", Node: "n1", NodeChecks: []string{}, ServiceChecks: []ServiceCheck{{ID: "web-c"}}}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "none", Node: "n1", NodeChecks: []string{}}})
	ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "other-node", Node: "n2", NodeChecks: []string{SerfCheckID}}})
	ts.kv(VerbLock, "leader", "me", withSession("serf"))
	live := func() []string {
		all, _ := ts.s.Sessions()
		var ids []string
		for _, s := range all {
			ids = append(ids, s.ID)
		}
		return ids
	}

	ts.nodeCheck("n1", SerfCheckID, HealthWarning)
	if got := live(); len(got) != 4 {
		t.Fatalf("a warning invalidated sessions: %v left", got)
	}
	ts.nodeCheck("n1", SerfCheckID, HealthCritical)
	if got := live(); !reflect.DeepEqual(got, []string{"none", "other-node", "svc"}) {
		t.Fatalf("sessions after serfHealth went critical = %v", got)
	}
	if e := ts.get("leader"); e.Session != "" {
		t.Fatalf("lock of the invalidated session still held: %+v", e)
	}
	ts.deregister(CatalogDeregistration{Node: "n1", CheckID: "web-c"})
	if got := live(); !reflect.DeepEqual(got, []string{"none", "other-node"}) {
		t.Fatalf("sessions after the service check was removed = %v", got)
	}
}

func TestCatalogIndexNeverGoesBackwards(t *testing.T) {
	ts := newTState(t)
	check := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Fatalf("%s = %d, want %d", what, got, want)
		}
	}
	check("ServiceIndex of a service never seen", ts.s.ServiceIndex("web"), 1)
	ts.instance("n1", NodeService{Service: "web"})                     // 1
	ts.instance("n2", NodeService{Service: "web"})                     // 2
	ts.instance("n3", NodeService{Service: "api"})                     // 3
	ts.kv(VerbSet, "k", "v")                                           // 4
	ts.deregister(CatalogDeregistration{Node: "n2", ServiceID: "web"}) // 5
	check("ServiceIndex(web) after removing its newest instance", ts.s.ServiceIndex("web"), 5)
	ts.deregister(CatalogDeregistration{Node: "n1"}) // 6
	check("ServiceIndex(web) after removing its last instance", ts.s.ServiceIndex("web"), 6)
	check("NodeIndex(n1) after deregistration", ts.s.NodeIndex("n1"), 6)
	check("ServiceIndex(api) untouched", ts.s.ServiceIndex("api"), 3)
	check("NodesIndex", ts.s.NodesIndex(), 6)
	check("ServicesIndex", ts.s.ServicesIndex(), 6)
	ts.kv(VerbDelete, "k", "") // 7: a K/V tombstone too

	if !ts.s.hasTombstonesUpTo(6) {
		t.Fatal("hasTombstonesUpTo(6) = false with web's and n1's tombstones at 6")
	}
	before := map[string]uint64{}
	indexes := map[string]func() uint64{
		"web": func() uint64 { return ts.s.ServiceIndex("web") }, "api": func() uint64 { return ts.s.ServiceIndex("api") },
		"n1": func() uint64 { return ts.s.NodeIndex("n1") }, "n3": func() uint64 { return ts.s.NodeIndex("n3") },
		"never": func() uint64 { return ts.s.ServiceIndex("never") }, "nodes": ts.s.NodesIndex,
	}
	for name, f := range indexes {
		before[name] = f()
	}
	if r := ts.do(Command{Type: CmdReapTombstones, ReapIndex: 6}); !r.OK {
		t.Fatal("reap removed nothing")
	}
	if n := ts.s.load().svcIdx.Len(); n != 1 {
		t.Fatalf("%d service index entries after reaping, want api's only", n)
	}
	if n := ts.s.load().nodeIdx.Len(); n != 2 {
		t.Fatalf("%d node index entries after reaping, want n2's and n3's", n)
	}
	for name, f := range indexes {
		if now := f(); now < before[name] {
			t.Fatalf("index of %s went from %d to %d after reaping", name, before[name], now)
		}
	}
	check("ServiceIndex(web) after reaping", ts.s.ServiceIndex("web"), 6)
	check("ServiceIndex(api) after reaping", ts.s.ServiceIndex("api"), 3)
	ts.instance("n1", NodeService{Service: "web"})
	check("ServiceIndex(web) when back", ts.s.ServiceIndex("web"), ts.idx)
}

func TestCatalogWatchGranularity(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"}, svcCheck("web-c", "web", HealthPassing))
	ts.instance("n2", NodeService{Service: "api"}, svcCheck("api-c", "api", HealthPassing))
	ts.nodeCheck("n2", SerfCheckID, HealthPassing)
	ts.register(CatalogRegistration{Node: Node{Node: "n3", Address: "10.0.0.3"}})

	watches := map[string]string{
		"service web": tableSvcPrefix + "web", "service api": tableSvcPrefix + "api",
		"node n1": tableNodePrefix + "n1", "node n2": tableNodePrefix + "n2", "node n3": tableNodePrefix + "n3",
		"nodes": tableNodes, "services": tableServices, "sessions": tableSessions,
		"any": tableChecksPrefix + HealthAny, "passing": tableChecksPrefix + HealthPassing,
		"warning": tableChecksPrefix + HealthWarning, "critical": tableChecksPrefix + HealthCritical,
	}
	cases := []struct {
		name  string
		write func()
		wake  []string
	}{
		{"api check output", func() {
			ts.register(CatalogRegistration{Node: Node{Node: "n2"}, SkipNodeUpdate: true,
				Checks: []*HealthCheck{{CheckID: "api-c", Name: "api-c", ServiceID: "api", Status: HealthPassing, Output: "new"}}})
		}, []string{"service api", "node n2", "any", "passing"}},
		{"api check to critical", func() {
			ts.register(CatalogRegistration{Node: Node{Node: "n2"}, SkipNodeUpdate: true,
				Checks: []*HealthCheck{{CheckID: "api-c", Name: "api-c", ServiceID: "api", Status: HealthCritical}}})
		}, []string{"service api", "node n2", "any", "passing", "critical"}},
		{"node check on n2", func() { ts.nodeCheck("n2", SerfCheckID, HealthWarning) },
			[]string{"service api", "node n2", "any", "passing", "warning"}},
		{"node check on n3 (no services)", func() { ts.nodeCheck("n3", SerfCheckID, HealthPassing) },
			[]string{"node n3", "any", "passing"}},
		{"new api instance", func() { ts.serviceOn("n3", NodeService{Service: "api"}) },
			[]string{"service api", "node n3", "services"}},
		{"api tags", func() { ts.serviceOn("n3", NodeService{Service: "api", Tags: []string{"x"}}) },
			[]string{"service api", "node n3", "services"}},
		{"n1 address", func() { ts.register(CatalogRegistration{Node: Node{Node: "n1", Address: "10.9.9.9"}}) },
			[]string{"service web", "node n1", "nodes"}},
		{"n1 meta", func() {
			ts.register(CatalogRegistration{Node: Node{Node: "n1", Address: "10.9.9.9", Meta: map[string]string{"a": "b"}}})
		}, []string{"service web", "node n1", "nodes", "services"}},
		{"K/V write", func() { ts.kv(VerbSet, "web", "v") }, nil},
		{"unchanged registration", func() { ts.serviceOn("n3", NodeService{Service: "api", Tags: []string{"x"}}) }, nil},
		{"deregister api on n3", func() { ts.deregister(CatalogDeregistration{Node: "n3", ServiceID: "api"}) },
			[]string{"service api", "node n3", "services"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chans := map[string]<-chan struct{}{}
			for name, w := range watches {
				ch, rel := ts.s.watch.watch(watchTable, w)
				defer rel()
				chans[name] = ch
			}
			c.write()
			for name, ch := range chans {
				want := false
				for _, n := range c.wake {
					want = want || n == name
				}
				got := false
				select {
				case <-ch:
					got = true
				default:
				}
				if got != want {
					t.Errorf("watcher of %s woken = %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestCatalogWaitService(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"})
	idx := ts.s.ServiceIndex("web")
	if got, err := ts.s.WaitService(context.Background(), "web", 0); got != idx || err != nil {
		t.Fatalf("WaitService(web, 0) = %d, %v; want %d at once", got, err, idx)
	}
	done := make(chan uint64, 1)
	go func() {
		got, _ := ts.s.WaitService(context.Background(), "Web", idx)
		done <- got
	}()
	waitUntil(t, 5*time.Second, "the waiter to register", func() bool { return ts.s.watch.count() == 1 })
	ts.instance("n2", NodeService{Service: "api"})
	select {
	case got := <-done:
		t.Fatalf("WaitService(web) returned %d on a registration of api", got)
	case <-time.After(50 * time.Millisecond):
	}
	ts.instance("n2", NodeService{Service: "web"})
	select {
	case got := <-done:
		if got != ts.idx {
			t.Fatalf("WaitService(web) = %d, want %d", got, ts.idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitService(web) not woken by a new web instance")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got, err := ts.s.WaitChecksInState(ctx, HealthCritical, ts.s.ChecksInStateIndex(HealthCritical)); err == nil || got != 1 {
		t.Fatalf("WaitChecksInState(critical) = %d, %v; want 1 and the context's error", got, err)
	}
}

func TestCatalogNodeIdentity(t *testing.T) {
	t.Run("rename by ID", func(t *testing.T) {
		ts := newTState(t)
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "old", Address: "10.0.0.1"}, Service: &NodeService{Service: "web"}})
		ts.do(Command{Type: CmdSessionCreate, Session: Session{ID: "s", Node: "old"}})
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "new", Address: "10.0.0.1"}})
		nodes, _ := ts.s.Nodes()
		if len(nodes) != 1 || nodes[0].Node != "new" {
			t.Fatalf("Nodes() = %+v, want the renamed node only", nodes)
		}
		if sn, _ := ts.s.ServiceNodes("web", nil); len(sn) != 0 {
			t.Fatal("the old name's services survived the rename")
		}
		if s, _ := ts.s.Session("s"); s != nil {
			t.Fatal("the old name's session survived the rename")
		}
	})
	t.Run("case of the name", func(t *testing.T) {
		ts := newTState(t)
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "Node1", Address: "10.0.0.1"}})
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "node1", Address: "10.0.0.1"}})
		if nodes, _ := ts.s.Nodes(); len(nodes) != 1 || nodes[0].Node != "node1" {
			t.Fatalf("Nodes() = %+v, want one node spelled node1", nodes)
		}
	})
	t.Run("a healthy node keeps its name", func(t *testing.T) {
		ts := newTState(t)
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "n1", Address: "10.0.0.1"}})
		ts.nodeCheck("n1", SerfCheckID, HealthPassing)
		_, err := ts.try(Command{Type: CmdCatalogRegister, Register: &CatalogRegistration{Node: Node{ID: uuid2, Node: "n1", Address: "10.0.0.2"}}})
		if !errors.Is(err, ErrNodeConflict) {
			t.Fatalf("taking a healthy node's name: err %v, want ErrNodeConflict", err)
		}
		// Once its serfHealth is critical, the name may be taken over.
		ts.nodeCheck("n1", SerfCheckID, HealthCritical)
		ts.register(CatalogRegistration{Node: Node{ID: uuid2, Node: "n1", Address: "10.0.0.2"}})
		if n, _ := ts.s.Node("n1"); n.Node.ID != uuid2 || n.Node.Address != "10.0.0.2" {
			t.Fatalf("Node(n1) = %+v, want the new ID and address", n.Node)
		}
		// The old ID is free again.
		ts.register(CatalogRegistration{Node: Node{ID: uuid1, Node: "n9", Address: "10.0.0.9"}})
		if nodes, _ := ts.s.Nodes(); len(nodes) != 2 {
			t.Fatalf("Nodes() = %+v, want n1 and n9", nodes)
		}
	})
}

func TestCatalogServiceRename(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{ID: "s1", Service: "web", Tags: []string{"a"}}, svcCheck("c", "s1", HealthPassing))
	ch, rel := ts.s.watch.watch(watchTable, tableSvcPrefix+"web")
	defer rel()
	ts.instance("n1", NodeService{ID: "s1", Service: "www", Tags: []string{"b"}})
	select {
	case <-ch:
	default:
		t.Fatal("renaming the instance did not wake the watchers of its old name")
	}
	if sn, _ := ts.s.ServiceNodes("web", nil); len(sn) != 0 {
		t.Fatalf("web still has %d instances", len(sn))
	}
	sc, _ := ts.s.ServiceChecks("www")
	if len(sc) != 1 || sc[0].ServiceName != "www" || !reflect.DeepEqual(sc[0].ServiceTags, []string{"b"}) {
		t.Fatalf("ServiceChecks(www) = %+v, want the check carrying the new name and tags", sc)
	}
}

func TestCatalogSyncAllOrNothing(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "old"})
	ops := []CatalogOp{
		{Register: &CatalogRegistration{Node: Node{Node: "n1"}, SkipNodeUpdate: true, Service: &NodeService{Service: "web"}}},
		{Deregister: &CatalogDeregistration{Node: "n1", ServiceID: "old"}},
		{Register: &CatalogRegistration{Node: Node{Node: "n1"}, SkipNodeUpdate: true,
			Checks: []*HealthCheck{svcCheck("c", "nope", HealthPassing)}}},
	}
	_, err := ts.try(Command{Type: CmdCatalogSync, CatalogOps: ops})
	if !errors.Is(err, ErrUnknownService) || !strings.Contains(err.Error(), "operation 2") {
		t.Fatalf("sync with a bad third op: err %v, want ErrUnknownService naming operation 2", err)
	}
	if s, _ := ts.s.Services(); !reflect.DeepEqual(s, map[string][]string{"old": {}}) {
		t.Fatalf("Services() after a failed sync = %v, want unchanged", s)
	}
	ops[2].Register.Checks[0].ServiceID = "web"
	ts.do(Command{Type: CmdCatalogSync, CatalogOps: ops})
	at := ts.idx
	if s, idx := ts.s.Services(); !reflect.DeepEqual(s, map[string][]string{"web": {}}) || idx != at {
		t.Fatalf("Services() after sync = %v at %d, want web at %d", s, idx, at)
	}
	if sc, _ := ts.s.ServiceChecks("web"); len(sc) != 1 || sc[0].ModifyIndex != at {
		t.Fatalf("ServiceChecks(web) = %+v", sc)
	}
}

func TestCatalogCommandValidate(t *testing.T) {
	reg := func() *CatalogRegistration { return &CatalogRegistration{Node: Node{Node: "n", Address: "a"}} }
	cases := []struct {
		name string
		c    Command
		want error
	}{
		{"ok register", Command{Type: CmdCatalogRegister, Register: reg()}, nil},
		{"nil register", Command{Type: CmdCatalogRegister}, ErrInvalidCommand},
		{"ok deregister", Command{Type: CmdCatalogDeregister, Deregister: &CatalogDeregistration{Node: "n"}}, nil},
		{"deregister without node", Command{Type: CmdCatalogDeregister, Deregister: &CatalogDeregistration{ServiceID: "s"}}, ErrInvalidCommand},
		{"ok sync", Command{Type: CmdCatalogSync, CatalogOps: []CatalogOp{{Register: reg()}}}, nil},
		{"sync op with both", Command{Type: CmdCatalogSync, CatalogOps: []CatalogOp{{Register: reg(), Deregister: &CatalogDeregistration{Node: "n"}}}}, ErrInvalidCommand},
		{"sync op with neither", Command{Type: CmdCatalogSync, CatalogOps: []CatalogOp{{}}}, ErrInvalidCommand},
		{"sync too long", Command{Type: CmdCatalogSync, CatalogOps: make([]CatalogOp, MaxCatalogOps+1)}, ErrTooManyOps},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.c.Validate()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Validate() = %v, want %v", err, c.want)
			}
		})
	}
}

func TestCatalogThroughRaft(t *testing.T) {
	s := newDevStore(t, nil)
	ctx := context.Background()
	_, err := s.Apply(ctx, &Command{Type: CmdCatalogRegister, Register: &CatalogRegistration{
		Node: Node{Node: "n1", Address: "10.0.0.1"}, Service: &NodeService{Service: "web"},
		Checks: []*HealthCheck{{CheckID: "c", ServiceID: "web", Status: HealthPassing}}}})
	if err != nil {
		t.Fatal(err)
	}
	if csn, _ := s.State().CheckServiceNodes("web", nil, true); len(csn) != 1 || len(csn[0].Checks) != 1 {
		t.Fatalf("CheckServiceNodes(web) = %+v", csn)
	}
	_, err = s.Apply(ctx, &Command{Type: CmdCatalogRegister, Register: &CatalogRegistration{Node: Node{Node: "n1"}}})
	if !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), "(Address)") {
		t.Fatalf("register without address: err %v, want ErrInvalidCommand naming Address", err)
	}
	if _, err := s.Apply(ctx, &Command{Type: CmdCatalogDeregister, Deregister: &CatalogDeregistration{Node: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.State().Nodes(); len(n) != 0 {
		t.Fatalf("Nodes() = %+v after deregistration", n)
	}
}

// TestCatalogBatchEquivalence applies a random mix of catalog, session and
// lock commands one log per batch and in random batches: catalog commands
// run on clones like transactions, and a failed one must leave no trace
// in either case.
func TestCatalogBatchEquivalence(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 5))
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	nodes := []string{"n1", "N1", "n2", "n3"}
	randReg := func() *CatalogRegistration {
		r := &CatalogRegistration{Node: Node{Node: pick(nodes...), Address: pick("10.0.0.1", "10.0.0.2"),
			ID: pick("", "", uuid1, uuid2), Meta: map[string]string{"m": pick("a", "b")}}}
		r.SkipNodeUpdate = rnd.IntN(4) == 0
		if rnd.IntN(3) > 0 {
			r.Service = &NodeService{ID: pick("", "s1", "s2"), Service: pick("web", "api", "Web"), Tags: []string{pick("a", "b")}, Port: rnd.IntN(3)}
		}
		for i := rnd.IntN(3); i > 0; i-- {
			r.Checks = append(r.Checks, &HealthCheck{CheckID: pick(SerfCheckID, "c1", "c2"),
				ServiceID: pick("", "", "s1", "web", "api", "s9"), Status: pick("", HealthPassing, HealthWarning, HealthCritical)})
		}
		return r
	}
	randDereg := func() *CatalogDeregistration {
		d := &CatalogDeregistration{Node: pick(nodes...)}
		switch rnd.IntN(4) {
		case 0:
		case 1, 2:
			d.ServiceID = pick("s1", "s2", "web", "api")
		default:
			d.CheckID = pick(SerfCheckID, "c1", "c2")
		}
		return d
	}
	var cmds []*Command
	for i := 0; i < 500; i++ {
		var c Command
		switch p := rnd.IntN(20); {
		case p < 9:
			c = Command{Type: CmdCatalogRegister, Register: randReg()}
		case p < 12:
			c = Command{Type: CmdCatalogDeregister, Deregister: randDereg()}
		case p < 14:
			c = Command{Type: CmdCatalogSync}
			for j := 1 + rnd.IntN(4); j > 0; j-- {
				if rnd.IntN(3) == 0 {
					c.CatalogOps = append(c.CatalogOps, CatalogOp{Deregister: randDereg()})
				} else {
					c.CatalogOps = append(c.CatalogOps, CatalogOp{Register: randReg()})
				}
			}
		case p < 16:
			c = Command{Type: CmdSessionCreate, Session: Session{ID: pick("a", "b", "c"), Node: pick(nodes...),
				NodeChecks: []string{pick(SerfCheckID, "c1")}, LockDelay: time.Second}}
		case p < 18:
			c = Command{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: pick("k1", "k2"), Session: pick("a", "b", "c")}}
		case p < 19:
			c = Command{Type: CmdKV, KV: KVOp{Verb: VerbSet, Key: pick("k1", "k3")}}
		default:
			c = Command{Type: CmdReapTombstones, ReapIndex: uint64(i - rnd.IntN(30))}
		}
		c.Time = int64(i) * int64(300*time.Millisecond)
		cmds = append(cmds, &c)
	}
	outcomes := assertBatchEquivalent(t, rnd, cmds)
	okCatalog, failedCatalog := 0, 0
	for i, o := range outcomes {
		switch cmds[i].Type {
		case CmdCatalogRegister, CmdCatalogDeregister, CmdCatalogSync:
			if o.err == nil {
				okCatalog++
			} else {
				failedCatalog++
			}
		}
	}
	if okCatalog < 100 || failedCatalog < 20 {
		t.Fatalf("%d catalog commands applied, %d failed: the mix tests too little", okCatalog, failedCatalog)
	}
}

// WaitServicesAny waits on many services with one registration: woken by
// a write to any listed one (names fold case; a service that does not
// exist yet counts from index 1), never by writes to others, and it leaves
// nothing registered behind.
func TestCatalogWaitServicesAny(t *testing.T) {
	ts := newTState(t)
	ts.instance("n1", NodeService{Service: "web"})
	ts.instance("n1", NodeService{Service: "api"})
	names := []string{"Web", "api"}
	for i := range 100 {
		names = append(names, fmt.Sprintf("ghost-%d", i))
	}
	mins := make([]uint64, len(names))
	for i, n := range names {
		mins[i] = max(ts.s.ServiceIndex(n), 1)
	}
	if err := ts.s.WaitServicesAny(context.Background(), names, mins[:1]); err == nil {
		t.Fatal("WaitServicesAny with 102 names and 1 index: no error")
	}
	stale := slices.Clone(mins)
	stale[1]--
	if err := ts.s.WaitServicesAny(context.Background(), names, stale); err != nil {
		t.Fatalf("an index already passed: %v, want nil at once", err)
	}

	done := make(chan error, 1)
	go func() { done <- ts.s.WaitServicesAny(context.Background(), names, mins) }()
	single := make(chan uint64, 1) // a plain WaitService on one of the names shares its group
	go func() { got, _ := ts.s.WaitService(context.Background(), "ghost-7", 1); single <- got }()
	waitUntil(t, 5*time.Second, "the waiters to register", func() bool { return ts.s.watch.count() == len(names) })
	ts.instance("n2", NodeService{Service: "other"})
	ts.kv(VerbSet, "k", "v")
	select {
	case err := <-done:
		t.Fatalf("WaitServicesAny returned (%v) on writes to other services and K/V", err)
	case <-time.After(50 * time.Millisecond):
	}
	ts.instance("n2", NodeService{Service: "Ghost-7"})
	for _, c := range []struct {
		what string
		ok   func() bool
	}{
		{"WaitServicesAny", func() bool {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("WaitServicesAny: %v", err)
				}
				return true
			default:
				return false
			}
		}},
		{"WaitService(ghost-7)", func() bool {
			select {
			case <-single:
				return true
			default:
				return false
			}
		}},
	} {
		waitUntil(t, 5*time.Second, c.what+" woken by a ghost-7 instance", c.ok)
	}
	waitUntil(t, 5*time.Second, "every registration released", func() bool { return ts.s.watch.count() == 0 })

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		done <- ts.s.WaitServicesAny(ctx, names[:2], []uint64{ts.s.ServiceIndex("web"), ts.s.ServiceIndex("api")})
	}()
	waitUntil(t, 5*time.Second, "the waiter to register", func() bool { return ts.s.watch.count() == 2 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitServicesAny did not end with its context")
	}
	waitUntil(t, 5*time.Second, "the registration released", func() bool { return ts.s.watch.count() == 0 })
}
