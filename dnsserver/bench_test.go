package dnsserver

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// benchServer is a Server (not listening) over a catalog holding web with
// 3 passing instances and, when many > 0, that many other services.
func benchServer(b testing.TB, many int) *Server {
	cat := NewMemCatalog()
	cat.SetService("web", manyInstances("web", 3)...)
	for i := range many {
		name := fmt.Sprintf("svc-%05d", i)
		cat.SetService(name, manyInstances(name, 3)...)
	}
	cfg := DefaultConfig()
	cfg.Registerer = prometheus.NewRegistry()
	s, err := New(cfg, cat)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchServe measures ServeDNS alone: the query is already unpacked, and
// the writer discards the packed reply.
func benchServe(b *testing.B, s *Server, qname string, qtype uint16, want int) {
	req := newQuery(qname, qtype)
	req.SetEdns0(1232, false)
	w := recording(false)
	s.ServeDNS(w, req)
	r := new(dns.Msg)
	if err := r.Unpack(w.written[0]); err != nil || len(r.Answer) != want {
		b.Fatalf("reply: %v, %d answers, want %d", err, len(r.Answer), want)
	}
	discard := &fakeWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.ServeDNS(discard, req)
	}
}

func BenchmarkServeA(b *testing.B) {
	benchServe(b, benchServer(b, 0), "web.service.consul.", dns.TypeA, 3)
}

func BenchmarkServeSRV(b *testing.B) {
	benchServe(b, benchServer(b, 0), "_web._tcp.service.consul.", dns.TypeSRV, 3)
}

func BenchmarkServeA10kServices(b *testing.B) {
	benchServe(b, benchServer(b, 10000), "svc-04242.service.consul.", dns.TypeA, 3)
}

func BenchmarkServeSRV10kServices(b *testing.B) {
	benchServe(b, benchServer(b, 10000), "svc-04242.service.consul.", dns.TypeSRV, 3)
}

func BenchmarkServeNXDOMAIN(b *testing.B) {
	benchServe(b, benchServer(b, 0), "nope.service.consul.", dns.TypeA, 0)
}

func BenchmarkServeAParallel(b *testing.B) {
	s := benchServer(b, 10000)
	req := newQuery("svc-04242.service.consul.", dns.TypeA)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &fakeWriter{}
		for pb.Next() {
			s.ServeDNS(w, req)
		}
	})
}

// BenchmarkUDPRoundTrip is a whole exchange over loopback UDP with a
// miekg/dns client, for scale: the handler is a small part of it.
func BenchmarkUDPRoundTrip(b *testing.B) {
	cat := NewMemCatalog()
	cat.SetService("web", manyInstances("web", 3)...)
	s := startServer(b, cat, nil)
	c := &dns.Client{}
	conn, err := c.Dial(s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := newQuery("web.service.consul.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.ExchangeWithConn(req, conn); err != nil {
			b.Fatal(err)
		}
	}
}
