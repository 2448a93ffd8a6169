package dnsserver

import (
	"net/netip"
	"testing"
)

func TestParseName(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AltDomain = "alt."
	s, err := New(cfg, NewMemCatalog())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		qname  string
		ours   bool
		kind   nameKind
		target string
		tag    string
		alt    bool
	}{
		{"consul.", true, kindApex, "", "", false},
		{"alt.", true, kindApex, "", "", true},
		{"ns.consul.", true, kindNSHost, "", "", false},
		{"dc1.consul.", true, kindEmpty, "", "", false},
		{"dc2.consul.", true, kindNone, "", "", false},
		{"service.consul.", true, kindEmpty, "", "", false},
		{"service.dc1.consul.", true, kindEmpty, "", "", false},
		{"service.dc2.consul.", true, kindNone, "", "", false},
		{"_tcp.service.consul.", true, kindEmpty, "", "", false},
		{"web.service.consul.", true, kindService, "web", "", false},
		{"web.service.alt.", true, kindService, "web", "", true},
		{"web.service.dc1.consul.", true, kindService, "web", "", false},
		{"web.service.dc2.consul.", true, kindNone, "", "", false},
		{"v1.web.service.consul.", true, kindService, "web", "v1", false},
		{"v1.2.web.service.consul.", true, kindService, "web", "v1.2", false},
		{"_web._tcp.service.consul.", true, kindService, "web", "", false},
		{"_web._v1.service.dc1.consul.", true, kindService, "web", "v1", false},
		{"_web.service.consul.", true, kindEmpty, "", "", false},
		{"x._web._tcp.service.consul.", true, kindNone, "", "", false},
		{"node.service.consul.", true, kindService, "node", "", false},
		{"service.service.consul.", true, kindService, "service", "", false},
		{"we\\.b.service.consul.", true, kindNone, "", "", false},
		{"we*b.service.consul.", true, kindNone, "", "", false},
		{"n1.node.consul.", true, kindNode, "n1", "", false},
		{"n1.node.dc1.consul.", true, kindNode, "n1", "", false},
		{"a.n1.node.consul.", true, kindNone, "", "", false},
		{"7f000001.addr.consul.", true, kindAddr, "", "", false},
		{"7f000001.addr.dc3.consul.", true, kindNone, "", "", false},
		{"web.query.consul.", true, kindNone, "", "", false},
		{"web.connect.consul.", true, kindNone, "", "", false},
		{"foo.consul.", true, kindNone, "", "", false},
		{"xconsul.", false, 0, "", "", false},
		{"consul.org.", false, 0, "", "", false},
		{"example.org.", false, 0, "", "", false},
		{".", false, 0, "", "", false},
	} {
		n, ours := s.parseName(tc.qname)
		if ours != tc.ours || n.kind != tc.kind || n.target != tc.target || n.tag != tc.tag {
			t.Errorf("%s: got ours %v kind %d target %q tag %q, want %v %d %q %q",
				tc.qname, ours, n.kind, n.target, n.tag, tc.ours, tc.kind, tc.target, tc.tag)
		}
		if ours && (n.dom == &s.domains[1]) != tc.alt {
			t.Errorf("%s: alt domain %v, want %v", tc.qname, n.dom == &s.domains[1], tc.alt)
		}
	}
}

func TestHexAddr(t *testing.T) {
	for _, tc := range []struct{ ip, hex string }{
		{"127.0.0.1", "7f000001"},
		{"10.1.2.255", "0a0102ff"},
		{"fd00::6", "fd000000000000000000000000000006"},
		{"2001:db8::ff00:42:8329", "20010db8000000000000ff0000428329"},
	} {
		a := netip.MustParseAddr(tc.ip)
		if got := hexAddr(a); got != tc.hex {
			t.Errorf("hexAddr(%s): got %s, want %s", tc.ip, got, tc.hex)
		}
		if got, ok := parseHexAddr(tc.hex); !ok || got != a {
			t.Errorf("parseHexAddr(%s): got %v %v, want %s", tc.hex, got, ok, tc.ip)
		}
	}
	for _, bad := range []string{"", "7f00001", "7f0000011", "7g000001", "7f00000x"} {
		if _, ok := parseHexAddr(bad); ok {
			t.Errorf("parseHexAddr(%q) succeeded", bad)
		}
	}
}
