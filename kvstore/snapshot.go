package kvstore

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Snapshot stream: the magic, then records (kind byte, length varint,
// payload), ending with an end record so a truncated stream is detected.
// The lock index is not stored: Restore rebuilds it from entries' Session.
const snapshotMagic = "OKVSNAP1"

const (
	recHeader  byte = 1 // index, floor, sessionsIndex
	recEntry   byte = 2 // key, value, flags, create, modify, lockIndex, session
	recTomb    byte = 3 // key, index
	recSession byte = 4 // session with indexes
	recDelay   byte = 5 // key, until (Unix ns)
	recEnd     byte = 0xFF
)

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
	var buf []byte
	sawHeader := false
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
		case recEnd:
			if !sawHeader {
				return nil, corrupt("no header")
			}
			r.kv, r.tombs, r.sessions, r.locks, r.delays = kv.CommitOnly(), tombs.CommitOnly(), sessions.CommitOnly(), locks.CommitOnly(), delays.CommitOnly()
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

// restore replaces the whole state and wakes every waiter.
func (s *StateStore) restore(r *stateRoot) {
	s.writeMu.Lock()
	s.root.Store(r)
	s.writeMu.Unlock()
	s.watch.notifyAll()
}
