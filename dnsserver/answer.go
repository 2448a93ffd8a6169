package dnsserver

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// answerName fills x.m with the answer for a name in our domain and
// returns the rcode.
func (x *exchange) answerName(n name) int {
	x.answer, x.extra = x.answer[:0], x.extra[:0]
	var rcode int
	switch n.kind {
	case kindApex:
		rcode = x.apex(n)
	case kindNSHost:
		if x.q.Qtype == dns.TypeANY {
			x.addHINFO(x.s.nodeTTL)
		} else if x.s.nsAddr.IsValid() {
			x.addAddr(x.q.Name, x.s.nsAddr, x.s.nodeTTL, &x.answer)
		}
		rcode = x.nodata(n)
	case kindEmpty:
		rcode = x.nodata(n)
	case kindService:
		rcode = x.service(n)
	case kindNode:
		rcode = x.node(n)
	case kindAddr:
		if x.q.Qtype == dns.TypeANY {
			x.addHINFO(x.s.nodeTTL)
		} else {
			x.addAddr(x.q.Name, n.addr, x.s.nodeTTL, &x.answer)
		}
		rcode = x.nodata(n)
	default:
		rcode = x.nxdomain(n)
	}
	x.m.Answer, x.m.Extra = x.answer, x.extra
	return rcode
}

// nxdomain: the name does not exist. The SOA in AUTHORITY gives the
// negative TTL (RFC 2308).
func (x *exchange) nxdomain(n name) int {
	x.answer, x.extra = x.answer[:0], x.extra[:0]
	x.m.Ns = x.soaRR(n.dom)
	return dns.RcodeNameError
}

// nodata: NOERROR; when nothing of the asked type was added, the SOA in
// AUTHORITY says so (RFC 2308 NODATA).
func (x *exchange) nodata(n name) int {
	if len(x.answer) == 0 {
		x.extra = x.extra[:0]
		x.m.Ns = x.soaRR(n.dom)
	}
	return dns.RcodeSuccess
}

func (x *exchange) soaRR(d *domainInfo) []dns.RR {
	soa := x.s.cfg.SOA
	x.soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: d.apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soa.MinTTL},
		Ns:      d.ns,
		Mbox:    d.mbox,
		Serial:  uint32(x.s.cfg.now().Unix()),
		Refresh: soa.Refresh,
		Retry:   soa.Retry,
		Expire:  soa.Expire,
		Minttl:  soa.MinTTL,
	}
	x.ns[0] = &x.soa
	return x.ns[:]
}

func (x *exchange) apex(n name) int {
	switch x.q.Qtype {
	case dns.TypeSOA:
		x.answer = append(x.answer, x.soaRR(n.dom)...)
		x.m.Ns = nil
	case dns.TypeNS:
		x.answer = append(x.answer, &dns.NS{
			Hdr: dns.RR_Header{Name: x.q.Name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: x.s.nodeTTL},
			Ns:  n.dom.ns,
		})
		if x.s.nsAddr.IsValid() {
			x.addAddr(n.dom.ns, x.s.nsAddr, x.s.nodeTTL, &x.extra)
		}
	case dns.TypeANY:
		x.addHINFO(x.s.nodeTTL)
	}
	return x.nodata(n)
}

// addHINFO answers ANY: RFC 8482 lets a server answer a minimal
// synthesized HINFO instead of every record set, which keeps ANY from
// being an amplifier.
func (x *exchange) addHINFO(ttl uint32) {
	x.hinfo = dns.HINFO{
		Hdr: dns.RR_Header{Name: x.q.Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: ttl},
		Cpu: "RFC8482",
	}
	x.answer = append(x.answer, &x.hinfo)
}

// lookupCtx bounds a Catalog call by LookupTimeout (within 10%) and
// Shutdown.
func (x *exchange) lookupCtx() context.Context {
	if x.inPlace {
		return x.s.doneCtx
	}
	return x.s.lookupDeadline.get(x.start)
}

func (x *exchange) service(n name) int {
	s := x.s
	insts, found, stale, err := s.catalog.Service(x.lookupCtx(), n.target)
	if err != nil && x.inPlace {
		x.wouldBlock = true
		return dns.RcodeServerFailure
	}
	if err != nil {
		s.cfg.Logger.Debug("dns: catalog service lookup", "service", n.target, "error", err)
		return dns.RcodeServerFailure
	}
	x.stale = x.stale || stale
	if !found {
		return x.nxdomain(n)
	}
	healthy := x.insts[:0]
	for i := range insts {
		in := &insts[i]
		if !s.healthy(in.Status) || (n.tag != "" && !hasTag(in.Tags, n.tag)) {
			continue
		}
		healthy = append(healthy, in)
	}
	x.insts = healthy
	if len(healthy) == 0 {
		// Consul's answer when no instance is healthy (or has the tag).
		return x.nxdomain(n)
	}
	shuffle(healthy)
	ttl := s.ttls.lookup(n.target)
	switch x.q.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		x.addressRecords(healthy, ttl)
	case dns.TypeSRV:
		x.srvRecords(healthy, ttl, n.dom)
	case dns.TypeANY:
		x.addHINFO(ttl)
	}
	return x.nodata(n)
}

// healthy reports whether an instance with this aggregated status is
// answered: passing always, warning unless OnlyPassing, nothing else.
func (s *Server) healthy(status string) bool {
	switch status {
	case StatusPassing:
		return true
	case StatusWarning:
		return !s.cfg.OnlyPassing
	}
	return false
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// shuffle puts instances in a random order (Fisher-Yates), so clients
// that take the first address spread their load.
func shuffle(s []*Instance) {
	for i := len(s) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		s[i], s[j] = s[j], s[i]
	}
}

// addressRecords answers A or AAAA for a service: one record per distinct
// address of the asked family (a host name is a CNAME, as in Consul),
// capped at ARecordLimit.
func (x *exchange) addressRecords(insts []*Instance, ttl uint32) {
	limit := x.s.cfg.ARecordLimit
	x.reserve(len(insts))
	for _, in := range insts {
		addr := in.Address
		if addr == "" {
			addr = in.NodeAddress
		}
		if addr == "" || !x.seen.add(addr) {
			continue
		}
		if ip, ok := parseIP(addr); ok {
			x.addAddr(x.q.Name, ip, ttl, &x.answer)
		} else if host, ok := hostFQDN(addr); ok {
			x.answer = append(x.answer, &dns.CNAME{
				Hdr:    dns.RR_Header{Name: x.q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl},
				Target: host,
			})
		}
		if limit > 0 && len(x.answer) >= limit {
			break
		}
	}
}

// srvKey identifies an SRV record, as Consul dedups them.
type srvKey struct {
	node, addr string
	port       int
}

// srvRecords answers SRV for a service: priority 1, the instance's weight
// for its health, its port, and a target whose address goes in
// ADDITIONAL: <node>.node.<dc>.<domain> for an instance on its node's
// address, <hex-ip>.addr.<dc>.<domain> for one with its own (or a node
// whose name is no DNS label), the host name itself for a host name.
func (x *exchange) srvRecords(insts []*Instance, ttl uint32, d *domainInfo) {
	x.reserve(len(insts))
	for _, in := range insts {
		addr := in.Address
		own := addr != "" && addr != in.NodeAddress
		if addr == "" {
			addr = in.NodeAddress
		}
		if addr == "" || !x.seenSrv.add(srvKey{in.Node, addr, in.Port}) {
			continue
		}
		ip, isIP := parseIP(addr)
		var target string
		switch {
		case !isIP:
			host, ok := hostFQDN(addr)
			if !ok {
				continue
			}
			target = host
		case own || !validLabel(in.Node):
			target = d.targets.addr(ip, d.addrSuffix)
		default:
			target = d.targets.node(in.Node, d.nodeSuffix)
		}
		x.srvs = append(x.srvs, dns.SRV{
			Hdr:      dns.RR_Header{Name: x.q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Priority: 1,
			Weight:   weight(in),
			Port:     uint16(min(max(in.Port, 0), 65535)),
			Target:   target,
		})
		x.answer = append(x.answer, &x.srvs[len(x.srvs)-1])
		if isIP && x.seen.add(target) {
			x.addAddr(target, ip, ttl, &x.extra)
		}
	}
}

// weight is an instance's SRV weight: Weights.Passing or Weights.Warning
// by its health, both 1 when Weights.Passing is unset.
func weight(in *Instance) uint16 {
	w := in.Weights
	if w.Passing <= 0 {
		return 1
	}
	if in.Status == StatusWarning {
		return uint16(min(max(w.Warning, 0), 65535))
	}
	return uint16(min(w.Passing, 65535))
}

// reserve makes room for n records of each kind, so that appending does
// not move records already in the answer.
func (x *exchange) reserve(n int) {
	if cap(x.aRecs)-len(x.aRecs) < n {
		x.aRecs = make([]dns.A, 0, n)
	}
	if cap(x.aaaa)-len(x.aaaa) < n {
		x.aaaa = make([]dns.AAAA, 0, n)
	}
	if cap(x.srvs)-len(x.srvs) < n {
		x.srvs = make([]dns.SRV, 0, n)
	}
	if cap(x.ips)-len(x.ips) < 16*n {
		x.ips = make([]byte, 0, 16*n)
	}
	if cap(x.answer)-len(x.answer) < n {
		x.answer = append(make([]dns.RR, 0, len(x.answer)+n), x.answer...)
	}
}

// addAddr appends an A or an AAAA record for ip, named owner, to *to
// (x.answer or x.extra), using the pooled records when there is room.
// Into the answer goes only a record of the asked type; into ADDITIONAL
// (SRV targets, NS glue) either.
func (x *exchange) addAddr(owner string, ip netip.Addr, ttl uint32, to *[]dns.RR) {
	if ip.Is4() {
		if x.q.Qtype != dns.TypeA && to == &x.answer {
			return
		}
		b := ip.As4()
		off := len(x.ips)
		x.ips = append(x.ips, b[:]...)
		x.aRecs = append(x.aRecs, dns.A{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   net.IP(x.ips[off : off+4 : off+4]),
		})
		*to = append(*to, &x.aRecs[len(x.aRecs)-1])
		return
	}
	if x.q.Qtype != dns.TypeAAAA && to == &x.answer {
		return
	}
	b := ip.As16()
	off := len(x.ips)
	x.ips = append(x.ips, b[:]...)
	x.aaaa = append(x.aaaa, dns.AAAA{
		Hdr:  dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
		AAAA: net.IP(x.ips[off : off+16 : off+16]),
	})
	*to = append(*to, &x.aaaa[len(x.aaaa)-1])
}

// hostFQDN turns a host name address into a target name, if it is one.
func hostFQDN(h string) (string, bool) {
	if strings.ContainsAny(h, "\\ ") {
		return "", false
	}
	h = dns.Fqdn(h)
	if _, ok := dns.IsDomainName(h); !ok || h == "." {
		return "", false
	}
	return h, true
}

func (x *exchange) node(n name) int {
	s := x.s
	node, found, stale, err := s.catalog.Node(x.lookupCtx(), n.target)
	if err != nil && x.inPlace {
		x.wouldBlock = true
		return dns.RcodeServerFailure
	}
	if err != nil {
		s.cfg.Logger.Debug("dns: catalog node lookup", "node", n.target, "error", err)
		return dns.RcodeServerFailure
	}
	x.stale = x.stale || stale
	if !found || node == nil {
		return x.nxdomain(n)
	}
	ttl := s.nodeTTL
	switch x.q.Qtype {
	case dns.TypeA, dns.TypeAAAA:
		if ip, ok := parseIP(node.Address); ok {
			x.reserve(1)
			x.addAddr(x.q.Name, ip, ttl, &x.answer)
		} else if host, ok := hostFQDN(node.Address); ok {
			x.answer = append(x.answer, &dns.CNAME{
				Hdr:    dns.RR_Header{Name: x.q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl},
				Target: host,
			})
		}
		if len(x.answer) > 0 {
			// Node metadata rides along in ADDITIONAL, as in Consul; it
			// is the first thing dropped when the answer is too big.
			x.extra = appendMetaTXT(x.extra, x.q.Name, node.Meta, ttl)
		}
	case dns.TypeTXT:
		x.answer = appendMetaTXT(x.answer, x.q.Name, node.Meta, ttl)
	case dns.TypeANY:
		x.addHINFO(ttl)
	}
	return x.nodata(n)
}

// appendMetaTXT appends one TXT record "key=value" per metadata key, in
// key order. A key starting with "rfc1035-" gives its value alone (as in
// Consul).
func appendMetaTXT(to []dns.RR, owner string, meta map[string]string, ttl uint32) []dns.RR {
	if len(meta) == 0 {
		return to
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		text := k + "=" + meta[k]
		if strings.HasPrefix(k, "rfc1035-") {
			text = meta[k]
		}
		to = append(to, &dns.TXT{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
			Txt: txtStrings(text),
		})
	}
	return to
}

// txtStrings splits s into character-strings of at most 255 bytes and
// escapes backslashes, which miekg/dns reads as escapes when packing.
func txtStrings(s string) []string {
	out := make([]string, 0, len(s)/255+1)
	for {
		chunk := s[:min(len(s), 255)]
		s = s[len(chunk):]
		out = append(out, strings.ReplaceAll(chunk, `\`, `\\`))
		if s == "" {
			return out
		}
	}
}
