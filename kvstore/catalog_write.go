package kvstore

import (
	"fmt"
	"maps"
	"reflect"
	"slices"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// catalog applies a catalog command. It validates the command itself (the
// check is a pure function of the command, so every replica decides alike)
// and may fail after writing: the caller runs it on a clone.
func (t *writeTxn) catalog(c *Command) error {
	if err := validateCatalogCommand(c); err != nil {
		return err
	}
	switch c.Type {
	case CmdCatalogRegister:
		return t.register(c.Register)
	case CmdCatalogDeregister:
		t.deregister(c.Deregister)
		return nil
	case CmdCatalogSync:
		for i := range c.CatalogOps {
			op := &c.CatalogOps[i]
			if op.Register != nil {
				if err := t.register(op.Register); err != nil {
					return fmt.Errorf("operation %d: %w", i, err)
				}
				continue
			}
			t.deregister(op.Deregister)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, c.Type)
}

// register applies a CatalogRegistration: node, then service, then checks.
func (t *writeTxn) register(reg *CatalogRegistration) error {
	nk := fold(reg.Node.Node)
	if reg.SkipNodeUpdate {
		if t.getNode(nk) == nil {
			return fmt.Errorf("%w: node %q", ErrMissingNode, reg.Node.Node)
		}
	} else if err := t.ensureNode(&reg.Node); err != nil {
		return err
	}
	if reg.Service != nil {
		t.ensureService(nk, reg.Service)
	}
	for _, c := range reg.Checks {
		if err := t.ensureCheck(nk, c); err != nil {
			return err
		}
	}
	return nil
}

// deregister applies a CatalogDeregistration, as Consul's Catalog.Deregister:
// the node when neither ServiceID nor CheckID is given, else those.
func (t *writeTxn) deregister(d *CatalogDeregistration) {
	nk := fold(d.Node)
	if d.ServiceID == "" && d.CheckID == "" {
		t.deleteNode(nk)
		return
	}
	if d.ServiceID != "" {
		t.deleteService(nk, d.ServiceID)
	}
	if d.CheckID != "" {
		t.deleteCheck(pairKey(nk, d.CheckID))
	}
}

func (t *writeTxn) getNode(nk string) *Node {
	v, ok := t.nodes.get([]byte(nk))
	if !ok {
		return nil
	}
	return v.(*Node)
}

func (t *writeTxn) getService(key []byte) *NodeService {
	v, ok := t.services.get(key)
	if !ok {
		return nil
	}
	return v.(*NodeService)
}

func (t *writeTxn) getCheck(key []byte) *HealthCheck {
	v, ok := t.checks.get(key)
	if !ok {
		return nil
	}
	return v.(*HealthCheck)
}

// nodeHealthy reports whether a node's serfHealth check exists and is not
// critical: such a node owns its name and ID. A node without serfHealth
// was registered from outside the cluster and may be taken over, as in
// Consul.
func (t *writeTxn) nodeHealthy(nk string) bool {
	c := t.getCheck(pairKey(nk, SerfCheckID))
	return c != nil && c.Status != HealthCritical
}

// ensureNode upserts a node. A node ID held by a node of another name is a
// rename: that node is deregistered (services, checks, sessions) unless
// the name being registered belongs to a healthy node with another ID. A
// name held by a healthy node with another ID cannot be taken.
func (t *writeTxn) ensureNode(in *Node) error {
	nk := fold(in.Node)
	existing := t.getNode(nk)
	id := in.ID
	if id == "" && existing != nil {
		id = existing.ID
	}
	if id != "" {
		otherID := existing != nil && existing.ID != "" && fold(existing.ID) != fold(id)
		owner, ok := t.nodeIDs.get([]byte(fold(id)))
		switch {
		case ok && owner.(string) != nk:
			if existing != nil && fold(existing.ID) != fold(id) && t.nodeHealthy(nk) {
				return fmt.Errorf("%w: node %q cannot take ID %q: name is held by healthy node with ID %q", ErrNodeConflict, in.Node, id, existing.ID)
			}
			t.deleteNode(owner.(string))
		case otherID && t.nodeHealthy(nk):
			return fmt.Errorf("%w: node name %q is held by healthy node with ID %q, not %q", ErrNodeConflict, in.Node, existing.ID, id)
		}
	}

	n := &Node{
		ID: id, Node: in.Node, Address: in.Address, Datacenter: in.Datacenter,
		TaggedAddresses: nilIfEmptyMap(in.TaggedAddresses), Meta: nilIfEmptyMap(in.Meta),
		CreateIndex: t.idx, ModifyIndex: t.idx,
	}
	if existing != nil {
		n.CreateIndex = existing.CreateIndex
		if sameNode(existing, n) {
			return nil
		}
		if existing.ID != "" && fold(existing.ID) != fold(id) {
			t.nodeIDs.w().Delete([]byte(fold(existing.ID)))
		}
	}
	t.nodes.w().Insert([]byte(nk), n)
	if id != "" {
		t.nodeIDs.w().Insert([]byte(fold(id)), nk)
	}
	t.cat.nodes = t.idx
	t.tables = append(t.tables, tableNodes)
	t.touchNode(nk)
	// Every instance on the node shows the node's fields.
	hasServices := false
	t.eachNodeService(nk, func(_ []byte, s *NodeService) {
		hasServices = true
		t.touchService(s.Service)
	})
	if hasServices && (existing == nil || !maps.Equal(existing.Meta, n.Meta)) {
		t.touchServiceList()
	}
	return nil
}

// ensureService upserts a service instance on node nk, which exists.
func (t *writeTxn) ensureService(nk string, in *NodeService) {
	node := t.getNode(nk)
	s := &NodeService{
		Node: node.Node, ID: in.ID, Service: in.Service, Tags: nilIfEmpty(in.Tags),
		Address: in.Address, TaggedAddresses: nilIfEmptyMap(in.TaggedAddresses), Meta: nilIfEmptyMap(in.Meta),
		Port: in.Port, Kind: in.Kind, Proxy: nilIfEmpty(in.Proxy), Weights: in.Weights,
		EnableTagOverride: in.EnableTagOverride, CreateIndex: t.idx, ModifyIndex: t.idx,
	}
	if s.ID == "" {
		s.ID = s.Service
	}
	key := pairKey(nk, s.ID)
	existing := t.getService(key)
	if existing != nil {
		s.CreateIndex = existing.CreateIndex
		if sameService(existing, s) {
			return
		}
	}
	t.services.w().Insert(key, s)
	renamed := existing != nil && fold(existing.Service) != fold(s.Service)
	if renamed {
		t.svcNames.w().Delete(svcNameKey(existing.Service, key))
		t.touchService(existing.Service)
	}
	if existing == nil || renamed {
		t.svcNames.w().Insert(svcNameKey(s.Service, key), struct{}{})
	}
	t.touchService(s.Service)
	t.touchServiceList()
	t.touchNode(nk)

	// The instance's checks carry its name and tags.
	if existing != nil && (existing.Service != s.Service || !slices.Equal(existing.Tags, s.Tags)) {
		t.eachNodeCheck(nk, func(ck []byte, c *HealthCheck) {
			if c.ServiceID == "" || fold(c.ServiceID) != fold(s.ID) {
				return
			}
			nc := *c
			nc.ServiceName, nc.ServiceTags = s.Service, s.Tags
			nc.ModifyIndex = t.idx
			t.checks.w().Insert(ck, &nc)
			t.checkChanged(c, &nc)
		})
	}
}

// ensureCheck upserts a check on node nk, which exists. A check becoming
// (or staying, when it changes) critical invalidates the sessions that
// depend on it, in this same apply.
func (t *writeTxn) ensureCheck(nk string, in *HealthCheck) error {
	node := t.getNode(nk)
	c := &HealthCheck{
		Node: node.Node, CheckID: in.CheckID, Name: in.Name, Status: in.Status, Notes: in.Notes,
		Output: in.Output, ServiceID: in.ServiceID, Type: in.Type, Definition: nilIfEmpty(in.Definition),
		CreateIndex: t.idx, ModifyIndex: t.idx,
	}
	if c.CheckID == "" {
		c.CheckID = c.Name
	}
	if c.Status == "" {
		c.Status = HealthCritical
	}
	if c.ServiceID != "" {
		svc := t.getService(pairKey(nk, c.ServiceID))
		if svc == nil {
			return fmt.Errorf("%w: check %q names service ID %q, which is not registered on node %q", ErrUnknownService, c.CheckID, c.ServiceID, node.Node)
		}
		c.ServiceName, c.ServiceTags = svc.Service, svc.Tags
	}
	key := pairKey(nk, c.CheckID)
	existing := t.getCheck(key)
	if existing != nil {
		c.CreateIndex = existing.CreateIndex
		if sameCheck(existing, c) {
			return nil
		}
	}
	t.checks.w().Insert(key, c)
	t.checkChanged(existing, c)
	if c.Status == HealthCritical {
		t.invalidateCheckSessions(nk, c.CheckID)
	}
	return nil
}

// checkChanged moves the indexes a check change affects: the check table,
// the old and new status, the node, and the service(s) whose health
// entries show the check — its own service, or every service on the node
// for a node-level check.
func (t *writeTxn) checkChanged(old, cur *HealthCheck) {
	t.cat.checks = t.idx
	t.tables = append(t.tables, tableChecksPrefix+HealthAny)
	for _, c := range []*HealthCheck{old, cur} {
		if c == nil {
			continue
		}
		if i := stateSlot(c.Status); i >= 0 {
			t.cat.states[i] = t.idx
			t.tables = append(t.tables, tableChecksPrefix+c.Status)
		}
		nk := fold(c.Node)
		t.touchNode(nk)
		if c.ServiceID != "" {
			t.touchService(c.ServiceName)
			continue
		}
		t.eachNodeService(nk, func(_ []byte, s *NodeService) { t.touchService(s.Service) })
	}
}

// deleteCheck removes a check and invalidates the sessions depending on
// it, as Consul does.
func (t *writeTxn) deleteCheck(key []byte) {
	c := t.getCheck(key)
	if c == nil {
		return
	}
	t.checks.w().Delete(key)
	t.checkChanged(c, nil)
	t.invalidateCheckSessions(fold(c.Node), c.CheckID)
}

// deleteService removes a service instance and its checks.
func (t *writeTxn) deleteService(nk, id string) {
	key := pairKey(nk, id)
	s := t.getService(key)
	if s == nil {
		return
	}
	var checks [][]byte
	t.eachNodeCheck(nk, func(ck []byte, c *HealthCheck) {
		if c.ServiceID != "" && fold(c.ServiceID) == fold(s.ID) {
			checks = append(checks, ck)
		}
	})
	for _, ck := range checks {
		t.deleteCheck(ck)
	}
	t.services.w().Delete(key)
	t.svcNames.w().Delete(svcNameKey(s.Service, key))
	t.touchService(s.Service)
	t.touchServiceList()
	t.touchNode(nk)
}

// deleteNode removes a node with its checks and services, and invalidates
// every session of the node (Consul: sessions belong to a node and die
// with it).
func (t *writeTxn) deleteNode(nk string) {
	n := t.getNode(nk)
	if n == nil {
		return
	}
	var checks [][]byte
	t.eachNodeCheck(nk, func(ck []byte, _ *HealthCheck) { checks = append(checks, ck) })
	for _, ck := range checks {
		t.deleteCheck(ck)
	}
	var ids []string
	t.eachNodeService(nk, func(_ []byte, s *NodeService) { ids = append(ids, s.ID) })
	for _, id := range ids {
		t.deleteService(nk, id)
	}
	t.nodes.w().Delete([]byte(nk))
	if n.ID != "" {
		if owner, ok := t.nodeIDs.get([]byte(fold(n.ID))); ok && owner.(string) == nk {
			t.nodeIDs.w().Delete([]byte(fold(n.ID)))
		}
	}
	t.cat.nodes = t.idx
	t.tables = append(t.tables, tableNodes)
	t.touchNode(nk)

	var sessions []string
	prefix := nodePrefix(nk)
	t.nodeSess.root().WalkPrefix(prefix, func(k []byte, _ interface{}) bool {
		sessions = append(sessions, string(k[len(prefix):]))
		return false
	})
	for _, id := range sessions {
		t.destroySession(id)
	}
}

// invalidateCheckSessions destroys the sessions of node nk that list
// checkID among their node or service checks.
func (t *writeTxn) invalidateCheckSessions(nk, checkID string) {
	var doomed []string
	prefix := nodePrefix(nk)
	fc := fold(checkID)
	t.nodeSess.root().WalkPrefix(prefix, func(k []byte, _ interface{}) bool {
		id := string(k[len(prefix):])
		v, ok := t.sessions.get([]byte(id))
		if !ok {
			return false
		}
		s := v.(*Session)
		if slices.ContainsFunc(s.NodeChecks, func(c string) bool { return fold(c) == fc }) ||
			slices.ContainsFunc(s.ServiceChecks, func(c ServiceCheck) bool { return fold(c.ID) == fc }) {
			doomed = append(doomed, id)
		}
		return false
	})
	for _, id := range doomed {
		t.destroySession(id)
	}
}

// touchService moves the index of a service (by any spelling of its name)
// to the current one and wakes its watchers. The entry outlives the last
// instance as the service's tombstone.
func (t *writeTxn) touchService(name string) {
	fn := fold(name)
	t.svcIdx.w().Insert([]byte(fn), t.idx)
	t.tables = append(t.tables, tableSvcPrefix+fn)
}

func (t *writeTxn) touchServiceList() {
	t.cat.services = t.idx
	t.tables = append(t.tables, tableServices)
}

func (t *writeTxn) touchNode(nk string) {
	t.nodeIdx.w().Insert([]byte(nk), t.idx)
	t.tables = append(t.tables, tableNodePrefix+nk)
}

// eachNodeService calls f for every service on node nk. f may not write
// the service table.
func (t *writeTxn) eachNodeService(nk string, f func(key []byte, s *NodeService)) {
	t.services.root().WalkPrefix(nodePrefix(nk), func(k []byte, v interface{}) bool {
		f(k, v.(*NodeService))
		return false
	})
}

// eachNodeCheck calls f for every check on node nk, over a snapshot of the
// table, so f may write checks.
func (t *writeTxn) eachNodeCheck(nk string, f func(key []byte, c *HealthCheck)) {
	type kc struct {
		k []byte
		c *HealthCheck
	}
	var all []kc
	t.checks.root().WalkPrefix(nodePrefix(nk), func(k []byte, v interface{}) bool {
		all = append(all, kc{k, v.(*HealthCheck)})
		return false
	})
	for _, x := range all {
		f(x.k, x.c)
	}
}

// sameNode, sameService and sameCheck compare everything but the indexes.
func sameNode(a, b *Node) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	return reflect.DeepEqual(x, y)
}

func sameService(a, b *NodeService) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	return reflect.DeepEqual(x, y)
}

func sameCheck(a, b *HealthCheck) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	return reflect.DeepEqual(x, y)
}

// nilIfEmpty and nilIfEmptyMap give empty slices and maps one stored form,
// so comparisons and snapshots do not tell nil from empty.
func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}

// tombstone is a catalog index entry of a name that is gone.
type tombstone struct {
	key []byte
	idx uint64
}

// catalogTombstones lists the entries of an index tree at or below upTo
// whose name is no longer live.
func catalogTombstones(idx *iradix.Node, upTo uint64, live func(name []byte) bool) []tombstone {
	var out []tombstone
	idx.Walk(func(k []byte, v interface{}) bool {
		if i := v.(uint64); i <= upTo && !live(k) {
			out = append(out, tombstone{k, i})
		}
		return false
	})
	return out
}

// serviceLive reports, for the service-name index root, whether a service
// has an instance.
func serviceLive(svcNames *iradix.Node) func([]byte) bool {
	return func(fn []byte) bool {
		it := svcNames.Iterator()
		it.SeekPrefix(append(append([]byte(nil), fn...), 0))
		_, _, ok := it.Next()
		return ok
	}
}

// nodeLive reports, for the node table root, whether a node exists.
func nodeLive(nodes *iradix.Node) func([]byte) bool {
	return func(nk []byte) bool {
		_, ok := nodes.Get(nk)
		return ok
	}
}

func nodeSessKey(node, id string) []byte {
	return append(nodePrefix(fold(node)), id...)
}
