package dnsserver

import (
	"net/netip"
	"strings"
)

// nameKind is what a name inside our domain refers to.
type nameKind uint8

const (
	kindNone    nameKind = iota // no such name: NXDOMAIN
	kindApex                    // the domain itself: SOA, NS
	kindNSHost                  // ns.<domain>: the NS target
	kindEmpty                   // an empty non-terminal (service.<domain>, <dc>.<domain>, _tcp.service...): NODATA
	kindService                 // [tag.]name.service[.dc], _name._tag.service[.dc]
	kindNode                    // name.node[.dc]
	kindAddr                    // <hex-ip>.addr[.dc]
)

// name is a parsed question name inside one of our domains.
type name struct {
	kind   nameKind
	dom    *domainInfo // the domain the question used
	target string      // service or node name
	tag    string      // service tag filter; "" = none
	addr   netip.Addr
}

// parseName parses a lowercased, fully qualified question name. ok is
// false when the name is outside our domains (and goes to the recursors).
// It does not allocate.
func (s *Server) parseName(qname string) (n name, ok bool) {
	var rest string
	switch {
	case inDomain(qname, s.domains[0].apex, &rest):
		n.dom = &s.domains[0]
	case s.cfg.AltDomain != "" && inDomain(qname, s.domains[1].apex, &rest):
		n.dom = &s.domains[1]
	default:
		return n, false
	}
	if rest == "" {
		n.kind = kindApex
		return n, true
	}
	// Escaped characters (\. \032) never occur in names we answer.
	if strings.IndexByte(rest, '\\') >= 0 {
		return n, true
	}

	body, last := cutLast(rest)
	typ, dc := last, ""
	if !isType(typ) {
		if body == "" { // one label under the apex
			switch last {
			case "ns":
				n.kind = kindNSHost
			case s.cfg.Datacenter:
				n.kind = kindEmpty
			}
			return n, true
		}
		body, typ = cutLast(body)
		if !isType(typ) {
			return n, true
		}
		dc = last
	}
	if dc != "" && dc != s.cfg.Datacenter {
		return n, true // another datacenter: see Config.Datacenter
	}
	if body == "" {
		n.kind = kindEmpty // service.<domain>, node.dc1.<domain>, ...
		return n, true
	}

	switch typ {
	case "service":
		head, svc := cutLast(body)
		tag := head // may hold dots: v1.2.web.service
		switch {
		case svc == "":
			return n, true // an empty label: only in a hand-made message
		case head == "" && svc[0] == '_':
			// _tcp.service.<domain>: the parent of an RFC 2782 name.
			n.kind = kindEmpty
			return n, true
		case head != "" && head[0] == '_' && svc[0] == '_' && strings.IndexByte(head, '.') < 0:
			// RFC 2782: _name._tag; _tcp means no tag filter.
			svc, tag = head[1:], svc[1:]
			if tag == "tcp" {
				tag = ""
			}
		}
		if !validName(svc) || svc[0] == '_' {
			return n, true
		}
		n.kind, n.target, n.tag = kindService, svc, tag
	case "node":
		if !validName(body) {
			return n, true
		}
		n.kind, n.target = kindNode, body
	case "addr":
		a, ok := parseHexAddr(body)
		if !ok {
			return n, true
		}
		n.kind, n.addr = kindAddr, a
	}
	return n, true
}

// inDomain reports whether qname is domain or below it, and sets rest to
// the part before the domain ("" for the apex).
func inDomain(qname, domain string, rest *string) bool {
	if qname == domain {
		*rest = ""
		return true
	}
	if len(qname) > len(domain) && strings.HasSuffix(qname, domain) && qname[len(qname)-len(domain)-1] == '.' {
		*rest = qname[:len(qname)-len(domain)-1]
		return true
	}
	return false
}

// cutLast splits "a.b.c" into "a.b" and "c".
func cutLast(s string) (head, last string) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

func isType(label string) bool {
	return label == "service" || label == "node" || label == "addr"
}

// validName reports whether s can be a service, node or datacenter name
// in a DNS question: one label of lowercase letters, digits, '-' and '_'.
// Other names never reach the Catalog, so random junk cannot make the
// view subscribe to it.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validLabel is validName, ignoring case: node names in targets.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseHexAddr parses the label of <hex>.addr: 8 hex digits for IPv4, 32
// for IPv6.
func parseHexAddr(s string) (netip.Addr, bool) {
	var b [16]byte
	if len(s) != 8 && len(s) != 32 {
		return netip.Addr{}, false
	}
	for i := 0; i < len(s); i += 2 {
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return netip.Addr{}, false
		}
		b[i/2] = hi<<4 | lo
	}
	if len(s) == 8 {
		return netip.AddrFrom4([4]byte(b[:4])), true
	}
	return netip.AddrFrom16(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hexAddr is the label of an address's <hex>.addr name: 8 hex digits for
// IPv4 (7f000001 for 127.0.0.1), 32 for IPv6.
func hexAddr(a netip.Addr) string {
	const digits = "0123456789abcdef"
	var buf [32]byte
	var n int
	if a.Is4() {
		b := a.As4()
		for i, x := range b {
			buf[2*i], buf[2*i+1] = digits[x>>4], digits[x&0xf]
		}
		n = 8
	} else {
		b := a.As16()
		for i, x := range b {
			buf[2*i], buf[2*i+1] = digits[x>>4], digits[x&0xf]
		}
		n = 32
	}
	return string(buf[:n])
}

// parseIP parses an instance or node address; IPv4-mapped IPv6 addresses
// count as IPv4. ok is false for a host name.
func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
