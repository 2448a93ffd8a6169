package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNames runs every name form and record type through a real server,
// over UDP and over TCP.
func TestNames(t *testing.T) {
	s := startServer(t, fixture(), func(c *Config) {
		c.AltDomain = "alt.example."
	})
	type check func(t *testing.T, r *dns.Msg)
	wantAddrs := func(want ...string) check {
		return func(t *testing.T, r *dns.Msg) {
			if got := addrs(r.Answer); !slices.Equal(got, want) {
				t.Errorf("answer addresses: got %v, want %v", got, want)
			}
		}
	}
	wantNoData := func(t *testing.T, r *dns.Msg) {
		if len(r.Answer) != 0 {
			t.Errorf("answer: got %v, want none", r.Answer)
		}
		if soaOf(r.Ns) == nil {
			t.Errorf("authority: got %v, want the SOA", r.Ns)
		}
	}
	wantSRV := func(want ...string) check { // "port target"
		return func(t *testing.T, r *dns.Msg) {
			var got []string
			for _, s := range srvs(r.Answer) {
				got = append(got, fmt.Sprintf("%d %s", s.Port, s.Target))
				if s.Priority != 1 {
					t.Errorf("%s: priority %d, want 1", s.Target, s.Priority)
				}
				// Each target's address is in ADDITIONAL.
				found := false
				for _, rr := range r.Extra {
					if strings.EqualFold(rr.Header().Name, s.Target) && (rr.Header().Rrtype == dns.TypeA || rr.Header().Rrtype == dns.TypeAAAA) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: no address in ADDITIONAL %v", s.Target, r.Extra)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("SRV: got %v, want %v", got, want)
			}
		}
	}
	webSRV := wantSRV(
		"8080 n1.node.dc1.consul.", "8081 n2.node.dc1.consul.",
		"8086 n6.node.dc1.consul.", "9090 7f000104.addr.dc1.consul.")

	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		check check
	}{
		{"service A", "web.service.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1", "127.0.0.2", "127.0.1.4")},
		{"service AAAA", "web.service.consul.", dns.TypeAAAA, dns.RcodeSuccess, wantAddrs("fd00::6")},
		{"service with dc", "web.service.dc1.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1", "127.0.0.2", "127.0.1.4")},
		{"case", "WeB.SERVICE.Consul.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			wantAddrs("127.0.0.1", "127.0.0.2", "127.0.1.4")(t, r)
			if r.Answer[0].Header().Name != "WeB.SERVICE.Consul." {
				t.Errorf("owner: got %q, want the question's case", r.Answer[0].Header().Name)
			}
		}},
		{"tag", "primary.web.service.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"tag case", "PRIMARY.web.service.dc1.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"tag of warning", "secondary.web.service.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.2")},
		{"unknown tag", "nope.web.service.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"SRV", "web.service.consul.", dns.TypeSRV, dns.RcodeSuccess, webSRV},
		{"RFC 2782", "_web._tcp.service.consul.", dns.TypeSRV, dns.RcodeSuccess, webSRV},
		{"RFC 2782 dc", "_web._tcp.service.dc1.consul.", dns.TypeSRV, dns.RcodeSuccess, webSRV},
		{"RFC 2782 tag", "_web._primary.service.consul.", dns.TypeSRV, dns.RcodeSuccess, wantSRV("8080 n1.node.dc1.consul.")},
		{"RFC 2782 own address", "_web._own.service.consul.", dns.TypeSRV, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			wantSRV("9090 7f000104.addr.dc1.consul.")(t, r)
			if got := addrs(r.Extra); !slices.Equal(got, []string{"127.0.1.4"}) {
				t.Errorf("ADDITIONAL: got %v, want the instance's own address", got)
			}
		}},
		{"SRV weights", "web.service.consul.", dns.TypeSRV, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			want := map[uint16]uint16{8080: 10, 8081: 3, 8086: 1, 9090: 1}
			for _, s := range srvs(r.Answer) {
				if s.Weight != want[s.Port] {
					t.Errorf("port %d: weight %d, want %d", s.Port, s.Weight, want[s.Port])
				}
			}
		}},
		{"A has no SRV", "web.service.consul.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			if len(srvs(r.Answer)) != 0 || len(r.Extra) != 0 {
				t.Errorf("got SRV or ADDITIONAL records in an A answer: %v %v", r.Answer, r.Extra)
			}
		}},
		{"service TXT", "web.service.consul.", dns.TypeTXT, dns.RcodeSuccess, wantNoData},
		{"service MX", "web.service.consul.", dns.TypeMX, dns.RcodeSuccess, wantNoData},
		{"service ANY", "web.service.consul.", dns.TypeANY, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.HINFO).Cpu != "RFC8482" {
				t.Errorf("answer: got %v, want one HINFO RFC8482", r.Answer)
			}
		}},
		{"only critical", "db.service.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"no instances", "ghost.service.consul.", dns.TypeSRV, dns.RcodeNameError, nil},
		{"unknown service", "nope.service.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"other dc", "web.service.dc2.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"bad service name", "we%b.service.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"node A", "n1.node.consul.", dns.TypeA, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			wantAddrs("127.0.0.1")(t, r)
			if got := txts(r.Extra); !slices.Equal(got, []string{"env=prod", "rack=r1"}) {
				t.Errorf("ADDITIONAL TXT: got %v, want the node meta", got)
			}
		}},
		{"node dc", "n1.node.dc1.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"node TXT", "n1.node.consul.", dns.TypeTXT, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			if got := txts(r.Answer); !slices.Equal(got, []string{"env=prod", "rack=r1"}) {
				t.Errorf("TXT: got %v, want the node meta", got)
			}
		}},
		{"node without meta TXT", "n2.node.consul.", dns.TypeTXT, dns.RcodeSuccess, wantNoData},
		{"node AAAA", "n6.node.consul.", dns.TypeAAAA, dns.RcodeSuccess, wantAddrs("fd00::6")},
		{"node A of IPv6 node", "n6.node.consul.", dns.TypeA, dns.RcodeSuccess, wantNoData},
		{"node SRV", "n1.node.consul.", dns.TypeSRV, dns.RcodeSuccess, wantNoData},
		{"unknown node", "nx.node.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"node other dc", "n1.node.dc9.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"addr v4", "7f000001.addr.dc1.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"addr v4 no dc", "7F000001.addr.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"addr v4 AAAA", "7f000001.addr.dc1.consul.", dns.TypeAAAA, dns.RcodeSuccess, wantNoData},
		{"addr v6", "fd000000000000000000000000000006.addr.dc1.consul.", dns.TypeAAAA, dns.RcodeSuccess, wantAddrs("fd00::6")},
		{"addr bad hex", "7g000001.addr.dc1.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"addr bad length", "7f0000.addr.dc1.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"apex SOA", "consul.", dns.TypeSOA, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			soa := soaOf(r.Answer)
			if soa == nil {
				t.Fatalf("answer: got %v, want the SOA", r.Answer)
			}
			if soa.Ns != "ns.consul." || soa.Refresh != 3600 || soa.Retry != 600 || soa.Expire != 86400 || soa.Minttl != 0 {
				t.Errorf("SOA: got %v, want ns.consul. 3600 600 86400 0", soa)
			}
		}},
		{"apex NS", "consul.", dns.TypeNS, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "ns.consul." {
				t.Errorf("answer: got %v, want NS ns.consul.", r.Answer)
			}
			if got := addrs(r.Extra); !slices.Equal(got, []string{"127.0.0.1"}) {
				t.Errorf("glue: got %v, want 127.0.0.1", got)
			}
		}},
		{"apex A", "consul.", dns.TypeA, dns.RcodeSuccess, wantNoData},
		{"ns host", "ns.consul.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1")},
		{"empty non-terminal", "service.consul.", dns.TypeA, dns.RcodeSuccess, wantNoData},
		{"empty non-terminal dc", "dc1.consul.", dns.TypeA, dns.RcodeSuccess, wantNoData},
		{"empty non-terminal _tcp", "_tcp.service.consul.", dns.TypeSRV, dns.RcodeSuccess, wantNoData},
		{"unknown type label", "web.query.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"unknown single label", "nothing.consul.", dns.TypeA, dns.RcodeNameError, nil},
		{"alt domain", "web.service.alt.example.", dns.TypeA, dns.RcodeSuccess, wantAddrs("127.0.0.1", "127.0.0.2", "127.0.1.4")},
		{"alt domain SRV", "_web._tcp.service.dc1.alt.example.", dns.TypeSRV, dns.RcodeSuccess, wantSRV(
			"8080 n1.node.dc1.alt.example.", "8081 n2.node.dc1.alt.example.",
			"8086 n6.node.dc1.alt.example.", "9090 7f000104.addr.dc1.alt.example.")},
		{"alt domain apex", "alt.example.", dns.TypeSOA, dns.RcodeSuccess, func(t *testing.T, r *dns.Msg) {
			if soa := soaOf(r.Answer); soa == nil || soa.Hdr.Name != "alt.example." {
				t.Errorf("answer: got %v, want the alt domain's SOA", r.Answer)
			}
		}},
		{"outside, no recursors", "example.org.", dns.TypeA, dns.RcodeRefused, func(t *testing.T, r *dns.Msg) {
			if r.RecursionAvailable || r.Authoritative {
				t.Errorf("RA %v AA %v: want neither", r.RecursionAvailable, r.Authoritative)
			}
		}},
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					r := ask(t, s.Addr(), network, newQuery(tc.qname, tc.qtype))
					if r.Rcode != tc.rcode {
						t.Fatalf("rcode: got %s, want %s (%v)", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode], r)
					}
					if r.Truncated {
						t.Errorf("TC set on a small answer")
					}
					if tc.rcode == dns.RcodeNameError {
						if soa := soaOf(r.Ns); soa == nil || len(r.Answer) != 0 {
							t.Errorf("NXDOMAIN: got answer %v authority %v, want only the SOA in authority", r.Answer, r.Ns)
						}
					}
					if tc.rcode != dns.RcodeRefused {
						if !r.Authoritative || r.RecursionAvailable {
							t.Errorf("AA %v RA %v: want AA and no RA without recursors", r.Authoritative, r.RecursionAvailable)
						}
					}
					if tc.check != nil {
						tc.check(t, r)
					}
				})
			}
		})
	}
}

func TestOnlyPassing(t *testing.T) {
	s := startServer(t, fixture(), func(c *Config) { c.OnlyPassing = true })
	r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA))
	if got, want := addrs(r.Answer), []string{"127.0.0.1", "127.0.1.4"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v (no warning instance)", got, want)
	}
	r = ask(t, s.Addr(), "udp", newQuery("secondary.web.service.consul", dns.TypeA))
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("only a warning instance: got %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

func TestShuffle(t *testing.T) {
	cat := NewMemCatalog()
	cat.SetService("web", manyInstances("web", 6)...)
	s := startServer(t, cat, nil)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
		orders := map[string]bool{}
		for range 30 {
			r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", qtype))
			if len(r.Answer) != 6 {
				t.Fatalf("%s: got %d records, want 6", dns.TypeToString[qtype], len(r.Answer))
			}
			var order []string
			for _, rr := range r.Answer {
				order = append(order, rr.String())
			}
			orders[strings.Join(order, "|")] = true
		}
		// 30 draws from 720 orders all equal has probability 720^-29.
		if len(orders) < 2 {
			t.Errorf("%s: the same order 30 times", dns.TypeToString[qtype])
		}
	}
}

func TestARecordLimit(t *testing.T) {
	cat := NewMemCatalog()
	cat.SetService("web", manyInstances("web", 10)...)
	s := startServer(t, cat, func(c *Config) { c.ARecordLimit = 3 })
	for _, network := range []string{"udp", "tcp"} {
		seen := map[string]bool{}
		for range 20 {
			r := ask(t, s.Addr(), network, newQuery("web.service.consul", dns.TypeA))
			if len(r.Answer) != 3 || r.Truncated {
				t.Fatalf("%s: got %d records (TC %v), want 3 without TC", network, len(r.Answer), r.Truncated)
			}
			for _, a := range addrs(r.Answer) {
				seen[a] = true
			}
		}
		if len(seen) <= 3 {
			t.Errorf("%s: always the same %d addresses; want a shuffled subset", network, len(seen))
		}
		// SRV is not capped.
		q := newQuery("web.service.consul", dns.TypeSRV)
		q.SetEdns0(4096, false)
		if r := ask(t, s.Addr(), network, q); len(r.Answer) != 10 {
			t.Errorf("%s SRV: got %d records, want 10", network, len(r.Answer))
		}
	}
}

func TestTTLs(t *testing.T) {
	cat := NewMemCatalog()
	for _, name := range []string{"web", "webapp", "api", "db-main"} {
		cat.SetService(name, manyInstances(name, 1)...)
	}
	cat.SetNode(Node{Name: "n1", Address: "127.0.0.1"})
	s := startServer(t, cat, func(c *Config) {
		c.NodeTTL = 7 * time.Second
		c.ServiceTTL = map[string]time.Duration{"*": 5 * time.Second, "web*": 10 * time.Second, "web": 30 * time.Second, "db-*": 2500 * time.Millisecond}
		c.SOA.MinTTL = 60
		c.now = func() time.Time { return time.Unix(1700000000, 0) }
	})
	for _, tc := range []struct {
		qname string
		qtype uint16
		want  uint32
	}{
		{"web.service.consul", dns.TypeA, 30},
		{"webapp.service.consul", dns.TypeA, 10},
		{"webapp.service.consul", dns.TypeSRV, 10},
		{"api.service.consul", dns.TypeA, 5},
		{"db-main.service.consul", dns.TypeA, 2},
		{"n1.node.consul", dns.TypeA, 7},
		{"7f000001.addr.consul", dns.TypeA, 7},
	} {
		r := ask(t, s.Addr(), "udp", newQuery(tc.qname, tc.qtype))
		if len(r.Answer) == 0 {
			t.Fatalf("%s: no answer", tc.qname)
		}
		for _, rr := range append(r.Answer, r.Extra...) {
			if rr.Header().Ttl != tc.want {
				t.Errorf("%s %s: TTL %d, want %d", tc.qname, dns.TypeToString[rr.Header().Rrtype], rr.Header().Ttl, tc.want)
			}
		}
	}
	// The SOA minimum is the negative TTL.
	r := ask(t, s.Addr(), "udp", newQuery("nope.service.consul", dns.TypeA))
	if soa := soaOf(r.Ns); soa == nil || soa.Minttl != 60 || soa.Hdr.Ttl != 60 || soa.Serial != 1700000000 {
		t.Errorf("NXDOMAIN SOA: got %v, want minimum and TTL 60, serial the clock's", r.Ns)
	}
}

// TestTruncation: UDP answers fit the client's buffer with TC set; TCP
// returns every record of a 1,000-instance service.
func TestTruncation(t *testing.T) {
	cat := NewMemCatalog()
	cat.SetService("big", manyInstances("big", 1000)...)
	s := startServer(t, cat, nil)

	packed := func(r *dns.Msg) int {
		r.Compress = true
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}

	t.Run("udp without EDNS0", func(t *testing.T) {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
			q := newQuery("big.service.consul", qtype)
			raw, _ := q.Pack()
			b := askRaw(t, s.Addr(), raw, 5*time.Second)
			if b == nil {
				t.Fatal("no answer")
			}
			if len(b) > 512 {
				t.Errorf("%s: %d bytes, want at most 512", dns.TypeToString[qtype], len(b))
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatal(err)
			}
			if !r.Truncated || len(r.Answer) == 0 || r.IsEdns0() != nil {
				t.Errorf("%s: TC %v, %d answers, OPT %v: want TC, some answers, no OPT", dns.TypeToString[qtype], r.Truncated, len(r.Answer), r.IsEdns0())
			}
			checkSRVGlue(t, r)
		}
	})
	t.Run("udp EDNS0 8192", func(t *testing.T) {
		// HAProxy's accepted_payload_size 8192: as many SRV+A pairs as fit.
		q := newQuery("_big._tcp.service.consul", dns.TypeSRV)
		q.SetEdns0(8192, false)
		r := ask(t, s.Addr(), "udp", q)
		if n := packed(r); n > 8192 {
			t.Errorf("%d bytes, want at most 8192", n)
		}
		if !r.Truncated || r.IsEdns0() == nil {
			t.Errorf("TC %v OPT %v: want both", r.Truncated, r.IsEdns0())
		}
		if len(r.Answer) < 100 {
			t.Errorf("%d SRV records in 8192 bytes, want over 100", len(r.Answer))
		}
		checkSRVGlue(t, r)
	})
	t.Run("udp EDNS0 too big", func(t *testing.T) {
		q := newQuery("big.service.consul", dns.TypeA)
		q.SetEdns0(65535, false)
		r := ask(t, s.Addr(), "udp", q)
		if n := packed(r); n > MaxUDPSize {
			t.Errorf("%d bytes, want at most %d", n, MaxUDPSize)
		}
		if len(r.Answer) != 1000 || r.Truncated {
			t.Errorf("%d answers, TC %v: 1000 A records fit in 64k", len(r.Answer), r.Truncated)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		r := ask(t, s.Addr(), "tcp", newQuery("big.service.consul", dns.TypeA))
		if len(r.Answer) != 1000 || r.Truncated {
			t.Errorf("A: %d answers, TC %v: want 1000, no TC", len(r.Answer), r.Truncated)
		}
		// 1,000 SRV records with their targets' A records need about 69 KB
		// with these node names, more than a DNS message holds (65535
		// bytes; names past 16 KB cannot be compression targets): as many
		// pairs as fit, with TC.
		r = ask(t, s.Addr(), "tcp", newQuery("big.service.consul", dns.TypeSRV))
		if n := packed(r); n > dns.MaxMsgSize || n < dns.MaxMsgSize-200 {
			t.Errorf("SRV: %d bytes, want just under %d", n, dns.MaxMsgSize)
		}
		if len(r.Answer) < 900 || len(r.Answer) != len(r.Extra) || r.Truncated != (len(r.Answer) < 1000) {
			t.Errorf("SRV: %d answers, %d additional, TC %v: want about 1000 pairs, TC if cut", len(r.Answer), len(r.Extra), r.Truncated)
		}
		checkSRVGlue(t, r)
	})
	t.Run("tcp SRV 500", func(t *testing.T) {
		cat.SetService("half", manyInstances("half", 500)...)
		r := ask(t, s.Addr(), "tcp", newQuery("_half._tcp.service.consul", dns.TypeSRV))
		if len(r.Answer) != 500 || len(r.Extra) != 500 || r.Truncated {
			t.Errorf("SRV: %d answers, %d additional, TC %v: want 500, 500, no TC", len(r.Answer), len(r.Extra), r.Truncated)
		}
		checkSRVGlue(t, r)
	})
	t.Run("client retries over tcp", func(t *testing.T) {
		// What a stub does: UDP, then TCP on TC.
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		r, _, err := c.Exchange(newQuery("big.service.consul", dns.TypeA), s.Addr())
		if err != nil || !r.Truncated {
			t.Fatalf("udp: err %v, TC %v", err, r != nil && r.Truncated)
		}
		c.Net = "tcp"
		if r, _, err = c.Exchange(newQuery("big.service.consul", dns.TypeA), s.Addr()); err != nil || len(r.Answer) != 1000 {
			t.Fatalf("tcp: err %v, %d answers", err, len(r.Answer))
		}
	})
	reg := s.cfg.Registerer
	if n := metricValue(t, reg, "outrigger_dns_truncated_total", "transport", "udp"); n < 3 {
		t.Errorf("truncated udp: %v, want at least 3", n)
	}
}

// checkSRVGlue: every SRV target has its address in ADDITIONAL, and
// ADDITIONAL holds nothing else but OPT.
func checkSRVGlue(t *testing.T, r *dns.Msg) {
	t.Helper()
	targets := map[string]bool{}
	for _, s := range srvs(r.Answer) {
		targets[strings.ToLower(s.Target)] = true
	}
	glued := map[string]bool{}
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		if !targets[name] {
			t.Errorf("ADDITIONAL %s is no SRV target", name)
		}
		glued[name] = true
	}
	for tg := range targets {
		if !glued[tg] {
			t.Errorf("SRV target %s has no address in ADDITIONAL", tg)
		}
	}
}

func TestEDNS0(t *testing.T) {
	s := startServer(t, fixture(), nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			q := newQuery("web.service.consul", dns.TypeA)
			if r := ask(t, s.Addr(), network, q); r.IsEdns0() != nil {
				t.Errorf("OPT in the answer to a query without one")
			}
			q.SetEdns0(1232, true)
			r := ask(t, s.Addr(), network, q)
			opt := r.IsEdns0()
			if opt == nil {
				t.Fatal("no OPT echoed")
			}
			if !opt.Do() || opt.Version() != 0 {
				t.Errorf("OPT: DO %v version %d, want DO copied and version 0", opt.Do(), opt.Version())
			}
			// An NXDOMAIN echoes it too.
			q = newQuery("nope.service.consul", dns.TypeA)
			q.SetEdns0(1232, false)
			if r := ask(t, s.Addr(), network, q); r.IsEdns0() == nil || r.Rcode != dns.RcodeNameError {
				t.Errorf("NXDOMAIN: OPT %v rcode %s", r.IsEdns0(), dns.RcodeToString[r.Rcode])
			}
			// EDNS version 1: BADVERS.
			q = newQuery("web.service.consul", dns.TypeA)
			q.SetEdns0(1232, false)
			q.IsEdns0().SetVersion(1)
			if r := ask(t, s.Addr(), network, q); r.Rcode != dns.RcodeBadVers {
				t.Errorf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

// TestBadMessages: what the server does with messages that are not one
// plain query.
func TestBadMessages(t *testing.T) {
	s := startServer(t, fixture(), nil)
	reg := s.cfg.Registerer
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rcodeOf := func(b []byte) int {
		if b == nil {
			t.Fatal("no answer")
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatalf("unpack answer: %v", err)
		}
		return r.Rcode
	}

	for _, op := range []int{dns.OpcodeNotify, dns.OpcodeUpdate, dns.OpcodeStatus, dns.OpcodeIQuery} {
		q := newQuery("web.service.consul", dns.TypeA)
		q.Opcode = op
		if rc := rcodeOf(askRaw(t, s.Addr(), pack(q), 5*time.Second)); rc != dns.RcodeNotImplemented {
			t.Errorf("opcode %s: got %s, want NOTIMP", dns.OpcodeToString[op], dns.RcodeToString[rc])
		}
	}
	two := newQuery("web.service.consul", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "db.service.consul.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	if rc := rcodeOf(askRaw(t, s.Addr(), pack(two), 5*time.Second)); rc != dns.RcodeFormatError {
		t.Errorf("two questions: got %s, want FORMERR", dns.RcodeToString[rc])
	}
	none := newQuery("web.service.consul", dns.TypeA)
	none.Question = nil
	if rc := rcodeOf(askRaw(t, s.Addr(), pack(none), 5*time.Second)); rc != dns.RcodeFormatError {
		t.Errorf("no question: got %s, want FORMERR", dns.RcodeToString[rc])
	}
	chaos := newQuery("version.bind", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	if rc := rcodeOf(askRaw(t, s.Addr(), pack(chaos), 5*time.Second)); rc != dns.RcodeNotImplemented {
		t.Errorf("CHAOS: got %s, want NOTIMP", dns.RcodeToString[rc])
	}
	if r := ask(t, s.Addr(), "tcp", newQuery("consul", dns.TypeAXFR)); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("AXFR: got %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	// Garbage gets FORMERR when it has a header, nothing otherwise; a
	// response gets nothing. Waiting for nothing takes a short deadline.
	resp := newQuery("web.service.consul", dns.TypeA)
	resp.Response = true
	if b := askRaw(t, s.Addr(), pack(resp), 200*time.Millisecond); b != nil {
		t.Errorf("a response was answered: %x", b)
	}
	if b := askRaw(t, s.Addr(), []byte{1, 2, 3}, 200*time.Millisecond); b != nil {
		t.Errorf("3 bytes of junk were answered: %x", b)
	}
	junk := append(pack(newQuery("web.service.consul", dns.TypeA))[:12], 0xff, 0xff, 0xff)
	if rc := rcodeOf(askRaw(t, s.Addr(), junk, 5*time.Second)); rc != dns.RcodeFormatError {
		t.Errorf("junk question: got %s, want FORMERR", dns.RcodeToString[rc])
	}
	// Still serving.
	if r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); len(r.Answer) != 3 {
		t.Errorf("after the junk: %d answers, want 3", len(r.Answer))
	}
	for reason, want := range map[string]float64{rejectOpcode: 4, rejectQuestions: 2, rejectResponse: 1, rejectMalformed: 2} {
		if got := metricValue(t, reg, "outrigger_dns_rejected_total", "reason", reason); got != want {
			t.Errorf("rejected{reason=%q}: got %v, want %v", reason, got, want)
		}
	}
}

func TestCatalogErrorsAndStale(t *testing.T) {
	cat := fixture()
	s := startServer(t, cat, nil)
	reg := s.cfg.Registerer

	cat.SetStale(true)
	for range 3 {
		if r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); len(r.Answer) != 3 {
			t.Fatalf("stale: %d answers, want 3 (stale data is served)", len(r.Answer))
		}
	}
	ask(t, s.Addr(), "udp", newQuery("n1.node.consul", dns.TypeA))
	if got := metricValue(t, reg, "outrigger_dns_stale_answers_total"); got != 4 {
		t.Errorf("stale answers: got %v, want 4", got)
	}
	cat.SetStale(false)
	cat.SetErr(errors.New("no servers"))
	for _, qname := range []string{"web.service.consul", "n1.node.consul"} {
		if r := ask(t, s.Addr(), "udp", newQuery(qname, dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s with a failing catalog: got %s, want SERVFAIL", qname, dns.RcodeToString[r.Rcode])
		}
	}
	if got := metricValue(t, reg, "outrigger_dns_queries_total", "qtype", "A", "rcode", "NOERROR"); got != 4 {
		t.Errorf("queries{A,NOERROR}: got %v, want 4", got)
	}
	if got := metricValue(t, reg, "outrigger_dns_queries_total", "qtype", "A", "rcode", "SERVFAIL"); got != 2 {
		t.Errorf("queries{A,SERVFAIL}: got %v, want 2", got)
	}
	if got := metricValue(t, reg, "outrigger_dns_query_duration_seconds", "answered_by", "local"); got != 6 {
		t.Errorf("latency observations: got %v, want 6", got)
	}
}

// slowCatalog blocks until ctx is done, like a view waiting for servers.
type slowCatalog struct{}

func (slowCatalog) Service(ctx context.Context, _ string) ([]Instance, bool, bool, error) {
	<-ctx.Done()
	return nil, false, false, ctx.Err()
}

func (slowCatalog) Node(ctx context.Context, _ string) (*Node, bool, bool, error) {
	<-ctx.Done()
	return nil, false, false, ctx.Err()
}

func TestLookupTimeout(t *testing.T) {
	s := startServer(t, slowCatalog{}, func(c *Config) { c.LookupTimeout = 50 * time.Millisecond })
	if r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("got %s, want SERVFAIL after the lookup timeout", dns.RcodeToString[r.Rcode])
	}
}

func TestTCPLimits(t *testing.T) {
	s := startServer(t, fixture(), func(c *Config) {
		c.MaxTCPConnections = 1
		c.MaxTCPQueries = 2
	})
	dial := func() *dns.Conn {
		c, err := dns.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	exchange := func(c *dns.Conn) error {
		if err := c.WriteMsg(newQuery("web.service.consul", dns.TypeA)); err != nil {
			return err
		}
		_, err := c.ReadMsg()
		return err
	}
	first := dial()
	if err := exchange(first); err != nil {
		t.Fatalf("first query: %v", err)
	}
	// A second connection while the first is open is closed at once.
	second := dial()
	if err := exchange(second); err == nil {
		t.Errorf("second connection answered, want it closed (MaxTCPConnections 1)")
	}
	// The first connection's second query is its last.
	if err := exchange(first); err != nil {
		t.Fatalf("second query: %v", err)
	}
	if err := exchange(first); err == nil {
		t.Errorf("third query on one connection answered, want the connection closed (MaxTCPQueries 2)")
	}
	// With the first closed, a new connection is served.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := exchange(dial()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after the first closed")
		}
	}
	if got := metricValue(t, s.cfg.Registerer, "outrigger_dns_tcp_connections_refused_total"); got < 1 {
		t.Errorf("refused connections: got %v, want at least 1", got)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	s := startServer(t, fixture(), func(c *Config) {
		c.TCPReadTimeout = 100 * time.Millisecond
	})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Send nothing: the server closes the connection after the read timeout.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("read: %v, want the connection closed by the server after 100ms", err)
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(testConfig(t), fixture())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: got %v, want ErrStarted", err)
	}
	addr := s.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "0" || port == "" {
		t.Errorf("Addr: got %q, want a port", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown: got %v, want ErrClosed", err)
	}
	c := &dns.Client{Net: "tcp", Timeout: time.Second}
	if _, _, err := c.Exchange(newQuery("web.service.consul", dns.TypeA), addr); err == nil {
		t.Errorf("answered after Shutdown")
	}
	// Taken port.
	s2 := startServer(t, fixture(), nil)
	cfg := testConfig(t)
	cfg.Addr = s2.Addr()
	s3, err := New(cfg, fixture())
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Start(); err == nil {
		t.Errorf("Start on a taken port succeeded")
		s3.Shutdown(ctx)
	}
	if _, err := New(testConfig(t), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New without a catalog: got %v, want ErrInvalidConfig", err)
	}
}
