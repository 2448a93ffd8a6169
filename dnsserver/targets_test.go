package dnsserver

import (
	"net/netip"
	"testing"
)

func TestTargetCacheNoAlloc(t *testing.T) {
	c := newTargetCache()
	ip := netip.MustParseAddr("127.0.0.2")
	first := c.addr(ip, ".addr.dc1.consul.")
	n := testing.AllocsPerRun(100, func() {
		if got := c.addr(ip, ".addr.dc1.consul."); got != first {
			t.Fatal(got)
		}
		_ = c.node("n1", ".node.dc1.consul.")
	})
	if n != 0 {
		t.Errorf("%v allocations per cached lookup", n)
	}
}
