package kvstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Check statuses, as in Consul. HealthAny is not a status: it selects every
// check in ChecksInState.
const (
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
	HealthAny      = "any"
)

// SerfCheckID is the node-level check the servers keep for every gossip
// member. A node whose serfHealth passes owns its name and ID: another node
// cannot take them over (see CmdCatalogRegister).
const SerfCheckID = "serfHealth"

// Node is an entry of the catalog's node table, with Consul's fields.
//
// Nodes, services and checks handed out by StateStore are copies of the
// stored ones, but their maps and slices are shared with the store: do not
// modify them.
type Node struct {
	// ID is the node's UUID, or "" for nodes registered without one.
	ID   string
	Node string
	// Address is what DNS and clients use for the node's services when a
	// service has no address of its own.
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

// ServiceAddress is a tagged address of a service.
type ServiceAddress struct {
	Address string
	Port    int
}

// Weights are a service instance's DNS SRV weights when its checks pass or
// warn.
type Weights struct {
	Passing int
	Warning int
}

// NodeService is one service instance registered on a node (Consul's
// structs.NodeService).
type NodeService struct {
	// Node is the name of the node the instance runs on.
	Node string
	// ID is unique per node; it defaults to the service name.
	ID      string
	Service string
	Tags    []string
	// Address, when empty, means the node's address.
	Address         string
	TaggedAddresses map[string]ServiceAddress
	Meta            map[string]string
	Port            int
	// Kind is "" for a typical service, or e.g. "connect-proxy".
	Kind string
	// Proxy is the proxy configuration as opaque JSON, or nil.
	Proxy             []byte
	Weights           Weights
	EnableTagOverride bool
	CreateIndex       uint64
	ModifyIndex       uint64
}

// HealthCheck is one check of a node (ServiceID "") or of one of its
// service instances (Consul's structs.HealthCheck).
type HealthCheck struct {
	Node    string
	CheckID string
	Name    string
	// Status is HealthPassing, HealthWarning or HealthCritical. A check
	// registered without one starts critical, as in Consul.
	Status string
	Notes  string
	Output string
	// ServiceID names the instance on the same node the check belongs to.
	// ServiceName and ServiceTags are copied from it by the store.
	ServiceID   string
	ServiceName string
	ServiceTags []string
	// Type is the kind of check ("http", "ttl", "serf", ...), informative.
	Type string
	// Definition is the check's definition as opaque JSON, or nil.
	Definition  []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// CatalogRegistration is the body of CmdCatalogRegister, with Consul's
// structs.RegisterRequest semantics: an upsert of the node (unless
// SkipNodeUpdate), then of the service, then of each check. Anything
// identical to what is stored is left alone, so re-registering an
// unchanged node, service or check moves no index and wakes nobody.
type CatalogRegistration struct {
	// Node is the node to upsert; Node.Node is required, and Node.Address
	// unless SkipNodeUpdate. An empty Node.ID keeps the stored one. Index
	// fields are ignored.
	Node Node
	// SkipNodeUpdate leaves the stored node as it is; it must exist.
	SkipNodeUpdate bool
	// Service, if set, is upserted on the node. An empty ID means the
	// service name. Its Node field is ignored.
	Service *NodeService
	// Checks are upserted on the node. An empty CheckID means the Name; an
	// empty Node means the registration's node (another node is an error);
	// an empty Status means critical. A check with a ServiceID must name a
	// service on the node (this registration's or an earlier one).
	Checks []*HealthCheck
}

// CatalogDeregistration is the body of CmdCatalogDeregister. With neither
// ServiceID nor CheckID it removes the node, with all its services and
// checks, and invalidates all its sessions. Otherwise it removes the
// service (with its checks) and/or the check. Removing what does not exist
// succeeds and changes nothing.
type CatalogDeregistration struct {
	Node      string
	ServiceID string
	CheckID   string
}

// CatalogOp is one operation of a CmdCatalogSync: exactly one of Register
// and Deregister is set.
type CatalogOp struct {
	Register   *CatalogRegistration
	Deregister *CatalogDeregistration
}

// ServiceNode is one instance of a service with its node, as
// /v1/catalog/service returns it (flattened there).
type ServiceNode struct {
	Node    *Node
	Service *NodeService
}

// CheckServiceNode is one instance of a service with its node and its
// checks: the node-level checks (serfHealth among them) and the
// instance's own, sorted by check ID. /v1/health/service returns these.
type CheckServiceNode struct {
	Node    *Node
	Service *NodeService
	Checks  []*HealthCheck
}

// NodeServices is a node with the service instances registered on it,
// sorted by ID.
type NodeServices struct {
	Node     *Node
	Services []*NodeService
}

// catalogIndexes are the catalog's table-wide indexes: the Raft index of
// the last change to each table or check state. They only grow.
type catalogIndexes struct {
	nodes uint64
	// services moves with every change to the service table, and when the
	// Meta of a node hosting services changes (for ?node-meta filters).
	services uint64
	// checks moves with every change to the check table (state "any").
	checks uint64
	// states are per check status: a check entering or leaving a status,
	// or changing while in it, moves that status's index.
	states [3]uint64
}

// stateSlot returns the index of a check status in catalogIndexes.states,
// or -1.
func stateSlot(status string) int {
	switch status {
	case HealthPassing:
		return 0
	case HealthWarning:
		return 1
	case HealthCritical:
		return 2
	}
	return -1
}

// validCheckStatus reports whether s is a check status.
func validCheckStatus(s string) bool { return stateSlot(s) >= 0 }

// Watch names of the catalog (watchTable kind). Per-node and per-service
// names carry the folded name, so a write wakes only the watchers of the
// nodes and services it changed.
const (
	tableNodes        = "catalog/nodes"
	tableServices     = "catalog/services"
	tableChecksPrefix = "catalog/checks/"
	tableNodePrefix   = "catalog/node/"
	tableSvcPrefix    = "catalog/service/"
)

// fold lowers ASCII letters. Catalog names (nodes, service names and IDs,
// check IDs) are case-insensitive, as in Consul; the tables are keyed by
// the folded name and keep the registered spelling in the entry. Only
// ASCII is folded so that every replica folds alike, whatever Unicode
// tables its Go version has.
func fold(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if c := b[j]; 'A' <= c && c <= 'Z' {
			b[j] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// Table keys. Names never contain NUL (validateRegistration), so NUL
// separates the parts of a compound key and ends a prefix.
func nodePrefix(nk string) []byte { return append([]byte(nk), 0) }

func pairKey(nk, id string) []byte {
	b := make([]byte, 0, len(nk)+1+len(id))
	b = append(b, nk...)
	b = append(b, 0)
	return append(b, fold(id)...)
}

// svcNameKey is the service-name index key: fold(name) NUL the instance's
// key in the service table.
func svcNameKey(name string, svcKey []byte) []byte {
	fn := fold(name)
	b := make([]byte, 0, len(fn)+1+len(svcKey))
	b = append(b, fn...)
	b = append(b, 0)
	return append(b, svcKey...)
}

// nodeOfKey returns the node part of a compound key.
func nodeOfKey(k []byte) string {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return string(k[:i])
	}
	return string(k)
}

// Nodes returns every node, sorted by (folded) name, and the index of the
// node table.
func (s *StateStore) Nodes() ([]*Node, uint64) {
	r := s.load()
	var out []*Node
	r.nodes.Root().Walk(func(_ []byte, v interface{}) bool {
		n := *v.(*Node)
		out = append(out, &n)
		return false
	})
	return out, max(r.cat.nodes, 1)
}

// Node returns the node with its services, or nil, and the node's index:
// the last change to the node, its services or its checks. After the node
// is deregistered the index is the deregistration's (a tombstone until
// reaped, then the tombstone floor), so it never goes backwards.
func (s *StateStore) Node(name string) (*NodeServices, uint64) {
	r := s.load()
	nk := fold(name)
	idx := r.nodeIndex(nk)
	n := r.node(nk)
	if n == nil {
		return nil, idx
	}
	c := *n
	out := &NodeServices{Node: &c}
	r.services.Root().WalkPrefix(nodePrefix(nk), func(_ []byte, v interface{}) bool {
		svc := *v.(*NodeService)
		out.Services = append(out.Services, &svc)
		return false
	})
	return out, idx
}

// Services returns every service name with the tags of all its instances
// (sorted, without duplicates; never nil), and the services index.
func (s *StateStore) Services() (map[string][]string, uint64) {
	return s.ServicesByNodeMeta(nil)
}

// ServicesByNodeMeta is Services counting only instances on nodes whose
// Meta has every key and value of filter. It reports the same index.
func (s *StateStore) ServicesByNodeMeta(filter map[string]string) (map[string][]string, uint64) {
	r := s.load()
	out := make(map[string][]string)
	seen := make(map[string]string) // folded name → spelling in out
	var (
		lastNode string
		keep     = true
	)
	r.services.Root().Walk(func(k []byte, v interface{}) bool {
		if len(filter) > 0 {
			if nk := nodeOfKey(k); nk != lastNode {
				lastNode = nk
				n := r.node(nk)
				keep = n != nil && metaMatches(n.Meta, filter)
			}
			if !keep {
				return false
			}
		}
		svc := v.(*NodeService)
		fn := fold(svc.Service)
		name, ok := seen[fn]
		if !ok {
			name = svc.Service
			seen[fn] = name
			out[name] = []string{}
		}
		out[name] = append(out[name], svc.Tags...)
		return false
	})
	for name, tags := range out {
		slices.Sort(tags)
		out[name] = slices.Compact(tags)
	}
	return out, max(r.cat.services, 1)
}

// metaMatches reports whether meta has every pair of filter.
func metaMatches(meta, filter map[string]string) bool {
	for k, v := range filter {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// hasTags reports whether have contains every tag of want, ignoring case
// as Consul does.
func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

// ServiceNodes returns the instances of service name having every tag of
// tags, sorted by node and service ID, and the service's index: the last
// change to any of its instances, their checks, or their nodes (including
// node-level checks), tombstone-aware so it never goes backwards.
func (s *StateStore) ServiceNodes(name string, tags []string) ([]*ServiceNode, uint64) {
	r := s.load()
	var out []*ServiceNode
	r.eachInstance(name, func(n *Node, svc *NodeService) {
		if hasTags(svc.Tags, tags) {
			nc, sc := *n, *svc
			out = append(out, &ServiceNode{Node: &nc, Service: &sc})
		}
	})
	return out, r.serviceIndex(fold(name))
}

// CheckServiceNodes is ServiceNodes with each instance's checks: those of
// its node (ServiceID "") and its own. With passingOnly, only instances
// whose every check passes are returned (a warning is not passing, as in
// Consul's ?passing).
func (s *StateStore) CheckServiceNodes(name string, tags []string, passingOnly bool) ([]*CheckServiceNode, uint64) {
	r := s.load()
	var out []*CheckServiceNode
	r.eachInstance(name, func(n *Node, svc *NodeService) {
		if !hasTags(svc.Tags, tags) {
			return
		}
		var checks []*HealthCheck
		passing := true
		r.checks.Root().WalkPrefix(nodePrefix(fold(n.Node)), func(_ []byte, v interface{}) bool {
			c := v.(*HealthCheck)
			if c.ServiceID == "" || fold(c.ServiceID) == fold(svc.ID) {
				cc := *c
				checks = append(checks, &cc)
				passing = passing && c.Status == HealthPassing
			}
			return false
		})
		if passingOnly && !passing {
			return
		}
		nc, sc := *n, *svc
		out = append(out, &CheckServiceNode{Node: &nc, Service: &sc, Checks: checks})
	})
	return out, r.serviceIndex(fold(name))
}

// eachInstance calls f for every instance of service name, in node and
// service ID order.
func (r *stateRoot) eachInstance(name string, f func(*Node, *NodeService)) {
	prefix := nodePrefix(fold(name))
	r.svcNames.Root().WalkPrefix(prefix, func(k []byte, _ interface{}) bool {
		sk := k[len(prefix):]
		v, ok := r.services.Get(sk)
		if !ok {
			return false
		}
		if n := r.node(nodeOfKey(sk)); n != nil {
			f(n, v.(*NodeService))
		}
		return false
	})
}

// NodeChecks returns the checks of a node (its own and its services'),
// sorted by check ID, and the node's index.
func (s *StateStore) NodeChecks(node string) ([]*HealthCheck, uint64) {
	r := s.load()
	nk := fold(node)
	var out []*HealthCheck
	r.checks.Root().WalkPrefix(nodePrefix(nk), func(_ []byte, v interface{}) bool {
		c := *v.(*HealthCheck)
		out = append(out, &c)
		return false
	})
	return out, r.nodeIndex(nk)
}

// ServiceChecks returns the checks of every instance of service name (not
// the node-level ones), sorted by node and check ID, and the service's
// index.
func (s *StateStore) ServiceChecks(name string) ([]*HealthCheck, uint64) {
	r := s.load()
	var out []*HealthCheck
	nodes := map[string]bool{}
	r.eachInstance(name, func(n *Node, _ *NodeService) {
		nodes[fold(n.Node)] = true
	})
	fn := fold(name)
	for _, nk := range sortedKeys(nodes) {
		r.checks.Root().WalkPrefix(nodePrefix(nk), func(_ []byte, v interface{}) bool {
			if c := v.(*HealthCheck); c.ServiceID != "" && fold(c.ServiceName) == fn {
				cc := *c
				out = append(out, &cc)
			}
			return false
		})
	}
	return out, r.serviceIndex(fn)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ChecksInState returns the checks with the given status, or every check
// for HealthAny, sorted by node and check ID, and that state's index. An
// unknown state gives no checks and the check table's index.
func (s *StateStore) ChecksInState(state string) ([]*HealthCheck, uint64) {
	r := s.load()
	var out []*HealthCheck
	if state == HealthAny || validCheckStatus(state) {
		r.checks.Root().Walk(func(_ []byte, v interface{}) bool {
			if c := v.(*HealthCheck); state == HealthAny || c.Status == state {
				cc := *c
				out = append(out, &cc)
			}
			return false
		})
	}
	return out, r.stateIndex(state)
}

// NodesIndex returns the index Nodes reports.
func (s *StateStore) NodesIndex() uint64 { return max(s.load().cat.nodes, 1) }

// NodeIndex returns the index Node(name) and NodeChecks(name) report.
func (s *StateStore) NodeIndex(name string) uint64 { return s.load().nodeIndex(fold(name)) }

// ServicesIndex returns the index Services and ServicesByNodeMeta report.
func (s *StateStore) ServicesIndex() uint64 { return max(s.load().cat.services, 1) }

// ServiceIndex returns the index ServiceNodes, CheckServiceNodes and
// ServiceChecks report for service name.
func (s *StateStore) ServiceIndex(name string) uint64 { return s.load().serviceIndex(fold(name)) }

// ChecksInStateIndex returns the index ChecksInState(state) reports.
func (s *StateStore) ChecksInStateIndex(state string) uint64 { return s.load().stateIndex(state) }

// WaitService blocks until the index of service name exceeds minIndex or
// ctx ends, like WaitKey. Only writes that change an instance of this
// service, one of their checks or one of their nodes wake it: a watcher of
// "web" sleeps through every change to "api".
func (s *StateStore) WaitService(ctx context.Context, name string, minIndex uint64) (uint64, error) {
	fn := fold(name)
	return s.wait(ctx, watchTable, tableSvcPrefix+fn, minIndex, func(r *stateRoot) uint64 { return r.serviceIndex(fn) })
}

// WaitServicesAny blocks until the index of some names[i] exceeds
// minIndex[i] (an unknown service's index is 1, as ServiceIndex reports
// it) or ctx ends. Like WaitService it is woken only by writes to those
// services, however many there are: one registration for all of them.
func (s *StateStore) WaitServicesAny(ctx context.Context, names []string, minIndex []uint64) error {
	if len(names) != len(minIndex) {
		return fmt.Errorf("kvstore: WaitServicesAny: %d names, %d indexes", len(names), len(minIndex))
	}
	folded, keys := make([]string, len(names)), make([]string, len(names))
	for i, n := range names {
		folded[i] = fold(n)
		keys[i] = tableSvcPrefix + folded[i]
	}
	passed := func() bool {
		r := s.load()
		for i, fn := range folded {
			if max(r.serviceIndex(fn), 1) > minIndex[i] {
				return true
			}
		}
		return false
	}
	for {
		// Register before reading so a write between the read and the
		// select still wakes us.
		ch, release := s.watch.watchMany(watchTable, keys)
		if passed() {
			release()
			return nil
		}
		select {
		case <-ch:
			release()
		case <-ctx.Done():
			release()
			return ctx.Err()
		}
	}
}

// WaitServices is WaitKey for Services and ServicesByNodeMeta.
func (s *StateStore) WaitServices(ctx context.Context, minIndex uint64) (uint64, error) {
	return s.wait(ctx, watchTable, tableServices, minIndex, func(r *stateRoot) uint64 { return max(r.cat.services, 1) })
}

// WaitNodes is WaitKey for Nodes.
func (s *StateStore) WaitNodes(ctx context.Context, minIndex uint64) (uint64, error) {
	return s.wait(ctx, watchTable, tableNodes, minIndex, func(r *stateRoot) uint64 { return max(r.cat.nodes, 1) })
}

// WaitNode is WaitKey for Node and NodeChecks of one node.
func (s *StateStore) WaitNode(ctx context.Context, name string, minIndex uint64) (uint64, error) {
	nk := fold(name)
	return s.wait(ctx, watchTable, tableNodePrefix+nk, minIndex, func(r *stateRoot) uint64 { return r.nodeIndex(nk) })
}

// WaitChecksInState is WaitKey for ChecksInState(state).
func (s *StateStore) WaitChecksInState(ctx context.Context, state string, minIndex uint64) (uint64, error) {
	name := tableChecksPrefix + HealthAny
	if validCheckStatus(state) {
		name = tableChecksPrefix + state
	}
	return s.wait(ctx, watchTable, name, minIndex, func(r *stateRoot) uint64 { return r.stateIndex(state) })
}

func (r *stateRoot) node(nk string) *Node {
	v, ok := r.nodes.Get([]byte(nk))
	if !ok {
		return nil
	}
	return v.(*Node)
}

// tableIndex reads a per-name index tree: the entry's index when there is
// one (a live name, or a removed one whose tombstone is not reaped yet),
// else the tombstone floor. Tombstones left are always above the floor,
// since reaping removes every tombstone kind up to one mark at once.
func (r *stateRoot) tableIndex(tr *iradix.Tree, name string) uint64 {
	if v, ok := tr.Get([]byte(name)); ok {
		return max(v.(uint64), 1)
	}
	return r.floorIndex()
}

func (r *stateRoot) serviceIndex(fn string) uint64 { return r.tableIndex(r.svcIdx, fn) }
func (r *stateRoot) nodeIndex(nk string) uint64    { return r.tableIndex(r.nodeIdx, nk) }

func (r *stateRoot) stateIndex(state string) uint64 {
	if i := stateSlot(state); i >= 0 {
		return max(r.cat.states[i], 1)
	}
	return max(r.cat.checks, 1)
}
