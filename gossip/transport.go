package gossip

import (
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport is memberlist's NetTransport with byte counters on
// everything this member sends: UDP packets and both directions' writes
// on TCP streams (push/pull, fallback pings). We create the NetTransport
// ourselves, rather than letting memberlist do it, to count bytes and to
// turn bind failures into clear errors.
type countingTransport struct {
	inner    *memberlist.NetTransport
	bindIP   net.IP
	bindPort int

	packetBytes atomic.Uint64
	streamBytes atomic.Uint64

	streamCh  chan net.Conn
	stopping  chan struct{} // closed first in Shutdown
	innerDown chan struct{} // closed once inner.Shutdown returned
	relayDone chan struct{}
	once      sync.Once
}

// newTransport binds UDP and TCP on addr:port. Port 0 picks a free port
// (retried: the TCP port the kernel picks may be taken for UDP).
func newTransport(addr string, port int, logger *log.Logger) (*countingTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{addr}, BindPort: port, Logger: logger}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			break
		}
	}
	hostPort := net.JoinHostPort(addr, strconv.Itoa(port))
	if err != nil {
		// NetTransport formats the cause with %v, so match on text.
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("gossip: bind %s: %w", hostPort, ErrAddrInUse)
		}
		return nil, fmt.Errorf("gossip: bind %s: %v", hostPort, err)
	}
	t := &countingTransport{
		inner:     nt,
		bindIP:    net.ParseIP(addr),
		bindPort:  nt.GetAutoBindPort(),
		streamCh:  make(chan net.Conn),
		stopping:  make(chan struct{}),
		innerDown: make(chan struct{}),
		relayDone: make(chan struct{}),
	}
	go t.relayStreams()
	return t, nil
}

// relayStreams wraps incoming connections so their writes are counted.
func (t *countingTransport) relayStreams() {
	defer close(t.relayDone)
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.streamCh <- &countingConn{Conn: c, n: &t.streamBytes}:
			case <-t.stopping:
				_ = c.Close()
			}
		case <-t.stopping:
			// NetTransport's accept loop blocks handing over a connection,
			// and its Shutdown waits for that loop: keep draining.
			for {
				select {
				case c := <-in:
					_ = c.Close()
				case <-t.innerDown:
					return
				}
			}
		}
	}
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ts, err := t.inner.WriteToAddress(b, a)
	if err == nil {
		t.packetBytes.Add(uint64(len(b)))
	}
	return ts, err
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.inner.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &t.streamBytes}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listeners; safe to call more than once.
func (t *countingTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.stopping)
		err = t.inner.Shutdown()
		close(t.innerDown)
		<-t.relayDone
	})
	return err
}

// sent returns the bytes sent so far in packets and on streams.
func (t *countingTransport) sent() (packet, stream uint64) {
	return t.packetBytes.Load(), t.streamBytes.Load()
}

// countingConn counts the bytes written to a stream.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

var (
	_ memberlist.NodeAwareTransport = (*countingTransport)(nil)
	_ net.Conn                      = (*countingConn)(nil)
)
