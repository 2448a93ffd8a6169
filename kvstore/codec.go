package kvstore

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Wire format of a command (all integers are varints):
//
//	type byte | version byte (1) | time (zigzag varint) | body
//
// A type byte with the high bit set marks a command that replicas which do
// not know it may skip (for commands added later that only tune leader
// housekeeping); without it an unknown type is an error.
//
// Bodies:
//
//	kv:              op
//	txn:             count, op...
//	session-create:  session
//	session-destroy: id
//	reap-tombstones: index
//	catalog-register:   registration
//	catalog-deregister: deregistration
//	catalog-sync:       count, (1 registration | 2 deregistration)...
//	op:              verb byte, key, value, flags, index, session
//	session:         id, name, node, count, check..., count, (id, namespace)...,
//	                 lock-delay ns, behavior byte, ttl ns
//	registration:    node, skip-node-update bool, has-service bool, [service],
//	                 count, check...
//	deregistration:  node name, service id, check id
//	node:            id, name, address, datacenter, map, map (tagged addresses, meta)
//	service:         node, id, name, strings (tags), address,
//	                 count, (key, address, port)... (tagged addresses), map (meta),
//	                 port, kind, proxy, weights passing, weights warning,
//	                 enable-tag-override bool
//	check:           node, id, name, status, notes, output, service id,
//	                 service name, strings (service tags), type, definition
//
// Strings and byte slices are a length then the bytes; a bool is one byte,
// 0 or 1; ports and weights are zigzag varints; strings is a count then
// strings; a map is a count then key, value pairs in key order. In
// snapshots node, service and check records end with create and modify
// indexes. The catalog types (6-8) were added after 1-5 without changing
// the version: logs written before still decode.
const (
	commandVersion = 1
	// ignorableFlag marks a command type that unknown readers may skip.
	ignorableFlag = 0x80
)

// maxDecodeCount bounds decoded list lengths; the real limits (MaxTxnOps)
// are checked before proposing, this only keeps a corrupt length from
// allocating.
const maxDecodeCount = 1 << 16

// EncodeCommand returns the wire form of c. It does not validate c; see
// ValidateCommand.
func EncodeCommand(c *Command) []byte {
	var e encoder
	e.b = make([]byte, 0, 64+len(c.KV.Key)+len(c.KV.Value))
	e.byte1(byte(c.Type))
	e.byte1(commandVersion)
	e.varint(c.Time)
	switch c.Type {
	case CmdKV:
		e.op(&c.KV)
	case CmdTxn:
		e.uvarint(uint64(len(c.Ops)))
		for i := range c.Ops {
			e.op(&c.Ops[i])
		}
	case CmdSessionCreate:
		e.session(&c.Session, false)
	case CmdSessionDestroy:
		e.str(c.Session.ID)
	case CmdReapTombstones:
		e.uvarint(c.ReapIndex)
	case CmdCatalogRegister:
		e.registration(c.Register)
	case CmdCatalogDeregister:
		e.deregistration(c.Deregister)
	case CmdCatalogSync:
		e.uvarint(uint64(len(c.CatalogOps)))
		for _, op := range c.CatalogOps {
			if op.Register != nil {
				e.byte1(catalogOpRegister)
				e.registration(op.Register)
			} else {
				e.byte1(catalogOpDeregister)
				e.deregistration(op.Deregister)
			}
		}
	}
	return e.b
}

// errUnknownIgnorable is returned by DecodeCommand for a command type this
// version does not know but may skip.
var errUnknownIgnorable = fmt.Errorf("%w: unknown ignorable command type", ErrInvalidCommand)

// DecodeCommand parses the wire form made by EncodeCommand. It never
// panics; malformed input gives an error wrapping ErrInvalidCommand.
func DecodeCommand(b []byte) (*Command, error) {
	d := decoder{b: b}
	c := &Command{}
	typ := d.byte1()
	ver := d.byte1()
	if d.err != nil {
		return nil, d.err
	}
	if ver != commandVersion {
		return nil, fmt.Errorf("%w: version %d", ErrInvalidCommand, ver)
	}
	c.Type = CommandType(typ)
	c.Time = d.varint()
	switch c.Type {
	case CmdKV:
		d.op(&c.KV)
	case CmdTxn:
		n := d.count()
		if n > 0 {
			c.Ops = make([]KVOp, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			d.op(&c.Ops[i])
		}
	case CmdSessionCreate:
		d.session(&c.Session, false)
	case CmdSessionDestroy:
		c.Session.ID = d.str()
	case CmdReapTombstones:
		c.ReapIndex = d.uvarint()
	case CmdCatalogRegister:
		c.Register = d.registration()
	case CmdCatalogDeregister:
		c.Deregister = d.deregistration()
	case CmdCatalogSync:
		n := d.count()
		if n > 0 {
			c.CatalogOps = make([]CatalogOp, n)
		}
		for i := 0; i < n && d.err == nil; i++ {
			switch d.byte1() {
			case catalogOpRegister:
				c.CatalogOps[i].Register = d.registration()
			case catalogOpDeregister:
				c.CatalogOps[i].Deregister = d.deregistration()
			default:
				d.fail("unknown catalog operation")
			}
		}
	default:
		if typ&ignorableFlag != 0 {
			return nil, errUnknownIgnorable
		}
		return nil, fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, typ)
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

type encoder struct{ b []byte }

func (e *encoder) byte1(c byte)             { e.b = append(e.b, c) }
func (e *encoder) uvarint(v uint64)         { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)           { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)             { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte)           { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) duration(d time.Duration) { e.varint(int64(d)) }

func (e *encoder) op(o *KVOp) {
	e.byte1(verbCode(o.Verb))
	e.str(o.Key)
	e.bytes(o.Value)
	e.uvarint(o.Flags)
	e.uvarint(o.Index)
	e.str(o.Session)
}

// session encodes s; withIndexes adds CreateIndex and ModifyIndex (for
// snapshots; commands get theirs from the log).
func (e *encoder) session(s *Session, withIndexes bool) {
	e.str(s.ID)
	e.str(s.Name)
	e.str(s.Node)
	e.uvarint(uint64(len(s.NodeChecks)))
	for _, c := range s.NodeChecks {
		e.str(c)
	}
	e.uvarint(uint64(len(s.ServiceChecks)))
	for _, c := range s.ServiceChecks {
		e.str(c.ID)
		e.str(c.Namespace)
	}
	e.duration(s.LockDelay)
	e.byte1(behaviorCode(s.Behavior))
	e.duration(s.TTL)
	if withIndexes {
		e.uvarint(s.CreateIndex)
		e.uvarint(s.ModifyIndex)
	}
}

func behaviorCode(b SessionBehavior) byte {
	switch b {
	case BehaviorRelease:
		return 1
	case BehaviorDelete:
		return 2
	}
	return 0
}

// decoder reads what encoder wrote. The first error sticks; later reads
// return zero values, so callers check d.err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrInvalidCommand, what)
	}
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// raw returns the next length-prefixed bytes without copying.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length past end")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.raw()) }

// bytes returns a copy of the next length-prefixed bytes; empty is nil.
func (d *decoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// count reads a list length, refusing one that cannot fit in what is left
// (every element takes at least one byte).
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > maxDecodeCount || n > uint64(len(d.b)) {
		d.fail("list length past end")
		return 0
	}
	return int(n)
}

func (d *decoder) duration() time.Duration { return time.Duration(d.varint()) }

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
}

func (d *decoder) op(o *KVOp) {
	code := d.byte1()
	if d.err != nil {
		return
	}
	if code == 0 || int(code) > len(verbs) {
		d.fail(fmt.Sprintf("unknown verb %d", code))
		return
	}
	o.Verb = verbs[code-1]
	o.Key = d.str()
	o.Value = d.bytes()
	o.Flags = d.uvarint()
	o.Index = d.uvarint()
	o.Session = d.str()
}

func (d *decoder) session(s *Session, withIndexes bool) {
	s.ID = d.str()
	s.Name = d.str()
	s.Node = d.str()
	if n := d.count(); n > 0 {
		s.NodeChecks = make([]string, n)
		for i := range s.NodeChecks {
			s.NodeChecks[i] = d.str()
		}
	}
	if n := d.count(); n > 0 {
		s.ServiceChecks = make([]ServiceCheck, n)
		for i := range s.ServiceChecks {
			s.ServiceChecks[i].ID = d.str()
			s.ServiceChecks[i].Namespace = d.str()
		}
	}
	s.LockDelay = d.duration()
	switch d.byte1() {
	case 0:
		s.Behavior = ""
	case 1:
		s.Behavior = BehaviorRelease
	case 2:
		s.Behavior = BehaviorDelete
	default:
		d.fail("unknown session behavior")
	}
	s.TTL = d.duration()
	if withIndexes {
		s.CreateIndex = d.uvarint()
		s.ModifyIndex = d.uvarint()
	}
}
