package dnsserver

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// packFast writes the common replies — A, AAAA and SRV answers with their
// targets' addresses in ADDITIONAL — into buf with the names compressed as
// an authoritative server does (Knot, BIND): an owner name equal to the
// question's is a pointer to it, an additional record's owner equal to an
// SRV target is a pointer to that target. miekg/dns leaves small replies
// uncompressed unless told to, and its compression allocates a map per
// reply (measured: twice the handler's time for a 3-record answer); this
// costs neither. It returns false, having written nothing of use, for any
// other shape (the caller packs with miekg/dns): authority records, other
// types, options in OPT, an extended rcode, more than maxFastRecords
// records.
//
// m.Compress must be false: fit then measured m uncompressed, and this
// output is never longer than that.
func packFast(m *dns.Msg, buf []byte) ([]byte, bool) {
	if len(m.Question) != 1 || len(m.Ns) != 0 || m.Rcode > 0xF || m.Compress ||
		len(m.Answer)+len(m.Extra) > maxFastRecords {
		return nil, false
	}
	q := &m.Question[0]
	b := buf[:0]
	var flags uint16
	if m.Response {
		flags |= 1 << 15
	}
	flags |= uint16(m.Opcode&0xF) << 11
	if m.Authoritative {
		flags |= 1 << 10
	}
	if m.Truncated {
		flags |= 1 << 9
	}
	if m.RecursionDesired {
		flags |= 1 << 8
	}
	if m.RecursionAvailable {
		flags |= 1 << 7
	}
	if m.Zero {
		flags |= 1 << 6
	}
	if m.AuthenticatedData {
		flags |= 1 << 5
	}
	if m.CheckingDisabled {
		flags |= 1 << 4
	}
	flags |= uint16(m.Rcode & 0xF)
	b = binary.BigEndian.AppendUint16(b, m.Id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Answer)))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Extra)))

	var ok bool
	if b, ok = appendName(b, q.Name); !ok {
		return nil, false
	}
	b = binary.BigEndian.AppendUint16(b, q.Qtype)
	b = binary.BigEndian.AppendUint16(b, q.Qclass)

	// Names written in full that later owners may point to: the
	// question's at offset 12, then the SRV targets.
	var names [maxFastRecords + 1]fastName
	names[0] = fastName{q.Name, 12}
	n := 1
	for si, section := range [2][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range section {
			h := rr.Header()
			ttl := h.Ttl
			if _, opt := rr.(*dns.OPT); !opt {
				if b, ok = appendOwner(b, h.Name, names[:n]); !ok {
					return nil, false
				}
			} else {
				if si == 0 {
					return nil, false // OPT belongs in ADDITIONAL
				}
				b = append(b, 0) // root
				// The extended rcode (upper bits of TTL) comes from
				// m.Rcode, as miekg/dns sets it; here it is at most 0xF.
				ttl &^= 0xFF000000
			}
			b = binary.BigEndian.AppendUint16(b, h.Rrtype)
			b = binary.BigEndian.AppendUint16(b, h.Class)
			b = binary.BigEndian.AppendUint32(b, ttl)
			switch r := rr.(type) {
			case *dns.A:
				ip := r.A.To4()
				if ip == nil || h.Rrtype != dns.TypeA {
					return nil, false
				}
				b = binary.BigEndian.AppendUint16(b, 4)
				b = append(b, ip...)
			case *dns.AAAA:
				if len(r.AAAA) != 16 || h.Rrtype != dns.TypeAAAA {
					return nil, false
				}
				b = binary.BigEndian.AppendUint16(b, 16)
				b = append(b, r.AAAA...)
			case *dns.SRV:
				if h.Rrtype != dns.TypeSRV || r.Target == "" { // "": as unpacked from empty RDATA
					return nil, false
				}
				lenAt := len(b)
				b = append(b, 0, 0)
				b = binary.BigEndian.AppendUint16(b, r.Priority)
				b = binary.BigEndian.AppendUint16(b, r.Weight)
				b = binary.BigEndian.AppendUint16(b, r.Port)
				at := len(b)
				// RFC 2782: the target is not compressed.
				if b, ok = appendName(b, r.Target); !ok {
					return nil, false
				}
				binary.BigEndian.PutUint16(b[lenAt:], uint16(len(b)-lenAt-2))
				if at < 0x3FFF {
					names[n] = fastName{r.Target, at}
					n++
				}
			case *dns.OPT:
				if len(r.Option) != 0 || h.Rrtype != dns.TypeOPT {
					return nil, false
				}
				b = binary.BigEndian.AppendUint16(b, 0)
			default:
				return nil, false
			}
		}
	}
	return b, true
}

// maxFastRecords bounds the records packFast writes (the names it
// remembers for compression live on the stack).
const maxFastRecords = 64

type fastName struct {
	name string
	off  int
}

// appendOwner writes name as a pointer to an equal name written before
// (exact spelling: DNS compares names case-insensitively, and the reply
// keeps the case the client sent), or in full.
func appendOwner(b []byte, name string, known []fastName) ([]byte, bool) {
	for _, k := range known {
		if k.name == name {
			return append(b, 0xC0|byte(k.off>>8), byte(k.off)), true
		}
	}
	return appendName(b, name)
}

// appendName writes name in full, as miekg/dns would (escapes included).
func appendName(b []byte, name string) ([]byte, bool) {
	off := len(b)
	need := len(name) + 2
	if cap(b)-off < need {
		nb := make([]byte, off, 2*cap(b)+need)
		copy(nb, b)
		b = nb
	}
	end, err := dns.PackDomainName(name, b[:cap(b)], off, nil, false)
	if err != nil {
		return nil, false
	}
	return b[:end], true
}
