//go:build linux

package dnsserver

import (
	"context"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The readers block in the kernel, outside Go's poller: Shutdown must wake
// them itself (not wait for their read timeout), close the socket (the
// port can be bound again) and leave no descriptor behind.
func TestUDPRawShutdownWakesBlockedReaders(t *testing.T) {
	old := rawReadTimeout
	rawReadTimeout = 10 * time.Minute
	t.Cleanup(func() { rawReadTimeout = old })
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(es)
	}
	before := fds()
	s, err := New(testConfig(t), fixture())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.batch == nil {
		t.Fatal("a server on 127.0.0.1 does not use the batch UDP path")
	}
	if _, ok := s.batch.sock.(*rawSock); !ok {
		t.Fatalf("the batch path uses %T, not the blocking socket", s.batch.sock)
	}
	if r := ask(t, s.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("before shutdown: %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	addr := s.Addr()
	// Every reader is back in recvmmsg once the answer is out; give them
	// a moment to block there, then shut down.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return: the blocked readers were not woken")
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("after shutdown the UDP port is still bound: %v", err)
	}
	pc.Close()
	if after := fds(); after > before {
		t.Fatalf("%d descriptors before the server, %d after its shutdown", before, after)
	}
}

// Each blocking reader brings its own P for as long as the server runs,
// so that a reader holding one in the kernel holds up nothing else; with
// GOMAXPROCS set by the user the readers wait in Go's poller and the
// limit stays as it is.
func TestUDPRawReadersBringTheirOwnProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	s := startServer(t, fixture(), nil)
	if _, ok := s.batch.sock.(*rawSock); !ok {
		t.Fatalf("the batch path uses %T, not the blocking socket", s.batch.sock)
	}
	if got, want := runtime.GOMAXPROCS(0), base+s.batch.readers; got != want {
		t.Fatalf("GOMAXPROCS %d with %d blocking readers started from %d; want %d", got, s.batch.readers, base, want)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS %d after shutdown; want %d back", got, base)
	}

	t.Setenv("GOMAXPROCS", "1")
	p := startServer(t, fixture(), nil)
	if _, ok := p.batch.sock.(*pollSock); !ok {
		t.Fatalf("with GOMAXPROCS set, the batch path uses %T, not Go's poller", p.batch.sock)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("with GOMAXPROCS set, it moved from %d to %d", base, got)
	}
	if r := ask(t, p.Addr(), "udp", newQuery("web.service.consul", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("through the poller: %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}
