package kvstore

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Snapshot stream: the magic, then records (kind byte, length varint,
// payload), ending with an end record so a truncated stream is detected.
// The lock index is not stored: Restore rebuilds it from entries' Session,
// and likewise the sessions-by-node, node-ID and service-name indexes.
//
// The catalog is a section added later: a recCatalog record (its format
// version and table indexes) before any catalog record. A snapshot
// without one (written before the catalog existed) restores with an empty
// catalog; a reader that predates the catalog skips its records, as it
// skips every unknown kind.
const snapshotMagic = "OKVSNAP1"

const (
	recHeader  byte = 1 // index, floor, sessionsIndex
	recEntry   byte = 2 // key, value, flags, create, modify, lockIndex, session
	recTomb    byte = 3 // key, index
	recSession byte = 4 // session with indexes
	recDelay   byte = 5 // key, until (Unix ns)

	recCatalog      byte = 16 // catalog version, nodes, services, checks, passing, warning, critical indexes
	recNode         byte = 17 // node with indexes
	recService      byte = 18 // service with indexes
	recCheck        byte = 19 // check with indexes
	recServiceIndex byte = 20 // folded service name, index
	recNodeIndex    byte = 21 // folded node name, index

	recEnd byte = 0xFF
)

// catalogSnapshotVersion is the layout of the catalog records.
const catalogSnapshotVersion = 1

// maxSnapshotRecord bounds one record so a corrupt length cannot allocate
// without limit; an entry is at most MaxKeySize + MaxValueSize plus a few
// varints.
const maxSnapshotRecord = 16 << 20

func writeSnapshot(w io.Writer, r *stateRoot) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("kvstore: snapshot: %w", err)
	}
	var e encoder
	var hdr [binary.MaxVarintLen64 + 1]byte
	var werr error
	rec := func(kind byte) {
		if werr != nil {
			return
		}
		hdr[0] = kind
		n := binary.PutUvarint(hdr[1:], uint64(len(e.b)))
		if _, err := bw.Write(hdr[:1+n]); err != nil {
			werr = err
			return
		}
		if _, err := bw.Write(e.b); err != nil {
			werr = err
		}
		e.b = e.b[:0]
	}

	e.uvarint(r.index)
	e.uvarint(r.floor)
	e.uvarint(r.sessionsIndex)
	rec(recHeader)

	r.sessions.Root().Walk(func(_ []byte, v interface{}) bool {
		e.session(v.(*Session), true)
		rec(recSession)
		return werr != nil
	})
	r.kv.Root().Walk(func(_ []byte, v interface{}) bool {
		x := v.(*Entry)
		e.str(x.Key)
		e.bytes(x.Value)
		e.uvarint(x.Flags)
		e.uvarint(x.CreateIndex)
		e.uvarint(x.ModifyIndex)
		e.uvarint(x.LockIndex)
		e.str(x.Session)
		rec(recEntry)
		return werr != nil
	})
	r.tombs.Root().Walk(func(k []byte, v interface{}) bool {
		e.bytes(k)
		e.uvarint(v.(uint64))
		rec(recTomb)
		return werr != nil
	})
	r.delays.Root().Walk(func(k []byte, v interface{}) bool {
		e.bytes(k)
		e.varint(v.(int64))
		rec(recDelay)
		return werr != nil
	})

	e.uvarint(catalogSnapshotVersion)
	e.uvarint(r.cat.nodes)
	e.uvarint(r.cat.services)
	e.uvarint(r.cat.checks)
	for _, idx := range r.cat.states {
		e.uvarint(idx)
	}
	rec(recCatalog)
	r.nodes.Root().Walk(func(_ []byte, v interface{}) bool {
		e.node(v.(*Node), true)
		rec(recNode)
		return werr != nil
	})
	r.services.Root().Walk(func(_ []byte, v interface{}) bool {
		e.service(v.(*NodeService), true)
		rec(recService)
		return werr != nil
	})
	r.checks.Root().Walk(func(_ []byte, v interface{}) bool {
		e.check(v.(*HealthCheck), true)
		rec(recCheck)
		return werr != nil
	})
	for _, t := range []struct {
		tr   *iradix.Tree
		kind byte
	}{{r.svcIdx, recServiceIndex}, {r.nodeIdx, recNodeIndex}} {
		t.tr.Root().Walk(func(k []byte, v interface{}) bool {
			e.bytes(k)
			e.uvarint(v.(uint64))
			rec(t.kind)
			return werr != nil
		})
	}
	rec(recEnd)
	if werr == nil {
		werr = bw.Flush()
	}
	if werr != nil {
		return fmt.Errorf("kvstore: snapshot: %w", werr)
	}
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("kvstore: restore: %w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

// readSnapshot decodes a stream written by writeSnapshot. It never panics
// on corrupt input.
func readSnapshot(rd io.Reader) (*stateRoot, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, corrupt("bad magic")
	}
	r := emptyRoot()
	kv, tombs, sessions, locks, delays := r.kv.Txn(), r.tombs.Txn(), r.sessions.Txn(), r.locks.Txn(), r.delays.Txn()
	nodes, services, checks, svcIdx, nodeIdx := r.nodes.Txn(), r.services.Txn(), r.checks.Txn(), r.svcIdx.Txn(), r.nodeIdx.Txn()
	var buf []byte
	sawHeader, sawCatalog := false, false
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return nil, corrupt("truncated: %v", err)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, corrupt("record length: %v", err)
		}
		if n > maxSnapshotRecord {
			return nil, corrupt("record of %d bytes", n)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, corrupt("truncated record: %v", err)
		}
		d := decoder{b: buf}
		if kind != recHeader && kind != recEnd && !sawHeader {
			return nil, corrupt("record before header")
		}
		if kind > recCatalog && kind <= recNodeIndex && !sawCatalog {
			return nil, corrupt("catalog record before the catalog section")
		}
		switch kind {
		case recHeader:
			r.index = d.uvarint()
			r.floor = d.uvarint()
			r.sessionsIndex = d.uvarint()
			sawHeader = true
		case recSession:
			s := &Session{}
			d.session(s, true)
			if d.err == nil {
				sessions.Insert([]byte(s.ID), s)
			}
		case recEntry:
			x := &Entry{}
			x.Key = d.str()
			x.Value = d.bytes()
			x.Flags = d.uvarint()
			x.CreateIndex = d.uvarint()
			x.ModifyIndex = d.uvarint()
			x.LockIndex = d.uvarint()
			x.Session = d.str()
			if d.err == nil {
				kv.Insert([]byte(x.Key), x)
				if x.Session != "" {
					locks.Insert(lockKey(x.Session, x.Key), struct{}{})
				}
			}
		case recTomb:
			k := d.bytes()
			idx := d.uvarint()
			if d.err == nil {
				tombs.Insert(k, idx)
			}
		case recDelay:
			k := d.bytes()
			until := d.varint()
			if d.err == nil {
				delays.Insert(k, until)
			}
		case recCatalog:
			if v := d.uvarint(); d.err == nil && v != catalogSnapshotVersion {
				return nil, corrupt("catalog section version %d, this version reads %d", v, catalogSnapshotVersion)
			}
			r.cat.nodes = d.uvarint()
			r.cat.services = d.uvarint()
			r.cat.checks = d.uvarint()
			for i := range r.cat.states {
				r.cat.states[i] = d.uvarint()
			}
			sawCatalog = true
		case recNode:
			n := &Node{}
			d.node(n, true)
			if d.err == nil {
				nodes.Insert([]byte(fold(n.Node)), n)
			}
		case recService:
			x := &NodeService{}
			d.service(x, true)
			if d.err == nil {
				services.Insert(pairKey(fold(x.Node), x.ID), x)
			}
		case recCheck:
			c := &HealthCheck{}
			d.check(c, true)
			if d.err == nil {
				checks.Insert(pairKey(fold(c.Node), c.CheckID), c)
			}
		case recServiceIndex, recNodeIndex:
			k := d.bytes()
			idx := d.uvarint()
			if d.err == nil {
				if kind == recServiceIndex {
					svcIdx.Insert(k, idx)
				} else {
					nodeIdx.Insert(k, idx)
				}
			}
		case recEnd:
			if !sawHeader {
				return nil, corrupt("no header")
			}
			r.kv, r.tombs, r.sessions, r.locks, r.delays = kv.CommitOnly(), tombs.CommitOnly(), sessions.CommitOnly(), locks.CommitOnly(), delays.CommitOnly()
			r.nodes, r.services, r.checks = nodes.CommitOnly(), services.CommitOnly(), checks.CommitOnly()
			r.svcIdx, r.nodeIdx = svcIdx.CommitOnly(), nodeIdx.CommitOnly()
			r.rebuildIndexes()
			return r, nil
		default:
			// Unknown record kinds from a later version are skipped.
			continue
		}
		d.end()
		if d.err != nil {
			return nil, corrupt("record kind %d: %v", kind, d.err)
		}
	}
}

// rebuildIndexes derives the secondary indexes a snapshot does not store:
// sessions by node, node IDs and service names.
func (r *stateRoot) rebuildIndexes() {
	nodeSess := r.nodeSess.Txn()
	r.sessions.Root().Walk(func(_ []byte, v interface{}) bool {
		s := v.(*Session)
		nodeSess.Insert(nodeSessKey(s.Node, s.ID), struct{}{})
		return false
	})
	nodeIDs := r.nodeIDs.Txn()
	r.nodes.Root().Walk(func(k []byte, v interface{}) bool {
		if n := v.(*Node); n.ID != "" {
			nodeIDs.Insert([]byte(fold(n.ID)), string(k))
		}
		return false
	})
	svcNames := r.svcNames.Txn()
	r.services.Root().Walk(func(k []byte, v interface{}) bool {
		svcNames.Insert(svcNameKey(v.(*NodeService).Service, k), struct{}{})
		return false
	})
	r.nodeSess, r.nodeIDs, r.svcNames = nodeSess.CommitOnly(), nodeIDs.CommitOnly(), svcNames.CommitOnly()
}

// restore replaces the whole state and wakes every waiter.
func (s *StateStore) restore(r *stateRoot) {
	s.writeMu.Lock()
	s.root.Store(r)
	s.writeMu.Unlock()
	s.watch.notifyAll()
}
