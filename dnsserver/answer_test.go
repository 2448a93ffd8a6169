package dnsserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestAnswerDetails covers the less common shapes of catalog data.
func TestAnswerDetails(t *testing.T) {
	cat := NewMemCatalog()
	cat.SetService("ext", Instance{Node: "n1", NodeAddress: "127.0.0.1", Address: "db.example.com", Port: 5432, Status: StatusPassing})
	cat.SetService("multi",
		Instance{Node: "n1", NodeAddress: "127.0.0.1", ServiceID: "m1", Port: 1001, Status: StatusPassing},
		Instance{Node: "n1", NodeAddress: "127.0.0.1", ServiceID: "m2", Port: 1002, Status: StatusPassing},
		Instance{Node: "n1", NodeAddress: "127.0.0.1", Address: "127.0.0.1", ServiceID: "m3", Port: 1003, Status: StatusPassing},
	)
	cat.SetService("odd",
		Instance{Node: "my.node", NodeAddress: "127.0.0.9", Port: 1, Status: StatusPassing},
		Instance{Node: "mapped", NodeAddress: "::ffff:127.0.0.10", Port: 2, Status: StatusPassing},
		Instance{Node: "unknown-status", NodeAddress: "127.0.0.11", Port: 3, Status: "maintenance"},
		Instance{Node: "no-address", Port: 4, Status: StatusPassing},
	)
	long := strings.Repeat("0123456789", 30)
	cat.SetNode(Node{Name: "meta", Address: "127.0.0.1", Meta: map[string]string{
		"long": long, "path": `c:\dir`, "rfc1035-txt": "v=spf1 -all",
	}})
	big := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		big[k] = strings.Repeat(k, 100)
	}
	cat.SetNode(Node{Name: "bigmeta", Address: "127.0.0.1", Meta: big})
	cat.SetNode(Node{Name: "hosted", Address: "node.example.com"})
	s := startServer(t, cat, nil)

	t.Run("host name address", func(t *testing.T) {
		r := ask(t, s.Addr(), "udp", newQuery("ext.service.consul", dns.TypeA))
		if len(r.Answer) != 1 || r.Answer[0].(*dns.CNAME).Target != "db.example.com." {
			t.Errorf("A: got %v, want a CNAME to db.example.com.", r.Answer)
		}
		r = ask(t, s.Addr(), "udp", newQuery("ext.service.consul", dns.TypeSRV))
		if got := srvs(r.Answer); len(got) != 1 || got[0].Target != "db.example.com." || len(r.Extra) != 0 {
			t.Errorf("SRV: got %v + %v, want target db.example.com. and no additional", r.Answer, r.Extra)
		}
		r = ask(t, s.Addr(), "udp", newQuery("hosted.node.consul", dns.TypeA))
		if len(r.Answer) != 1 || r.Answer[0].(*dns.CNAME).Target != "node.example.com." {
			t.Errorf("node: got %v, want a CNAME", r.Answer)
		}
	})
	t.Run("one node, several instances", func(t *testing.T) {
		r := ask(t, s.Addr(), "udp", newQuery("multi.service.consul", dns.TypeA))
		if got := addrs(r.Answer); !slices.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("A: got %v, want one record per address", got)
		}
		r = ask(t, s.Addr(), "udp", newQuery("multi.service.consul", dns.TypeSRV))
		if len(r.Answer) != 3 || len(r.Extra) != 1 {
			t.Errorf("SRV: got %d answers %d additional, want 3 and 1", len(r.Answer), len(r.Extra))
		}
		for _, srv := range srvs(r.Answer) {
			if srv.Target != "n1.node.dc1.consul." {
				t.Errorf("SRV target %s: an Address equal to the node's is the node", srv.Target)
			}
		}
	})
	t.Run("odd instances", func(t *testing.T) {
		r := ask(t, s.Addr(), "udp", newQuery("odd.service.consul", dns.TypeA))
		if got := addrs(r.Answer); !slices.Equal(got, []string{"127.0.0.10", "127.0.0.9"}) {
			t.Errorf("A: got %v, want the mapped address as A, no unknown status, no empty address", got)
		}
		r = ask(t, s.Addr(), "udp", newQuery("odd.service.consul", dns.TypeSRV))
		var targets []string
		for _, srv := range srvs(r.Answer) {
			targets = append(targets, srv.Target)
		}
		slices.Sort(targets)
		if want := []string{"7f000009.addr.dc1.consul.", "mapped.node.dc1.consul."}; !slices.Equal(targets, want) {
			t.Errorf("SRV targets: got %v, want %v (a node name with a dot is no label)", targets, want)
		}
		checkSRVGlue(t, r)
	})
	t.Run("TXT escaping and length", func(t *testing.T) {
		r := ask(t, s.Addr(), "tcp", newQuery("meta.node.consul", dns.TypeTXT))
		got := map[string][]string{}
		for _, rr := range r.Answer {
			txt := rr.(*dns.TXT).Txt
			got[txt[0][:4]] = txt
		}
		if l := got["long"]; len(l) != 2 || len(l[0]) != 255 || strings.Join(l, "") != "long="+long {
			t.Errorf("long value: got %q, want it split at 255 bytes", l)
		}
		if p := got["path"]; len(p) != 1 || p[0] != `path=c:\\dir` { // unpacked TXT is escaped
			t.Errorf("backslash: got %q", p)
		}
		if v := got["v=sp"]; len(v) != 1 || v[0] != "v=spf1 -all" {
			t.Errorf("rfc1035- key: got %q, want the bare value", v)
		}
	})
	t.Run("metadata dropped before the address", func(t *testing.T) {
		r := ask(t, s.Addr(), "udp", newQuery("bigmeta.node.consul", dns.TypeA))
		if got := addrs(r.Answer); !slices.Equal(got, []string{"127.0.0.1"}) || r.Truncated || len(r.Extra) != 0 {
			t.Errorf("got %v + %d additional, TC %v: want the address, no TXT, no TC", got, len(r.Extra), r.Truncated)
		}
		r = ask(t, s.Addr(), "tcp", newQuery("bigmeta.node.consul", dns.TypeA))
		if len(txts(r.Extra)) != 8 {
			t.Errorf("TCP: got %d TXT records in additional, want 8", len(txts(r.Extra)))
		}
		r = ask(t, s.Addr(), "udp", newQuery("bigmeta.node.consul", dns.TypeTXT))
		if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) == 8 {
			t.Errorf("TXT over UDP: %d records TC %v, want some with TC", len(r.Answer), r.Truncated)
		}
	})
}

func TestUDPAnswerLimit(t *testing.T) {
	cat := NewMemCatalog()
	cat.SetService("web", manyInstances("web", 10)...)
	for _, truncate := range []bool{false, true} {
		s := startServer(t, cat, func(c *Config) { c.UDPAnswerLimit = 2; c.EnableTruncate = truncate })
		r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA))
		if len(r.Answer) != 2 || r.Truncated != truncate {
			t.Errorf("EnableTruncate %v: %d answers TC %v, want 2 and TC %v", truncate, len(r.Answer), r.Truncated, truncate)
		}
		r = ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeSRV))
		if len(r.Answer) != 2 || len(r.Extra) != 2 {
			t.Errorf("SRV: %d answers %d additional, want 2 and their 2 addresses", len(r.Answer), len(r.Extra))
		}
		q := newQuery("web.service.consul", dns.TypeA)
		q.SetEdns0(1232, false)
		if r := ask(t, s.Addr(), "udp", q); len(r.Answer) != 10 {
			t.Errorf("with EDNS0: %d answers, want 10 (the limit is for queries without)", len(r.Answer))
		}
		if r := ask(t, s.Addr(), "tcp", newQuery("web.service.consul", dns.TypeA)); len(r.Answer) != 10 {
			t.Errorf("TCP: %d answers, want 10", len(r.Answer))
		}
	}
}
