package dnsserver

import (
	"encoding/binary"
	"sync"

	"github.com/miekg/dns"
)

// fastUnpack reads the common query — one question, no other records, a
// name of plain labels (letters, digits, '-', '_'), nothing after the
// question — into req as miekg/dns's Unpack would, without allocating:
// the question slice of req is reused and the name comes from names.
// Anything else returns false, and the caller uses req.Unpack. Queries
// with EDNS0 (an OPT record) take that path too.
func fastUnpack(p []byte, req *dns.Msg, names *nameIntern) bool {
	if len(p) < 12+1+4 ||
		binary.BigEndian.Uint16(p[4:]) != 1 || binary.BigEndian.Uint16(p[6:]) != 0 ||
		binary.BigEndian.Uint16(p[8:]) != 0 || binary.BigEndian.Uint16(p[10:]) != 0 {
		return false
	}
	var buf [255]byte
	n, off := 0, 12
	for {
		if off >= len(p) {
			return false
		}
		l := int(p[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(p) || n+l+1 > len(buf) {
			return false
		}
		for _, c := range p[off : off+l] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		n += copy(buf[n:], p[off:off+l])
		buf[n] = '.'
		n++
		off += l
	}
	if off+4 != len(p) {
		return false
	}
	if n == 0 {
		buf[0] = '.'
		n = 1
	}
	bits := binary.BigEndian.Uint16(p[2:])
	req.MsgHdr = dns.MsgHdr{
		Id:                 binary.BigEndian.Uint16(p[0:]),
		Response:           bits&(1<<15) != 0,
		Opcode:             int(bits>>11) & 0xF,
		Authoritative:      bits&(1<<10) != 0,
		Truncated:          bits&(1<<9) != 0,
		RecursionDesired:   bits&(1<<8) != 0,
		RecursionAvailable: bits&(1<<7) != 0,
		Zero:               bits&(1<<6) != 0,
		AuthenticatedData:  bits&(1<<5) != 0,
		CheckingDisabled:   bits&(1<<4) != 0,
		Rcode:              int(bits & 0xF),
	}
	req.Compress = false
	if cap(req.Question) >= 1 {
		req.Question = req.Question[:1]
	} else {
		req.Question = make([]dns.Question, 1)
	}
	req.Question[0] = dns.Question{
		Name:   names.get(buf[:n]),
		Qtype:  binary.BigEndian.Uint16(p[off:]),
		Qclass: binary.BigEndian.Uint16(p[off+2:]),
	}
	req.Answer, req.Ns, req.Extra = nil, nil, nil
	return true
}

// nameIntern keeps the query names seen, so that a name asked again and
// again is not a new string (and garbage) each time. Bounded: past
// maxInterned names it starts over.
type nameIntern struct {
	mu sync.RWMutex
	m  map[string]string
}

const maxInterned = 1 << 14

func (ni *nameIntern) get(b []byte) string {
	ni.mu.RLock()
	s, ok := ni.m[string(b)]
	ni.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	ni.mu.Lock()
	if ni.m == nil || len(ni.m) >= maxInterned {
		ni.m = make(map[string]string)
	}
	ni.m[s] = s
	ni.mu.Unlock()
	return s
}
