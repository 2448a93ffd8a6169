package gossip

import (
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func newTestTransport(t *testing.T, addr string) *netTransport {
	t.Helper()
	tr, err := newTransport(addr, 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

func TestTransportPacketsAndStreams(t *testing.T) {
	a := newTestTransport(t, "127.0.0.1")
	b := newTestTransport(t, "127.0.0.1")
	bAddr := net.JoinHostPort("127.0.0.1", itoa(b.bindPort))

	if _, err := a.WriteToAddress([]byte("hello"), memberlist.Address{Addr: bAddr}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-b.PacketCh():
		if string(p.Buf) != "hello" || cap(p.Buf) > 64 {
			t.Errorf("packet %q, cap %d: want the payload in a buffer about its size, not 64 KiB", p.Buf, cap(p.Buf))
		}
		if !strings.HasPrefix(p.From.String(), "127.0.0.1:") {
			t.Errorf("from %v", p.From)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("packet not received")
	}

	c, err := a.DialTimeout(bAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("stream")); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-b.StreamCh():
		buf := make([]byte, 6)
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "stream" {
			t.Errorf("read %q, %v", buf, err)
		}
		if _, err := sc.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		sc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("stream not accepted")
	}
	if p, s := a.sent(); p != 5 || s != 6 {
		t.Errorf("a sent %d packet and %d stream bytes, want 5 and 6", p, s)
	}
	if _, s := b.sent(); s != 2 {
		t.Errorf("b sent %d stream bytes on the accepted connection, want 2", s)
	}
}

func TestTransportAdvertiseAddr(t *testing.T) {
	tr := newTestTransport(t, "127.0.0.1")
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.bindPort {
		t.Errorf("bound address: %v %d %v", ip, port, err)
	}
	ip, port, err = tr.FinalAdvertiseAddr("10.1.2.3", 0)
	if err != nil || ip.String() != "10.1.2.3" || len(ip) != 4 || port != tr.bindPort {
		t.Errorf("explicit address without port: %v %d %v", ip, port, err)
	}
	if _, port, _ = tr.FinalAdvertiseAddr("10.1.2.3", 9999); port != 9999 {
		t.Errorf("explicit port: %d", port)
	}
	if _, _, err = tr.FinalAdvertiseAddr("nope", 0); err == nil {
		t.Error("bad address accepted")
	}

	any := newTestTransport(t, "0.0.0.0")
	ip, _, err = any.FinalAdvertiseAddr("", 0)
	switch {
	case err != nil && !strings.Contains(err.Error(), "set AdvertiseAddr"):
		t.Errorf("0.0.0.0 without a private IP: %v", err)
	case err == nil && (ip.IsUnspecified() || ip.IsLoopback()):
		t.Errorf("0.0.0.0 advertised as %v", ip)
	}
}

func TestTransportShutdownWithoutReader(t *testing.T) {
	tr, err := newTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads PacketCh or StreamCh: Shutdown must still return.
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", itoa(tr.bindPort)))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	c.Close()
	tc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(tr.bindPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	done := make(chan struct{})
	go func() { tr.Shutdown(); tr.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
