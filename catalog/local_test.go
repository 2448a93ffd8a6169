package catalog

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

func svc(id, name string, tags ...string) Service {
	return Service{ID: id, Service: name, Tags: tags, Port: 80, Weights: DefaultWeights}
}

func chk(id, status string) HealthCheck {
	return HealthCheck{CheckID: id, Name: "check " + id, Status: status}
}

func checkIDs(cs []HealthCheck) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.CheckID)
	}
	return ids
}

// fired reports whether ch has a pending notification, consuming it.
func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestLocalStateServices(t *testing.T) {
	l := NewLocalState()
	if _, err := l.AddService(svc("web-2", "web"), nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddService(Service{Service: "db"}, nil, false); err != nil {
		t.Fatal(err)
	}
	if s, ok := l.Service("DB"); !ok || s.ID != "db" {
		t.Errorf("Service(DB) = %+v, %v; want the ID defaulted to the name, found case-insensitively", s, ok)
	}
	// Another spelling of an ID is the same service.
	if _, err := l.AddService(svc("Web-2", "web", "new"), nil, false); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range l.Services() {
		ids = append(ids, s.ID)
	}
	if want := []string{"db", "Web-2"}; !slices.Equal(ids, want) {
		t.Errorf("got %v, want %v", ids, want)
	}
	// What is handed out is a copy.
	s, _ := l.Service("web-2")
	s.Tags[0] = "mutated"
	if s, _ := l.Service("web-2"); s.Tags[0] != "new" {
		t.Errorf("stored tags changed through a returned copy: %v", s.Tags)
	}

	if _, err := l.AddService(Service{ID: "x"}, nil, false); !errors.Is(err, ErrInvalidRegistration) {
		t.Errorf("no name: got %v", err)
	}
	if _, err := l.RemoveService("nope"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("remove unknown: got %v", err)
	}
	if _, err := l.RemoveService("db"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Service("db"); ok {
		t.Errorf("removed service still visible")
	}
	if _, err := l.RemoveService("db"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("remove twice: got %v", err)
	}
}

func TestLocalStateChecks(t *testing.T) {
	l := NewLocalState()
	_, err := l.AddService(svc("web", "web", "v1"), []HealthCheck{chk("a", ""), chk("b", StatusPassing)}, false)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.Check("a")
	if a.Status != StatusCritical || a.ServiceID != "web" || a.ServiceName != "web" || !slices.Equal(a.ServiceTags, []string{"v1"}) {
		t.Errorf("check a: %+v (want critical by default, linked to web)", a)
	}
	if err := l.UpdateCheck("a", StatusPassing, "200 OK"); err != nil {
		t.Fatal(err)
	}
	// Re-registering without a status keeps the current one and its output.
	if _, err := l.AddService(svc("web", "web", "v1"), []HealthCheck{chk("a", "")}, false); err != nil {
		t.Fatal(err)
	}
	if a, _ := l.Check("a"); a.Status != StatusPassing || a.Output != "200 OK" {
		t.Errorf("after re-add: %+v, want passing with its output", a)
	}
	// A given status wins.
	l.AddService(svc("web", "web", "v1"), []HealthCheck{chk("a", StatusWarning)}, false)
	if a, _ := l.Check("a"); a.Status != StatusWarning {
		t.Errorf("after re-add with a status: %q", a.Status)
	}

	if err := l.AddCheck(HealthCheck{CheckID: "mem", Name: "memory", Status: StatusPassing}); err != nil {
		t.Fatal(err)
	}
	if err := l.AddCheck(HealthCheck{CheckID: "c", Name: "c", ServiceID: "nope"}); !errors.Is(err, ErrUnknownService) {
		t.Errorf("check of unknown service: %v", err)
	}
	if err := l.AddCheck(HealthCheck{CheckID: "serfHealth", Name: "x"}); !errors.Is(err, ErrInvalidRegistration) {
		t.Errorf("serfHealth: %v", err)
	}
	if err := l.AddCheck(HealthCheck{CheckID: "_node_maintenance", Name: "x"}); !errors.Is(err, ErrInvalidRegistration) {
		t.Errorf("maintenance ID: %v", err)
	}
	if err := l.AddCheck(HealthCheck{CheckID: "n", Name: "n", Status: "ok"}); !errors.Is(err, ErrInvalidStatus) {
		t.Errorf("bad status: %v", err)
	}
	if err := l.AddCheck(HealthCheck{CheckID: "n"}); !errors.Is(err, ErrInvalidRegistration) {
		t.Errorf("no name: %v", err)
	}
	if err := l.UpdateCheck("a", "ok", ""); !errors.Is(err, ErrInvalidStatus) {
		t.Errorf("update bad status: %v", err)
	}
	if err := l.UpdateCheck("gone", StatusPassing, ""); !errors.Is(err, ErrUnknownCheck) {
		t.Errorf("update unknown: %v", err)
	}
	if got := checkIDs(l.Checks()); !slices.Equal(got, []string{"a", "b", "mem"}) {
		t.Errorf("Checks: %v", got)
	}
	if got := checkIDs(l.ServiceChecks("WEB")); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ServiceChecks: %v", got)
	}

	// replace-existing-checks drops the others (not the maintenance check).
	l.EnableServiceMaintenance("web", "")
	removed, err := l.AddService(svc("web", "web"), []HealthCheck{chk("c", "")}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"a", "b"}) {
		t.Errorf("removed %v, want [a b]", removed)
	}
	if got := checkIDs(l.ServiceChecks("web")); !slices.Equal(got, []string{"_service_maintenance:web", "c"}) {
		t.Errorf("after replace: %v", got)
	}
	// Renamed tags reach the service's checks.
	if c, _ := l.Check("_service_maintenance:web"); len(c.ServiceTags) != 0 {
		t.Errorf("tags not updated on checks: %v", c.ServiceTags)
	}

	removed, err = l.RemoveService("web")
	if err != nil || !slices.Equal(removed, []string{"_service_maintenance:web", "c"}) {
		t.Errorf("RemoveService: %v, %v", removed, err)
	}
	if got := checkIDs(l.Checks()); !slices.Equal(got, []string{"mem"}) {
		t.Errorf("checks left: %v", got)
	}
	if err := l.RemoveCheck("mem"); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveCheck("mem"); !errors.Is(err, ErrUnknownCheck) {
		t.Errorf("remove twice: %v", err)
	}
	if _, err := l.AddService(svc("x", "x"), []HealthCheck{chk("d", ""), chk("D", "")}, false); !errors.Is(err, ErrInvalidRegistration) {
		t.Errorf("duplicate check IDs: %v", err)
	}
}

func TestLocalStateNotify(t *testing.T) {
	l := NewLocalState()
	ch, stop := l.Watch()
	defer stop()
	v0 := l.Version()

	l.AddService(svc("web", "web"), []HealthCheck{chk("a", StatusPassing)}, false)
	if !fired(ch) || l.Version() == v0 {
		t.Fatal("add: no notification")
	}
	l.AddService(svc("web", "web"), []HealthCheck{chk("a", StatusPassing)}, false)
	if fired(ch) {
		t.Error("identical re-add notified")
	}
	l.UpdateCheck("a", StatusPassing, "")
	if fired(ch) {
		t.Error("unchanged result notified")
	}
	l.UpdateCheck("a", StatusPassing, "new output")
	if !fired(ch) {
		t.Error("output change: no notification")
	}
	l.EnableNodeMaintenance("")
	l.EnableNodeMaintenance("again") // coalesced into one pending value
	if !fired(ch) || fired(ch) {
		t.Error("want exactly one pending notification")
	}
	stop()
	l.DisableNodeMaintenance()
	if fired(ch) {
		t.Error("notified after stop")
	}
}

func TestMaintenance(t *testing.T) {
	l := NewLocalState()
	l.AddService(svc("web", "web"), nil, false)

	l.EnableNodeMaintenance("kernel upgrade")
	l.EnableNodeMaintenance("second reason")
	c, ok := l.Check(NodeMaintCheckID)
	want := HealthCheck{CheckID: "_node_maintenance", Name: "Node Maintenance Mode", Notes: "kernel upgrade", Status: "critical", Type: "maintenance"}
	if !ok || !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if r, on := l.NodeMaintenance(); !on || r != "kernel upgrade" {
		t.Errorf("NodeMaintenance = %q, %v", r, on)
	}
	l.DisableNodeMaintenance()
	if _, on := l.NodeMaintenance(); on {
		t.Error("still in maintenance")
	}
	l.EnableNodeMaintenance("")
	if r, _ := l.NodeMaintenance(); r != defaultNodeMaintReason {
		t.Errorf("default reason %q", r)
	}

	if err := l.EnableServiceMaintenance("nope", "x"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("unknown service: %v", err)
	}
	if err := l.EnableServiceMaintenance("WEB", "deploy"); err != nil {
		t.Fatal(err)
	}
	c, _ = l.Check("_service_maintenance:web")
	if c.Notes != "deploy" || c.ServiceID != "web" || c.ServiceName != "web" || c.Status != StatusCritical || c.Name != "Service Maintenance Mode" {
		t.Errorf("service maintenance check %+v", c)
	}
	if r, on := l.ServiceMaintenance("web"); !on || r != "deploy" {
		t.Errorf("ServiceMaintenance = %q, %v", r, on)
	}
	e := ServiceEntry{Service: svc("web", "web"), Checks: l.Checks()}
	if got := e.AggregatedStatus(); got != StatusMaintenance {
		t.Errorf("AggregatedStatus = %q", got)
	}
	if err := l.DisableServiceMaintenance("web"); err != nil {
		t.Fatal(err)
	}
	if _, on := l.ServiceMaintenance("web"); on {
		t.Error("service still in maintenance")
	}
	if err := l.DisableServiceMaintenance("nope"); !errors.Is(err, ErrUnknownService) {
		t.Errorf("disable unknown: %v", err)
	}
}

func opIDs(ops []syncOp) []string {
	var out []string
	for _, op := range ops {
		s := op.kind.String() + " " + op.id
		for _, c := range op.checks {
			if op.kind == opRegisterService {
				s += "+" + c.CheckID
			}
		}
		out = append(out, s)
	}
	return out
}

func TestLocalStateSyncBookkeeping(t *testing.T) {
	clk := newFakeClock()
	l := NewLocalState()
	l.now = clk.Now
	l.AddService(svc("web", "web"), []HealthCheck{chk("w1", StatusPassing)}, false)
	l.AddService(svc("db", "db"), nil, false)
	l.AddCheck(chk("node", StatusPassing))

	ops, _ := l.pendingOps(clk.Now(), time.Minute)
	if got, want := opIDs(ops), []string{"register db", "register web+w1", "register node"}; !slices.Equal(got, want) {
		t.Fatalf("ops %v, want %v", got, want)
	}
	// A change while the push is on its way keeps the entry out of sync.
	l.UpdateCheck("w1", StatusCritical, "down")
	for _, op := range ops {
		l.markSynced(op)
	}
	ops, _ = l.pendingOps(clk.Now(), time.Minute)
	if got, want := opIDs(ops), []string{"register w1"}; !slices.Equal(got, want) {
		t.Fatalf("after a racing change: %v, want %v", got, want)
	}
	l.markSynced(ops[0])
	if n := l.pendingCount(); n != 0 {
		t.Fatalf("pending %d", n)
	}

	// Output alone waits for the interval.
	l.UpdateCheck("w1", StatusCritical, "still down")
	ops, next := l.pendingOps(clk.Now(), time.Minute)
	if len(ops) != 0 || !next.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("output change: ops %v, next %v", opIDs(ops), next)
	}
	clk.Advance(time.Minute)
	ops, _ = l.pendingOps(clk.Now(), time.Minute)
	if got := opIDs(ops); !slices.Equal(got, []string{"register w1"}) {
		t.Fatalf("after the interval: %v", got)
	}
	if ops, _ := l.pendingOps(clk.Now().Add(-time.Hour), -1); len(ops) != 1 {
		t.Fatalf("without deferral: %v", opIDs(ops))
	}
	l.markSynced(ops[0])

	// Removals wait as tombstones, invisible to readers.
	l.RemoveService("web")
	if _, ok := l.Service("web"); ok {
		t.Fatal("tombstone visible")
	}
	ops, _ = l.pendingOps(clk.Now(), time.Minute)
	if got, want := opIDs(ops), []string{"deregister web", "deregister w1"}; !slices.Equal(got, want) {
		t.Fatalf("removal ops %v, want %v", got, want)
	}
	// Re-adding before the push turns the tombstone back into an entry.
	l.AddService(svc("web", "web"), nil, false)
	l.markSynced(ops[0])
	if _, ok := l.Service("web"); !ok {
		t.Fatal("re-added service lost to a stale deregistration")
	}
	ops, _ = l.pendingOps(clk.Now(), time.Minute)
	if got, want := opIDs(ops), []string{"deregister w1", "register web"}; !slices.Equal(got, want) {
		t.Fatalf("ops %v, want %v", got, want)
	}
}

func TestReconcile(t *testing.T) {
	clk := newFakeClock()
	l := NewLocalState()
	l.AddService(svc("web", "web", "local"), []HealthCheck{chk("w1", StatusPassing)}, false)
	l.AddService(Service{ID: "tagged", Service: "tagged", Tags: []string{"mine"}, EnableTagOverride: true, Weights: DefaultWeights}, nil, false)
	l.AddService(svc("same", "same"), []HealthCheck{{CheckID: "s1", Name: "s1", Status: StatusPassing, Output: "local output"}}, false)
	l.AddCheck(chk("gone-remote", StatusPassing))
	l.RemoveService("same") // tombstone the servers still hold
	l.AddService(svc("same", "same"), []HealthCheck{{CheckID: "s1", Name: "s1", Status: StatusPassing, Output: "local output"}}, false)

	remote := &NodeServices{
		Node: &Node{Node: "n1"},
		Services: []Service{
			svc("web", "web", "remote"), // differs
			{ID: "tagged", Service: "tagged", Tags: []string{"theirs"}, EnableTagOverride: true, Weights: DefaultWeights},
			svc("same", "same"),
			svc("stray", "stray"),
			svc("consul", "consul"),
		},
		Checks: []HealthCheck{
			{CheckID: "serfHealth", Name: "Serf Health Status", Status: StatusPassing},
			{CheckID: "w1", Name: "check w1", Status: StatusPassing, ServiceID: "web"},
			{CheckID: "s1", Name: "s1", Status: StatusPassing, Output: "old output", ServiceID: "same"},
			{CheckID: "stray-check", Name: "x", Status: StatusCritical},
		},
	}
	l.reconcile(remote, clk.Now())
	ops, next := l.pendingOps(clk.Now(), time.Minute)
	want := []string{"deregister stray", "deregister stray-check", "register web", "register gone-remote"}
	if got := opIDs(ops); !slices.Equal(got, want) {
		t.Errorf("ops %v, want %v", got, want)
	}
	if !next.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("output-only difference not deferred: next %v", next)
	}
	if s, _ := l.Service("tagged"); !slices.Equal(s.Tags, []string{"theirs"}) {
		t.Errorf("EnableTagOverride: tags %v, want the servers'", s.Tags)
	}
	// The consul service and serfHealth are the servers'; never touched.
	if _, ok := l.services["consul"]; ok {
		t.Error("consul service tombstoned")
	}
	if _, ok := l.checks["serfhealth"]; ok {
		t.Error("serfHealth tombstoned")
	}
	// A tombstone the servers no longer hold is dropped.
	l.RemoveCheck("gone-remote")
	l.reconcile(&NodeServices{Node: &Node{Node: "n1"}}, clk.Now())
	if _, ok := l.checks["gone-remote"]; ok {
		t.Error("tombstone kept after the servers lost the check")
	}
}
