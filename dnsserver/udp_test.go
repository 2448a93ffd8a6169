package dnsserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// blockingCatalog is the fixture, except that service "slow" waits for
// release (or the lookup's ctx), as a catalog does the first time a name
// is asked for.
type blockingCatalog struct {
	*MemCatalog
	release chan struct{}
	asked   chan struct{} // a lookup of "slow" with a live ctx started
}

func (c *blockingCatalog) Service(ctx context.Context, name string) ([]Instance, bool, bool, error) {
	if name == "slow" {
		if ctx.Err() == nil {
			select {
			case c.asked <- struct{}{}:
			default:
			}
		}
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, false, false, ctx.Err()
		}
	}
	return c.MemCatalog.Service(ctx, name)
}

// A query whose lookup blocks is answered in a goroutine of its own, once
// the lookup returns; meanwhile the readers answer the others in place.
func TestUDPBlockingLookupDoesNotHoldTheReaders(t *testing.T) {
	cat := &blockingCatalog{MemCatalog: fixture(), release: make(chan struct{}), asked: make(chan struct{}, 1)}
	cat.SetService("slow", manyInstances("slow", 2)...)
	s := startServer(t, cat, nil)
	if s.batch == nil {
		t.Fatal("a server on 127.0.0.1 does not use the batch UDP path")
	}
	slow := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 20 * time.Second}
		r, _, _ := c.Exchange(newQuery("slow.service.consul", dns.TypeA), s.Addr())
		slow <- r
	}()
	select {
	case <-cat.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking lookup never started")
	}
	// More queries than readers: all answered while "slow" waits.
	for i := range 3 * s.batch.readers {
		if r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("query %d while a lookup blocks: %s, %d answers", i, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	select {
	case r := <-slow:
		t.Fatalf("slow answered before its lookup returned: %v", r)
	default:
	}
	close(cat.release)
	select {
	case r := <-slow:
		if r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("slow after the lookup returned: %v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow never answered")
	}
}

// A wildcard listener keeps miekg/dns's UDP server (reply source address
// from IP_PKTINFO) and answers the same.
func TestUDPWildcardListener(t *testing.T) {
	s := startServer(t, fixture(), func(c *Config) { c.Addr = "0.0.0.0:0" })
	if s.batch != nil || s.udp == nil {
		t.Fatal("a wildcard listener uses the batch path")
	}
	_, port, _ := net.SplitHostPort(s.Addr())
	r := ask(t, net.JoinHostPort("127.0.0.1", port), "udp", newQuery("web.service.consul", dns.TypeSRV))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("wildcard listener: %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}

// Malformed datagrams and non-queries get what miekg/dns's server gives
// them: silence for a short or response packet, FORMERR or NOTIMP
// otherwise; the server keeps answering.
func TestUDPBatchBadDatagrams(t *testing.T) {
	s := startServer(t, fixture(), nil)
	good := newQuery("web.service.consul", dns.TypeA)
	good.Id = 77
	wire, _ := good.Pack()
	notify := newQuery("consul", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	nwire, _ := notify.Pack()
	resp := newQuery("web.service.consul", dns.TypeA)
	resp.Response = true
	rwire, _ := resp.Pack()
	for _, tc := range []struct {
		name  string
		raw   []byte
		rcode int // -1: no reply
	}{
		{"short", []byte{1, 2, 3}, -1},
		{"response", rwire, -1},
		{"truncated question", wire[:len(wire)-3], dns.RcodeFormatError},
		{"notify", nwire, dns.RcodeNotImplemented},
	} {
		b := askRaw(t, s.Addr(), tc.raw, 300*time.Millisecond)
		if tc.rcode < 0 {
			if b != nil {
				t.Errorf("%s: got a %d-byte reply, want none", tc.name, len(b))
			}
			continue
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || m.Rcode != tc.rcode || !m.Response {
			t.Errorf("%s: reply %v (%v), want rcode %s", tc.name, m, err, dns.RcodeToString[tc.rcode])
		}
	}
	m := new(dns.Msg)
	if err := m.Unpack(askRaw(t, s.Addr(), wire, 5*time.Second)); err != nil || m.Id != 77 || len(m.Answer) == 0 {
		t.Fatalf("good query after bad ones: %v, %v", m, err)
	}
}

// FuzzUDPDatagram feeds raw datagrams to the batch path's serve, as the
// readers do: never a panic, at most one reply, and a reply is a valid
// response to the query's ID that fits 512 bytes or the EDNS0 size.
func FuzzUDPDatagram(f *testing.F) {
	fuzzSeeds(f)
	s := fuzzServer(f, nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { pc.Close() })
	b := newBatchServer(s, pc.(*net.UDPConn))
	f.Fuzz(func(t *testing.T, raw []byte, _ bool) {
		req := new(dns.Msg)
		if req.Unpack(raw) == nil && len(req.Question) > 0 && !strings.HasSuffix(strings.ToLower(req.Question[0].Name), "consul.") &&
			!strings.HasSuffix(strings.ToLower(req.Question[0].Name), "alt.") {
			return // outside our domains: REFUSED without recursors, tested elsewhere
		}
		w := &batchWriter{b: b, out: make([]ipv4.Message, 1), bufs: make([][]byte, 1)}
		w.out[0].Buffers = [][]byte{nil}
		w.addr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
		if b.serve(raw, w.addr, new(dns.Msg), w) {
			t.Fatal("handed to a goroutine: nothing here blocks")
		}
		if !w.wrote {
			return
		}
		out := w.out[0].Buffers[0]
		resp := new(dns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("reply does not unpack: %v", err)
		}
		if len(raw) >= 2 && resp.Id != uint16(raw[0])<<8|uint16(raw[1]) || !resp.Response {
			t.Fatalf("reply id %d response %v", resp.Id, resp.Response)
		}
		limit := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
		}
		if len(out) > limit {
			t.Fatalf("reply of %d bytes, limit %d", len(out), limit)
		}
	})
}

// Many clients at once, over IPv4 and IPv6: each reply reaches the socket
// that asked, with its own ID (the batch reader reuses its address values
// from batch to batch).
func TestUDPBatchRepliesReachTheirSenders(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			if addr[0] == '[' {
				if c, err := net.ListenPacket("udp", addr); err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				} else {
					c.Close()
				}
			}
			s := startServer(t, fixture(), func(c *Config) { c.Addr = addr })
			if s.batch == nil {
				t.Fatal("not the batch path")
			}
			const clients, rounds = 16, 50
			errs := make(chan error, clients)
			for i := range clients {
				go func() {
					c, err := net.Dial("udp", s.Addr())
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					co := &dns.Conn{Conn: c}
					for j := range rounds {
						q := newQuery("web.service.consul", dns.TypeA)
						q.Id = uint16(i*rounds + j)
						_ = c.SetDeadline(time.Now().Add(5 * time.Second))
						if err := co.WriteMsg(q); err != nil {
							errs <- err
							return
						}
						r, err := co.ReadMsg()
						if err != nil {
							errs <- err
							return
						}
						if r.Id != q.Id || len(r.Answer) == 0 {
							errs <- fmt.Errorf("client %d: reply id %d (want %d), %d answers", i, r.Id, q.Id, len(r.Answer))
							return
						}
					}
					errs <- nil
				}()
			}
			for range clients {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
