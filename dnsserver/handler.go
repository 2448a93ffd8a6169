package dnsserver

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// exchange is one query being answered. Exchanges are pooled with their
// scratch space, so that answering a small service allocates little more
// than the records' names.
type exchange struct {
	s       *Server
	w       dns.ResponseWriter
	req     *dns.Msg
	q       dns.Question
	opt     *dns.OPT // the query's, nil without EDNS0
	tcp     bool
	stale   bool // the catalog said its data was stale
	forward bool // answered by a recursor
	start   time.Time
	// inPlace: answering on a UDP reader (serveInPlace), which must not
	// wait; wouldBlock: the answer needs waiting, nothing was written.
	inPlace    bool
	wouldBlock bool

	m       dns.Msg // the reply
	respOpt dns.OPT
	soa     dns.SOA
	ns      [1]dns.RR
	hinfo   dns.HINFO

	// Scratch, kept across queries.
	answer  []dns.RR
	extra   []dns.RR
	insts   []*Instance
	aRecs   []dns.A
	aaaa    []dns.AAAA
	srvs    []dns.SRV
	ips     []byte
	seen    dedup[string]
	seenSrv dedup[srvKey]
	buf     []byte
}

// Scratch beyond these sizes is dropped rather than pooled, so one huge
// answer does not pin memory.
const (
	maxPooledRecords = 256
	maxPooledBuf     = 8192
)

func (s *Server) getExchange(w dns.ResponseWriter, req *dns.Msg) *exchange {
	x := s.exchanges.Get().(*exchange)
	x.s, x.w, x.req = s, w, req
	x.tcp = isTCP(w)
	return x
}

func (s *Server) putExchange(x *exchange) {
	if max(cap(x.insts), cap(x.answer), cap(x.extra), cap(x.aRecs), cap(x.aaaa), cap(x.srvs), cap(x.ips)/16) > maxPooledRecords {
		return
	}
	*x = exchange{
		answer:  x.answer[:0],
		extra:   x.extra[:0],
		insts:   clearPtrs(x.insts),
		aRecs:   x.aRecs[:0],
		aaaa:    x.aaaa[:0],
		srvs:    x.srvs[:0],
		ips:     x.ips[:0],
		seen:    x.seen.reset(),
		seenSrv: x.seenSrv.reset(),
		buf:     x.buf,
	}
	if cap(x.buf) > maxPooledBuf {
		x.buf = nil
	}
	s.exchanges.Put(x)
}

// clearPtrs empties s without keeping the catalog's instances reachable.
func clearPtrs[T any](s []*T) []*T {
	clear(s[:cap(s)])
	return s[:0]
}

func isTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// ServeDNS answers one query. Names in Domain or AltDomain are answered
// from the Catalog; others are forwarded to the recursors, or REFUSED
// without any.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if req == nil || req.Response {
		s.m.rejected[rejectResponse].Inc()
		return
	}
	x := s.getExchange(w, req)
	x.start = time.Now()
	x.serve()
	s.putExchange(x)
}

// serveInPlace answers req as ServeDNS does if that needs no waiting (the
// catalog has the name in memory, no recursor is involved) and returns
// true; otherwise it writes nothing and returns false, and the caller
// hands req to ServeDNS in a goroutine.
func (s *Server) serveInPlace(w dns.ResponseWriter, req *dns.Msg) bool {
	if req == nil || req.Response {
		s.m.rejected[rejectResponse].Inc()
		return true
	}
	x := s.getExchange(w, req)
	x.inPlace = true
	x.start = time.Now()
	x.serve()
	done := !x.wouldBlock
	s.putExchange(x)
	return done
}

func (x *exchange) serve() {
	req := x.req
	x.opt = req.IsEdns0()
	switch {
	case req.Opcode != dns.OpcodeQuery:
		x.reply(dns.RcodeNotImplemented, false)
		return
	case len(req.Question) != 1:
		x.reply(dns.RcodeFormatError, false)
		return
	}
	x.q = req.Question[0]
	switch {
	case x.opt != nil && x.opt.Version() != 0:
		x.reply(dns.RcodeBadVers, false) // RFC 6891 6.1.3
		return
	case x.q.Qclass != dns.ClassINET && x.q.Qclass != dns.ClassANY:
		x.reply(dns.RcodeNotImplemented, false)
		return
	case isMetaType(x.q.Qtype):
		// Zone transfers, OPT or TSIG as a question: not for a stub's eyes.
		x.reply(dns.RcodeNotImplemented, false)
		return
	}
	n, ours := x.s.parseName(strings.ToLower(x.q.Name))
	if !ours {
		if x.inPlace && x.s.recurse && req.RecursionDesired {
			x.wouldBlock = true
			return
		}
		x.s.forward(x)
		return
	}
	x.m.Authoritative = true
	rcode := x.answerName(n)
	if x.wouldBlock {
		return
	}
	x.m.Rcode = rcode
	if x.stale && (rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError) {
		x.s.m.stale.Inc()
	}
	x.write(&x.m)
}

func isMetaType(t uint16) bool {
	switch t {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		return true
	}
	return false
}

// reply answers with rcode and no records.
func (x *exchange) reply(rcode int, authoritative bool) {
	x.m.Answer, x.m.Ns, x.m.Extra = nil, nil, nil
	x.m.Rcode = rcode
	x.m.Authoritative = authoritative
	x.write(&x.m)
}

// write sends m, a reply to x.req: it fills in the header, cuts it to
// the transport's size, echoes EDNS0 and counts it.
func (x *exchange) write(m *dns.Msg) {
	s, req := x.s, x.req
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.RecursionAvailable = s.recurse
	m.Zero = false
	if len(m.Question) == 0 && len(req.Question) == 1 {
		m.Question = req.Question
	}

	size := x.maxSize()
	if x.opt != nil {
		size -= optLen
	}
	if !x.tcp && x.opt == nil && s.cfg.UDPAnswerLimit > 0 && len(m.Answer) > s.cfg.UDPAnswerLimit {
		m.Answer = m.Answer[:s.cfg.UDPAnswerLimit]
		m.Extra = referenced(m.Answer, m.Extra)
		m.Truncated = m.Truncated || s.cfg.EnableTruncate
	}
	if fit(m, size) {
		m.Truncated = true
	}
	if m.Truncated {
		s.m.truncated[b2i(x.tcp)].Inc()
	}
	if x.opt != nil {
		x.respOpt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: udpReadSize}}
		if x.opt.Do() {
			x.respOpt.SetDo()
		}
		m.Extra = append(m.Extra, &x.respOpt)
		if m == &x.m {
			x.extra = m.Extra[:0] // keep the room for the pool
		}
	} else if m.Rcode > 0xF {
		m.Rcode = dns.RcodeServerFailure // an extended rcode needs OPT
	}

	if cap(x.buf) < dns.MinMsgSize {
		x.buf = make([]byte, dns.MinMsgSize)
	}
	b, fast := packFast(m, x.buf)
	var err error
	if !fast {
		b, err = m.PackBuffer(x.buf[:cap(x.buf)])
	}
	if err != nil {
		// Only data we were given can fail to pack (say, a name too
		// long for the wire): answer SERVFAIL rather than nothing.
		s.cfg.Logger.Debug("dns: pack reply", "name", x.q.Name, "error", err)
		rcode := dns.RcodeServerFailure
		*m = dns.Msg{MsgHdr: m.MsgHdr, Question: m.Question}
		m.Rcode, m.Truncated = rcode, false
		if x.opt != nil {
			m.Extra = []dns.RR{&x.respOpt}
		}
		if b, err = m.PackBuffer(x.buf[:cap(x.buf)]); err != nil {
			s.cfg.Logger.Debug("dns: pack SERVFAIL", "name", x.q.Name, "error", err)
			return
		}
	}
	if cap(b) > cap(x.buf) {
		x.buf = b[:0]
	}
	// Counted before the write, so that whoever got the answer sees it
	// counted.
	s.m.query(x.q.Qtype, m.Rcode)
	if x.forward {
		s.m.fwdLatency.Observe(time.Since(x.start).Seconds())
	} else {
		s.m.localLatency.Observe(time.Since(x.start).Seconds())
	}
	if _, err := x.w.Write(b); err != nil {
		s.cfg.Logger.Debug("dns: write reply", "name", x.q.Name, "error", err)
	}
}

// optLen is the size of our OPT record: root name, type, class, TTL,
// empty RDATA.
const optLen = 1 + 2 + 2 + 4 + 2

// maxSize is the largest reply the client takes: 512 bytes over UDP
// without EDNS0, its EDNS0 buffer size (at least 512, at most
// MaxUDPSize) with it, and 65535 over TCP.
func (x *exchange) maxSize() int {
	if x.tcp {
		return dns.MaxMsgSize
	}
	if x.opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(x.opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dedup remembers keys: a short slice scanned linearly, switching to a
// map when it grows, so small answers allocate nothing.
type dedup[K comparable] struct {
	small []K
	m     map[K]struct{}
}

const dedupSmall = 32

// add reports whether k is new, and remembers it.
func (d *dedup[K]) add(k K) bool {
	if d.m != nil {
		if _, ok := d.m[k]; ok {
			return false
		}
		d.m[k] = struct{}{}
		return true
	}
	for _, x := range d.small {
		if x == k {
			return false
		}
	}
	if len(d.small) < dedupSmall {
		d.small = append(d.small, k)
		return true
	}
	d.m = make(map[K]struct{}, 4*dedupSmall)
	for _, x := range d.small {
		d.m[x] = struct{}{}
	}
	d.m[k] = struct{}{}
	return true
}

func (d *dedup[K]) reset() dedup[K] {
	var zero K
	for i := range d.small {
		d.small[i] = zero
	}
	return dedup[K]{small: d.small[:0]}
}
