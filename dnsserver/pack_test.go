package dnsserver

import (
	"net"
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

// packBoth packs m with packFast and with miekg/dns and checks that both
// unpack to the same message, the fast one no longer than miekg's
// uncompressed one.
func packBoth(t *testing.T, m *dns.Msg) (fast []byte, ok bool) {
	t.Helper()
	m.Compress = false
	fast, ok = packFast(m, make([]byte, 0, 64))
	if !ok {
		return nil, false
	}
	slow, err := m.Pack()
	if err != nil {
		t.Fatalf("miekg/dns cannot pack what packFast did: %v", err)
	}
	if len(fast) > len(slow) {
		t.Fatalf("fast %d bytes, uncompressed %d", len(fast), len(slow))
	}
	a, b := new(dns.Msg), new(dns.Msg)
	if err := a.Unpack(fast); err != nil {
		t.Fatalf("fast reply does not unpack: %v", err)
	}
	if err := b.Unpack(slow); err != nil {
		t.Fatalf("miekg reply does not unpack: %v", err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("fast and miekg/dns differ:\n%v\n%v", a, b)
	}
	return fast, true
}

func TestPackFast(t *testing.T) {
	s := benchServer(t, 0)
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"web.service.consul.", dns.TypeA, false}, {"WeB.Service.Consul.", dns.TypeSRV, true},
		{"_web._tcp.service.consul.", dns.TypeSRV, false}, {"web.service.consul.", dns.TypeAAAA, true},
	} {
		req := newQuery(q.name, q.qtype)
		if q.edns {
			req.SetEdns0(1232, true)
		}
		w := recording(false)
		s.ServeDNS(w, req)
		r := new(dns.Msg)
		if err := r.Unpack(w.written[0]); err != nil {
			t.Fatal(err)
		}
		b, ok := packBoth(t, r)
		if !ok && (q.qtype == dns.TypeA || q.qtype == dns.TypeSRV) {
			t.Fatalf("%s %s: not packed by packFast", q.name, dns.TypeToString[q.qtype])
		}
		if ok && len(w.written[0]) != len(b) {
			t.Errorf("%s %s: served %d bytes, fast packing %d", q.name, dns.TypeToString[q.qtype], len(w.written[0]), len(b))
		}
	}
	// The bench's SRV answer: three targets with their A records.
	m := new(dns.Msg)
	m.SetQuestion("web.service.consul.", dns.TypeSRV)
	m.Response, m.Authoritative = true, true
	for i := range 3 {
		target := []string{"7f000002", "7f000003", "7f000004"}[i] + ".addr.dc1.consul."
		m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: "web.service.consul.", Rrtype: dns.TypeSRV, Class: dns.ClassINET},
			Priority: 1, Weight: 1, Port: uint16(8081 + i), Target: target})
		m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, byte(2+i)).To4()})
	}
	b, ok := packBoth(t, m)
	if !ok {
		t.Fatal("SRV answer not packed")
	}
	slow, _ := m.Pack()
	t.Logf("SRV ×3 with targets: %d bytes compressed, %d uncompressed", len(b), len(slow))
	if len(b) >= len(slow)-100 {
		t.Errorf("compressed %d bytes, uncompressed %d: owner names not compressed", len(b), len(slow))
	}
	// Shapes it leaves to miekg/dns.
	for _, mm := range []*dns.Msg{
		{Question: []dns.Question{{Name: "a.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}, Ns: []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "a.", Rrtype: dns.TypeSOA, Class: 1}, Ns: "a.", Mbox: "a."}}},
		{Question: []dns.Question{{Name: "a.", Qtype: dns.TypeTXT, Qclass: dns.ClassINET}}, Answer: []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "a.", Rrtype: dns.TypeTXT, Class: 1}, Txt: []string{"x"}}}},
		{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeBadVers}, Question: []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
	} {
		if _, ok := packFast(mm, nil); ok {
			t.Errorf("packFast took %v", mm)
		}
	}
}

// FuzzPackFast: whatever unpacks and packFast takes, packs to the same
// message as miekg/dns.
func FuzzPackFast(f *testing.F) {
	fuzzSeeds(f)
	s := fuzzServer(f, nil)
	f.Fuzz(func(t *testing.T, raw []byte, _ bool) {
		m := new(dns.Msg)
		if m.Unpack(raw) != nil {
			return
		}
		packBoth(t, m)
		// And the reply to it, if it is a query.
		if len(m.Question) == 1 && !m.Response {
			w := recording(false)
			s.ServeDNS(w, m)
			for _, b := range w.written {
				r := new(dns.Msg)
				if err := r.Unpack(b); err != nil {
					t.Fatalf("reply does not unpack: %v", err)
				}
			}
		}
	})
}
