package gossip

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// netTransport is memberlist's transport over UDP (probes, gossip) and TCP
// (push/pull, fallback pings) on one port. It does what memberlist's
// NetTransport does, with three differences that are the reason it
// exists:
//
//   - each received packet is copied into a buffer about its size;
//     NetTransport hands memberlist a fresh 64 KiB buffer per packet, which
//     its handler queue (up to 1024 packets) keeps alive, and which makes
//     every packet cost a 64 KiB allocation;
//   - it counts the bytes this member sends, for metrics and benchmarks;
//   - a taken port becomes a clear error wrapping ErrAddrInUse.
type netTransport struct {
	logger   *log.Logger
	tcp      *net.TCPListener
	udp      *net.UDPConn
	bindIP   net.IP
	bindPort int

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{} // closed by Shutdown
	once     sync.Once
	wg       sync.WaitGroup

	packetBytes atomic.Uint64
	streamBytes atomic.Uint64

	// blocked, set only by tests, cuts this member off from the addresses
	// it reports true for: packets to them are dropped and dials to them
	// fail, as across a network partition.
	blocked atomic.Pointer[func(addr string) bool]
}

// errBlocked is a dial to an address a test's partition cuts off.
var errBlocked = errors.New("address unreachable (test partition)")

func (t *netTransport) isBlocked(addr string) bool {
	f := t.blocked.Load()
	return f != nil && (*f)(addr)
}

var errTransportClosed = errors.New("gossip transport is shut down")

const (
	// maxPacketSize is the largest UDP payload read.
	maxPacketSize = 65536
	// udpRecvBufSize is the socket receive buffer asked for (the kernel
	// may cap it): bursts of gossip must not be dropped by the kernel.
	udpRecvBufSize = 2 << 20
)

// newTransport listens on addr:port, UDP and TCP. Port 0 picks a free port;
// the kernel picks it for TCP and UDP may find it taken, so that is
// retried.
func newTransport(addr string, port int, logger *log.Logger) (*netTransport, error) {
	ip := net.ParseIP(addr)
	hostPort := net.JoinHostPort(addr, strconv.Itoa(port))
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *netTransport
		if t, err = listen(ip, port, logger); err == nil {
			t.wg.Add(2)
			go t.readPackets()
			go t.acceptStreams()
			return t, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("gossip: bind %s: %w", hostPort, ErrAddrInUse)
	}
	return nil, fmt.Errorf("gossip: bind %s: %w", hostPort, err)
}

func listen(ip net.IP, port int, logger *log.Logger) (*netTransport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	for size := udpRecvBufSize; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	return &netTransport{
		logger:   logger,
		tcp:      tcp,
		udp:      udp,
		bindIP:   ip,
		bindPort: port,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}, nil
}

func (t *netTransport) closing() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *netTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacketSize)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.closing() {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if n < 1 {
			t.logger.Printf("[ERR] memberlist: UDP packet too short (%d bytes) %s", n, memberlist.LogAddress(from))
			continue
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: ts}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}

func (t *netTransport) acceptStreams() {
	defer t.wg.Done()
	const minDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closing() {
				return
			}
			delay = min(max(2*delay, minDelay), maxDelay)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streamCh <- &countingConn{Conn: conn, n: &t.streamBytes}:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}

// FinalAdvertiseAddr returns ip:port if ip is set, else the bound address,
// or, when bound to 0.0.0.0, this host's first private IPv4 address.
func (t *netTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
		}
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		if port == 0 {
			port = t.bindPort
		}
		return addr, port, nil
	}
	if t.bindIP.IsUnspecified() {
		private, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("failed to get interface addresses: %v", err)
		}
		if private == "" {
			return nil, 0, fmt.Errorf("no private IP address found to advertise; set AdvertiseAddr")
		}
		addr := net.ParseIP(private)
		if addr == nil {
			return nil, 0, fmt.Errorf("failed to parse private IP %q", private)
		}
		return addr, t.bindPort, nil
	}
	addr := t.bindIP
	if v4 := addr.To4(); v4 != nil {
		addr = v4
	}
	return addr, t.bindPort, nil
}

func (t *netTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *netTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.closing() {
		return time.Time{}, errTransportClosed
	}
	if t.isBlocked(a.Addr) {
		return time.Now(), nil // lost on the way
	}
	to, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	n, err := t.udp.WriteTo(b, to)
	t.packetBytes.Add(uint64(n))
	return time.Now(), err
}

func (t *netTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *netTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *netTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.closing() { // a join still running when the member was shut down
		return nil, errTransportClosed
	}
	if t.isBlocked(a.Addr) {
		return nil, errBlocked
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &t.streamBytes}, nil
}

func (t *netTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the sockets and waits for the reading goroutines; safe
// to call more than once.
func (t *netTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		_ = t.tcp.Close()
		_ = t.udp.Close()
		t.wg.Wait()
	})
	return nil
}

// sent returns the bytes sent so far in packets and on streams.
func (t *netTransport) sent() (packet, stream uint64) {
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
	_ memberlist.NodeAwareTransport = (*netTransport)(nil)
	_ net.Conn                      = (*countingConn)(nil)
)
