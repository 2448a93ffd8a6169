package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// The UDP side does not go through miekg/dns's server, which reads one
// datagram per system call and answers each in a goroutine of its own
// (measured: most of the agent's CPU under dnsperf went to waking
// goroutines and threads). Instead a few readers each take a batch of
// datagrams with one recvmmsg, answer them in place — a query answered
// from the catalog's memory never blocks — and send the batch's replies
// with one sendmmsg. A query that may block (a name the catalog has not
// seen yet, a recursor) goes to a goroutine of its own, as before.
//
// This path serves sockets bound to one address. A wildcard listener
// (0.0.0.0, ::) keeps miekg/dns's server, which sets the source address of
// each reply from the query's destination (IP_PKTINFO) on multi-homed
// hosts.

// udpBatch is the most datagrams read (and replies sent) per system call.
const udpBatch = 32

// cloneAddr copies a reader's address for use after the next read.
func cloneAddr(a net.Addr) net.Addr {
	if u, ok := a.(*net.UDPAddr); ok && u != nil {
		return &net.UDPAddr{IP: append(net.IP(nil), u.IP...), Port: u.Port, Zone: u.Zone}
	}
	return a
}

// udpReaders is how many goroutines read the socket. Blocked in their
// own recvmmsg on Linux (the kernel wakes one per burst): one per core, as
// Knot's UDP workers. Measured on 2 cores against Knot (bench/dns): one
// reader used 5.2 µs of CPU per query and two 5.8, but with one reader a
// burst waited for the batch before it — a p99 at a fixed rate 4.6× Knot's
// and at saturation 2.0× — and with two 1.4× and 1.0×. Through Go's
// poller: one per two cores, as every waiting reader costs wake-ups (two
// readers used 9.3 µs of CPU per query, one 7.5 µs).
func udpReaders(blocking bool) int {
	if blocking {
		return min(max(runtime.GOMAXPROCS(0), 1), 8)
	}
	return min(max(runtime.GOMAXPROCS(0)/2, 1), 8)
}

// Readers blocked in the kernel each hold a P (Go's processor slot) until
// the scheduler's monitor takes it back, which it does after up to 10 ms
// when the process has been idle: with GOMAXPROCS=1 every DNS query, or
// every read timeout, could stall the rest of the agent (the sidecar
// proxy's p99 went from 2.7 to 16 ms). So the server adds one P per
// blocking reader for as long as it runs: the rest of the agent keeps the
// Ps it had. A GOMAXPROCS set by the user is a limit the agent keeps to:
// then the readers wait in Go's poller instead.
var procsMu sync.Mutex

// addProcs moves GOMAXPROCS by n.
func addProcs(n int) {
	procsMu.Lock()
	defer procsMu.Unlock()
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0)+n, 1))
}

// blockingAllowed reports whether the readers may block in the kernel:
// GOMAXPROCS is not pinned by the environment.
func blockingAllowed() bool { return os.Getenv("GOMAXPROCS") == "" }

// batchServer is the UDP side of a started Server.
type batchServer struct {
	s     *Server
	sock  udpSock
	laddr net.Addr
	wg    sync.WaitGroup // readers and the goroutines of blocking queries
	// readers is the number of reader goroutines; procs the Ps added for
	// them (blocking readers), given back by shutdown.
	readers, procs int
	procsOnce      sync.Once
	stop           atomic.Bool
	// names interns query names for fastUnpack.
	names nameIntern
}

// useBatchUDP reports whether pc gets the batch path: a UDP socket bound
// to one address.
func useBatchUDP(pc net.PacketConn) (*net.UDPConn, bool) {
	c, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, false
	}
	a, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok || a.IP == nil || a.IP.IsUnspecified() {
		return nil, false
	}
	return c, true
}

func newBatchServer(s *Server, c *net.UDPConn) *batchServer {
	b := &batchServer{s: s, laddr: c.LocalAddr()}
	if blockingAllowed() {
		sock, err := openRawSock(c)
		if err == nil {
			b.sock, b.readers = sock, udpReaders(true)
			b.procs = b.readers
			return b
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			s.cfg.Logger.Warn("dns: udp socket stays in Go's poller", "error", err)
		}
	}
	b.sock, b.readers = newPollSock(c), udpReaders(false)
	return b
}

// start runs the readers.
func (b *batchServer) start() {
	addProcs(b.procs)
	for range b.readers {
		b.wg.Add(1)
		go b.read()
	}
}

// shutdown stops the readers, waits within ctx for the queries in flight
// (which may still reply: Server.Shutdown has aborted their lookups and
// forwards) and closes the socket.
func (b *batchServer) shutdown(ctx context.Context) error {
	b.stop.Store(true)
	b.sock.wake()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := b.sock.close(); err == nil {
		err = cerr
	}
	b.releaseProcs()
	return err
}

// releaseProcs gives back the Ps start added (once).
func (b *batchServer) releaseProcs() { b.procsOnce.Do(func() { addProcs(-b.procs) }) }

// batchWriter is the dns.ResponseWriter of a query answered in place: the
// reply is copied into the batch's reply buffer for slot i.
type batchWriter struct {
	b     *batchServer
	out   []ipv4.Message
	bufs  [][]byte
	addr  net.Addr
	slot  int
	wrote bool
}

func (w *batchWriter) LocalAddr() net.Addr  { return w.b.laddr }
func (w *batchWriter) RemoteAddr() net.Addr { return w.addr }
func (w *batchWriter) WriteMsg(m *dns.Msg) error {
	p, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(p)
	return err
}
func (w *batchWriter) Write(p []byte) (int, error) {
	if w.wrote {
		return 0, errors.New("dnsserver: second reply to one UDP query")
	}
	w.wrote = true
	buf := append(w.bufs[w.slot][:0], p...)
	w.bufs[w.slot] = buf[:0]
	m := &w.out[w.slot]
	m.Buffers[0] = buf
	m.Addr = w.addr
	return len(p), nil
}
func (w *batchWriter) Close() error        { return nil }
func (w *batchWriter) TsigStatus() error   { return nil }
func (w *batchWriter) TsigTimersOnly(bool) {}
func (w *batchWriter) Hijack()             {}

// udpWriter is the dns.ResponseWriter of a query answered in a goroutine
// of its own: it sends the reply at once.
type udpWriter struct {
	b    *batchServer
	addr net.Addr
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.b.laddr }
func (w *udpWriter) RemoteAddr() net.Addr { return w.addr }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	p, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(p)
	return err
}
func (w *udpWriter) Write(p []byte) (int, error) {
	if err := w.b.sock.writeTo(p, w.addr); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// read is one reader: read a batch, answer what can be answered at once,
// send the replies, repeat until the socket is closed.
func (b *batchServer) read() {
	defer b.wg.Done()
	s := b.s
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
	}
	out := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch)
	for i := range out {
		out[i].Buffers = [][]byte{nil}
		bufs[i] = make([]byte, 0, 512)
	}
	w := &batchWriter{b: b, out: out, bufs: bufs}
	req := new(dns.Msg)
	port := b.sock.port(in)
	for {
		n, err := port.readBatch(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || b.stop.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.cfg.Logger.Debug("dns: udp read", "error", err)
			continue
		}
		k := 0
		for i := range n {
			m := &in[i]
			w.slot, w.addr, w.wrote = k, m.Addr, false
			if b.serve(m.Buffers[0][:m.N], m.Addr, req, w) {
				req = new(dns.Msg) // handed to a goroutine
			}
			if w.wrote {
				k++
			}
		}
		b.send(port, out[:k])
		for i := range k {
			out[i].Buffers[0], out[i].Addr = nil, nil
			if cap(bufs[i]) > maxPooledBuf {
				bufs[i] = make([]byte, 0, 512) // one huge reply does not pin memory
			}
		}
		for i := range n {
			in[i].Addr = nil
		}
	}
}

// send writes the replies, skipping one that cannot be sent.
func (b *batchServer) send(port udpPort, ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := port.writeBatch(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.s.cfg.Logger.Debug("dns: udp write", "error", err)
			n = max(n, 1) // drop the reply that failed
		}
		ms = ms[n:]
	}
}

// serve answers one datagram, in place when it can; it returns true when
// it handed req to a goroutine (the caller then needs a new one).
func (b *batchServer) serve(p []byte, addr net.Addr, req *dns.Msg, w *batchWriter) bool {
	s := b.s
	if len(p) < 12 {
		s.m.rejected[rejectMalformed].Inc()
		return false
	}
	dh := dns.Header{
		Id:      binary.BigEndian.Uint16(p[0:]),
		Bits:    binary.BigEndian.Uint16(p[2:]),
		Qdcount: binary.BigEndian.Uint16(p[4:]),
		Ancount: binary.BigEndian.Uint16(p[6:]),
		Nscount: binary.BigEndian.Uint16(p[8:]),
		Arcount: binary.BigEndian.Uint16(p[10:]),
	}
	action := s.acceptMsg(dh)
	if action == dns.MsgAccept && !fastUnpack(p, req, &b.names) {
		if err := req.Unpack(p); err != nil {
			s.m.rejected[rejectMalformed].Inc()
			action = dns.MsgReject
		}
	}
	switch action {
	case dns.MsgIgnore:
		return false
	case dns.MsgReject, dns.MsgRejectNotImplemented:
		// As miekg/dns's server answers them: the header, no sections.
		m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: dh.Id, Response: true, Opcode: int(dh.Bits>>11) & 0xF, Rcode: dns.RcodeFormatError}}
		if action == dns.MsgRejectNotImplemented {
			m.Rcode = dns.RcodeNotImplemented
		} else {
			m.Opcode = dns.OpcodeQuery
		}
		_ = w.WriteMsg(m)
		return false
	}
	if s.serveInPlace(w, req) {
		return false
	}
	gw := &udpWriter{b: b, addr: cloneAddr(addr)} // outlives the batch
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		s.ServeDNS(gw, req)
	}()
	return true
}
