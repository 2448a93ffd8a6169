package kvstore

import (
	"maps"
	"slices"
)

// Catalog operation kinds in a catalog-sync command.
const (
	catalogOpRegister   byte = 1
	catalogOpDeregister byte = 2
)

func (e *encoder) bool1(b bool) {
	if b {
		e.byte1(1)
	} else {
		e.byte1(0)
	}
}

func (e *encoder) strs(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// strMap encodes m in key order, so equal maps encode alike.
func (e *encoder) strMap(m map[string]string) {
	e.uvarint(uint64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.str(m[k])
	}
}

func (e *encoder) registration(r *CatalogRegistration) {
	if r == nil {
		r = &CatalogRegistration{}
	}
	e.node(&r.Node, false)
	e.bool1(r.SkipNodeUpdate)
	e.bool1(r.Service != nil)
	if r.Service != nil {
		e.service(r.Service, false)
	}
	e.uvarint(uint64(len(r.Checks)))
	for _, c := range r.Checks {
		if c == nil {
			c = &HealthCheck{}
		}
		e.check(c, false)
	}
}

func (e *encoder) deregistration(d *CatalogDeregistration) {
	if d == nil {
		d = &CatalogDeregistration{}
	}
	e.str(d.Node)
	e.str(d.ServiceID)
	e.str(d.CheckID)
}

// node, service and check encode an entry; withIndexes adds CreateIndex
// and ModifyIndex (for snapshots; commands get theirs from the log).
func (e *encoder) node(n *Node, withIndexes bool) {
	e.str(n.ID)
	e.str(n.Node)
	e.str(n.Address)
	e.str(n.Datacenter)
	e.strMap(n.TaggedAddresses)
	e.strMap(n.Meta)
	if withIndexes {
		e.uvarint(n.CreateIndex)
		e.uvarint(n.ModifyIndex)
	}
}

func (e *encoder) service(s *NodeService, withIndexes bool) {
	e.str(s.Node)
	e.str(s.ID)
	e.str(s.Service)
	e.strs(s.Tags)
	e.str(s.Address)
	e.uvarint(uint64(len(s.TaggedAddresses)))
	for _, k := range slices.Sorted(maps.Keys(s.TaggedAddresses)) {
		e.str(k)
		e.str(s.TaggedAddresses[k].Address)
		e.varint(int64(s.TaggedAddresses[k].Port))
	}
	e.strMap(s.Meta)
	e.varint(int64(s.Port))
	e.str(s.Kind)
	e.bytes(s.Proxy)
	e.varint(int64(s.Weights.Passing))
	e.varint(int64(s.Weights.Warning))
	e.bool1(s.EnableTagOverride)
	if withIndexes {
		e.uvarint(s.CreateIndex)
		e.uvarint(s.ModifyIndex)
	}
}

func (e *encoder) check(c *HealthCheck, withIndexes bool) {
	e.str(c.Node)
	e.str(c.CheckID)
	e.str(c.Name)
	e.str(c.Status)
	e.str(c.Notes)
	e.str(c.Output)
	e.str(c.ServiceID)
	e.str(c.ServiceName)
	e.strs(c.ServiceTags)
	e.str(c.Type)
	e.bytes(c.Definition)
	if withIndexes {
		e.uvarint(c.CreateIndex)
		e.uvarint(c.ModifyIndex)
	}
}

func (d *decoder) bool1() bool {
	switch d.byte1() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

// strs decodes a string list; empty is nil.
func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

// strMap decodes a map; empty is nil.
func (d *decoder) strMap() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// intv decodes a zigzag varint into an int, refusing what does not fit.
func (d *decoder) intv() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("integer out of range")
		return 0
	}
	return int(v)
}

func (d *decoder) registration() *CatalogRegistration {
	r := &CatalogRegistration{}
	d.node(&r.Node, false)
	r.SkipNodeUpdate = d.bool1()
	if d.bool1() {
		r.Service = &NodeService{}
		d.service(r.Service, false)
	}
	if n := d.count(); n > 0 {
		r.Checks = make([]*HealthCheck, n)
		for i := 0; i < n && d.err == nil; i++ {
			r.Checks[i] = &HealthCheck{}
			d.check(r.Checks[i], false)
		}
	}
	return r
}

func (d *decoder) deregistration() *CatalogDeregistration {
	return &CatalogDeregistration{Node: d.str(), ServiceID: d.str(), CheckID: d.str()}
}

func (d *decoder) node(n *Node, withIndexes bool) {
	n.ID = d.str()
	n.Node = d.str()
	n.Address = d.str()
	n.Datacenter = d.str()
	n.TaggedAddresses = d.strMap()
	n.Meta = d.strMap()
	if withIndexes {
		n.CreateIndex = d.uvarint()
		n.ModifyIndex = d.uvarint()
	}
}

func (d *decoder) service(s *NodeService, withIndexes bool) {
	s.Node = d.str()
	s.ID = d.str()
	s.Service = d.str()
	s.Tags = d.strs()
	s.Address = d.str()
	if n := d.count(); n > 0 {
		s.TaggedAddresses = make(map[string]ServiceAddress, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.str()
			s.TaggedAddresses[k] = ServiceAddress{Address: d.str(), Port: d.intv()}
		}
	}
	s.Meta = d.strMap()
	s.Port = d.intv()
	s.Kind = d.str()
	s.Proxy = d.bytes()
	s.Weights.Passing = d.intv()
	s.Weights.Warning = d.intv()
	s.EnableTagOverride = d.bool1()
	if withIndexes {
		s.CreateIndex = d.uvarint()
		s.ModifyIndex = d.uvarint()
	}
}

func (d *decoder) check(c *HealthCheck, withIndexes bool) {
	c.Node = d.str()
	c.CheckID = d.str()
	c.Name = d.str()
	c.Status = d.str()
	c.Notes = d.str()
	c.Output = d.str()
	c.ServiceID = d.str()
	c.ServiceName = d.str()
	c.ServiceTags = d.strs()
	c.Type = d.str()
	c.Definition = d.bytes()
	if withIndexes {
		c.CreateIndex = d.uvarint()
		c.ModifyIndex = d.uvarint()
	}
}
