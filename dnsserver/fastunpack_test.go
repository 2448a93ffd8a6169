package dnsserver

import (
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

func packQuery(t testing.TB, name string, qtype uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	m.RecursionDesired = true
	if edns {
		m.SetEdns0(4096, false)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fastUnpack agrees with miekg/dns's Unpack on what it takes, and leaves
// the rest to it.
func TestFastUnpack(t *testing.T) {
	var ni nameIntern
	for _, tc := range []struct {
		p    []byte
		fast bool
	}{
		{packQuery(t, "web.service.consul.", dns.TypeSRV, false), true},
		{packQuery(t, "V1.Web.service.consul.", dns.TypeA, false), true},
		{packQuery(t, "_web._tcp.service.consul.", dns.TypeSRV, false), true},
		{packQuery(t, ".", dns.TypeNS, false), true},
		{packQuery(t, "web.service.consul.", dns.TypeA, true), false},    // OPT: miekg's path
		{packQuery(t, `we\.b.service.consul.`, dns.TypeA, false), false}, // escaped byte
		{append(packQuery(t, "web.service.consul.", dns.TypeA, false), 0), false},
	} {
		var fast, slow dns.Msg
		got := fastUnpack(tc.p, &fast, &ni)
		if got != tc.fast {
			t.Errorf("% x: fast path %v, want %v", tc.p, got, tc.fast)
			continue
		}
		if !got {
			continue
		}
		if err := slow.Unpack(tc.p); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("fast %+v\nslow %+v", fast, slow)
		}
	}
	// A reused message and a known name: no allocation.
	p := packQuery(t, "web.service.consul.", dns.TypeA, false)
	var m dns.Msg
	fastUnpack(p, &m, &ni)
	if n := testing.AllocsPerRun(100, func() { fastUnpack(p, &m, &ni) }); n != 0 {
		t.Errorf("%v allocations per fast unpack", n)
	}
}

// FuzzFastUnpack: whatever fastUnpack takes, miekg/dns reads the same.
func FuzzFastUnpack(f *testing.F) {
	f.Add(packQuery(f, "web.service.consul.", dns.TypeSRV, false))
	f.Add(packQuery(f, ".", dns.TypeA, false))
	f.Add(packQuery(f, "a-b_c.node.dc1.consul.", dns.TypeTXT, true))
	var ni nameIntern
	f.Fuzz(func(t *testing.T, p []byte) {
		var fast dns.Msg
		if !fastUnpack(p, &fast, &ni) {
			return
		}
		var slow dns.Msg
		if err := slow.Unpack(p); err != nil {
			t.Fatalf("fast path took % x, miekg/dns refuses it: %v", p, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("% x:\nfast %+v\nslow %+v", p, fast, slow)
		}
	})
}
