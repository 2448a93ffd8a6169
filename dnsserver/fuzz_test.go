package dnsserver

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// fuzzServer is a Server over the fixture, with a recursor that never
// answers quickly enough to matter (forwarding is exercised by the
// recursor tests; here it must only not crash).
func fuzzServer(f *testing.F, mod func(*Config)) *Server {
	cfg := DefaultConfig()
	cfg.Registerer = prometheus.NewRegistry()
	cfg.AltDomain = "alt."
	cfg.ServiceTTL = map[string]time.Duration{"*": time.Second, "web*": 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	cat := fixture()
	cat.SetService("big", manyInstances("big", 300)...)
	cat.SetNode(Node{Name: "meta", Address: "host.example.", Meta: map[string]string{
		"long": strings.Repeat("x\\y\"z", 200), "rfc1035-raw": "v", "": "empty key",
	}})
	s, err := New(cfg, cat)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func fuzzSeeds(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.service.consul.", dns.TypeA}, {"web.service.consul.", dns.TypeSRV},
		{"_web._tcp.service.dc1.consul.", dns.TypeSRV}, {"primary.web.service.alt.", dns.TypeAAAA},
		{"big.service.consul.", dns.TypeSRV}, {"big.service.consul.", dns.TypeA},
		{"n1.node.consul.", dns.TypeTXT}, {"meta.node.consul.", dns.TypeA}, {"meta.node.consul.", dns.TypeTXT},
		{"7f000001.addr.dc1.consul.", dns.TypeA}, {"consul.", dns.TypeSOA}, {"consul.", dns.TypeNS},
		{"nope.service.consul.", dns.TypeA}, {"consul.", dns.TypeANY}, {"example.org.", dns.TypeA},
	} {
		for _, edns := range []uint16{0, 512, 1232, 8192} {
			m := newQuery(q.name, q.qtype)
			if edns > 0 {
				m.SetEdns0(edns, edns == 1232)
			}
			b, err := m.Pack()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, edns == 8192)
		}
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0, 1, 2}, true)
	f.Add(make([]byte, 12), false)
}

// FuzzServeDNS feeds raw wire bytes through what dns.Server does with a
// datagram (header screen, Unpack) into the handler, with a fake
// ResponseWriter, and checks that whatever is written is a valid reply
// that fits the transport.
func FuzzServeDNS(f *testing.F) {
	fuzzSeeds(f)
	s := fuzzServer(f, nil)
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		if len(req.Question) > 0 && !strings.HasSuffix(strings.ToLower(req.Question[0].Name), "consul.") &&
			!strings.HasSuffix(strings.ToLower(req.Question[0].Name), "alt.") {
			return // no recursors: REFUSED; nothing more to find there
		}
		var dh dns.Header
		dh.Bits = uint16(req.Opcode) << 11
		if req.Response {
			dh.Bits |= 1 << 15
		}
		dh.Qdcount, dh.Ancount, dh.Nscount, dh.Arcount = uint16(len(req.Question)), uint16(len(req.Answer)), uint16(len(req.Ns)), uint16(len(req.Extra))
		if s.acceptMsg(dh) != dns.MsgAccept {
			return
		}
		checkServe(t, s, req, tcp)
	})
}

// FuzzServeDNSDirect calls the handler with messages the server's header
// screen would have refused: ServeDNS is exported and must not panic on
// anything that unpacks.
func FuzzServeDNSDirect(f *testing.F) {
	fuzzSeeds(f)
	s := fuzzServer(f, func(c *Config) { c.UDPAnswerLimit = 2; c.ARecordLimit = 5; c.EnableTruncate = true })
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		if len(req.Question) == 1 && !strings.Contains(strings.ToLower(req.Question[0].Name), "consul.") &&
			!strings.Contains(strings.ToLower(req.Question[0].Name), "alt.") {
			return
		}
		checkServe(t, s, req, tcp)
	})
}

// FuzzQuestionName builds a query with an arbitrary name, as a caller of
// ServeDNS could, escapes, empty labels and all.
func FuzzQuestionName(f *testing.F) {
	for _, n := range []string{"web.service.consul.", "..service.consul.", "_._.service.consul.", `a\.b.node.consul.`,
		"7f000001.addr.dc1.consul.", ".consul.", "consul", "x.y.z.service.dc1.alt.", "\x00.node.consul."} {
		f.Add(n, uint16(dns.TypeSRV))
	}
	s := fuzzServer(f, nil)
	f.Fuzz(func(t *testing.T, name string, qtype uint16) {
		if !strings.HasSuffix(name, "consul.") && !strings.HasSuffix(name, "alt.") {
			name += ".consul."
		}
		s.parseName(strings.ToLower(name))
		req := &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7, RecursionDesired: true}, Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}}
		w := recording(false)
		s.ServeDNS(w, req)
		for _, b := range w.written {
			if len(b) > dns.MinMsgSize {
				t.Fatalf("%d-byte UDP answer without EDNS0", len(b))
			}
		}
	})
}

func checkServe(t *testing.T, s *Server, req *dns.Msg, tcp bool) {
	t.Helper()
	w := recording(tcp)
	s.ServeDNS(w, req)
	if len(w.written) > 1 {
		t.Fatalf("%d replies to one query", len(w.written))
	}
	if req.Response {
		if len(w.written) != 0 {
			t.Fatalf("answered a response")
		}
		return
	}
	if len(w.written) == 0 {
		t.Fatalf("no reply to %v", req)
	}
	b := w.written[0]
	limit := dns.MaxMsgSize
	if !tcp {
		limit = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
		}
	}
	if len(b) > limit {
		t.Fatalf("reply of %d bytes, limit %d", len(b), limit)
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		t.Fatalf("reply does not unpack: %v", err)
	}
	if resp.Id != req.Id || !resp.Response {
		t.Fatalf("reply header: id %d response %v, want id %d", resp.Id, resp.Response, req.Id)
	}
	if (resp.IsEdns0() != nil) != (req.IsEdns0() != nil) && resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("OPT in reply %v, in query %v", resp.IsEdns0() != nil, req.IsEdns0() != nil)
	}
	// SRV answers carry their targets' addresses.
	targets := map[string]bool{}
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok && strings.HasSuffix(srv.Target, ".consul.") {
			targets[strings.ToLower(srv.Target)] = true
		}
	}
	for _, rr := range resp.Extra {
		delete(targets, strings.ToLower(rr.Header().Name))
	}
	if len(targets) > 0 {
		t.Fatalf("SRV targets without an address in ADDITIONAL: %v", targets)
	}
}
