package dnsserver

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is an in-test recursor: it answers every A question with
// 127.0.0.53, "refused.test." with REFUSED, and counts what it saw.
type upstream struct {
	addr    string
	queries atomic.Int64
	sawOpt  atomic.Bool
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		if r.IsEdns0() != nil {
			u.sawOpt.Store(true)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		switch {
		case q.Name == "refused.test.":
			m.Rcode = dns.RcodeRefused
		case q.Name == "missing.test.":
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 30 IN A 127.0.0.53")
			m.Answer = append(m.Answer, rr)
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		w.WriteMsg(m)
	})
	// The same port for UDP and TCP: a UDP port the kernel picks may be
	// taken for TCP (outgoing connections of other tests), so try again.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 100 {
			t.Fatalf("no port free for both UDP and TCP after 100 tries: %v", err)
		}
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// deadAddr is a loopback UDP port nobody listens on: queries to it fail
// at once with "connection refused".
func deadAddr(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// silentAddr is a loopback UDP port that reads nothing: queries to it
// time out.
func silentAddr(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestRecursors(t *testing.T) {
	up := startUpstream(t)
	for _, tc := range []struct {
		name      string
		recursors []string
		strategy  RecursorStrategy
	}{
		{"one", []string{up.addr}, ""},
		{"first dead", []string{deadAddr(t), up.addr}, ""},
		{"first silent", []string{silentAddr(t), up.addr}, RecursorSequential},
		{"random", []string{deadAddr(t), silentAddr(t), up.addr}, RecursorRandom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, fixture(), func(c *Config) {
				c.Recursors = tc.recursors
				c.RecursorStrategy = tc.strategy
				c.RecursorTimeout = 200 * time.Millisecond
			})
			for _, network := range []string{"udp", "tcp"} {
				q := newQuery("www.Example.org", dns.TypeA)
				q.SetEdns0(1232, false)
				r := ask(t, s.Addr(), network, q)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || addrs(r.Answer)[0] != "127.0.0.53" {
					t.Fatalf("%s: got %v, want the upstream's A", network, r)
				}
				if !r.RecursionAvailable || r.Authoritative {
					t.Errorf("%s: RA %v AA %v, want RA and not AA", network, r.RecursionAvailable, r.Authoritative)
				}
				if r.IsEdns0() == nil {
					t.Errorf("%s: OPT not echoed", network)
				}
				if r.Question[0].Name != "www.Example.org." {
					t.Errorf("%s: question %q, want the client's case", network, r.Question[0].Name)
				}
				// Our own names still come from the catalog, with RA set.
				r = ask(t, s.Addr(), network, newQuery("web.service.consul", dns.TypeA))
				if len(r.Answer) != 3 || !r.RecursionAvailable {
					t.Errorf("%s: local answer %d records RA %v, want 3 and RA", network, len(r.Answer), r.RecursionAvailable)
				}
			}
			// NXDOMAIN from a recursor is an answer, passed on.
			if r := ask(t, s.Addr(), "udp", newQuery("missing.test", dns.TypeA)); r.Rcode != dns.RcodeNameError {
				t.Errorf("missing.test: got %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
			if got := metricValue(t, s.cfg.Registerer, "outrigger_dns_query_duration_seconds", "answered_by", "recursor"); got != 3 {
				t.Errorf("recursor latency observations: got %v, want 3", got)
			}
		})
	}
	if !up.sawOpt.Load() {
		t.Errorf("the client's EDNS0 was not forwarded")
	}
}

func TestRecursorFailures(t *testing.T) {
	up := startUpstream(t)
	t.Run("all dead", func(t *testing.T) {
		s := startServer(t, fixture(), func(c *Config) {
			c.Recursors = []string{deadAddr(t), silentAddr(t)}
			c.RecursorTimeout = 100 * time.Millisecond
		})
		r := ask(t, s.Addr(), "udp", newQuery("example.org", dns.TypeA))
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("got %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		if got := metricValue(t, s.cfg.Registerer, "outrigger_dns_recursor_errors_total"); got != 2 {
			t.Errorf("recursor errors: got %v, want 2", got)
		}
	})
	t.Run("REFUSED moves on", func(t *testing.T) {
		s := startServer(t, fixture(), func(c *Config) { c.Recursors = []string{up.addr, up.addr} })
		before := up.queries.Load()
		r := ask(t, s.Addr(), "udp", newQuery("refused.test", dns.TypeA))
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("got %s, want SERVFAIL when every recursor refuses", dns.RcodeToString[r.Rcode])
		}
		if n := up.queries.Load() - before; n != 2 {
			t.Errorf("upstream asked %d times, want 2 (once per recursor)", n)
		}
	})
	t.Run("no recursion desired", func(t *testing.T) {
		s := startServer(t, fixture(), func(c *Config) { c.Recursors = []string{up.addr} })
		q := newQuery("example.org", dns.TypeA)
		q.RecursionDesired = false
		if r := ask(t, s.Addr(), "udp", q); r.Rcode != dns.RcodeRefused || !r.RecursionAvailable {
			t.Errorf("RD clear: got %s RA %v, want REFUSED with RA", dns.RcodeToString[r.Rcode], r.RecursionAvailable)
		}
	})
	t.Run("shed", func(t *testing.T) {
		// One forward in flight, held by a silent recursor: the next is shed.
		s := startServer(t, fixture(), func(c *Config) {
			c.Recursors = []string{silentAddr(t)}
			c.RecursorTimeout = 2 * time.Second
			c.MaxConcurrentRecursions = 1
		})
		done := make(chan *dns.Msg, 1)
		go func() {
			c := &dns.Client{Timeout: 5 * time.Second}
			r, _, _ := c.Exchange(newQuery("slow.example.org", dns.TypeA), s.Addr())
			done <- r
		}()
		deadline := time.Now().Add(5 * time.Second)
		for len(s.fwdSem) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the first forward never started")
			}
			time.Sleep(time.Millisecond) // polling a condition with a deadline
		}
		if r := ask(t, s.Addr(), "udp", newQuery("other.example.org", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("second forward: got %s, want SERVFAIL (shed)", dns.RcodeToString[r.Rcode])
		}
		if got := metricValue(t, s.cfg.Registerer, "outrigger_dns_recursions_shed_total"); got != 1 {
			t.Errorf("shed: got %v, want 1", got)
		}
		// Shutdown aborts the forward in flight.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if r := <-done; r == nil || r.Rcode != dns.RcodeServerFailure {
			t.Errorf("forward in flight at Shutdown: got %v, want SERVFAIL", r)
		}
	})
}
