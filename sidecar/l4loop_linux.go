//go:build linux

package sidecar

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The L4 event loop: one goroutine per listener (tcp, and http through
// l7loop_linux.go) with an epoll instance of its own over raw non-blocking
// sockets, the way HAProxy does it; with nothing to do it parks in Go's
// poller, its epoll set registered there as a pollable file (park). Its
// syscalls are raw: none goes through the scheduler. Per connection:
// accept4 (TCP_NODELAY is inherited from the listening socket), socket,
// setsockopt(TCP_NODELAY, and TCP_QUICKACK 0 so that the handshake's last
// ACK rides on the client's first bytes: releaseAck), connect, two
// epoll_ctl(ADD) (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, once per fd), then
// recv and send through a 16 KiB buffer per direction (the last data with
// MSG_MORE when the end is known, so the FIN rides on it), and close. A short read means the socket is drained
// (no read that finds EAGAIN), and EPOLLRDHUP with a short read means EOF
// (no read that returns 0). Connect failures are seen as EPOLLERR/EPOLLHUP;
// the error itself (SO_ERROR) is read only then, for the log.
//
// What may block (a connection limit's queue, the first load of a new
// cluster) is waited for on a goroutine that posts the result back; other
// goroutines (drain timers, listener shutdown) post commands through an
// eventfd. Only the loop goroutine touches its connections.

// l4LoopEnabled chooses the event loop for new tcp listeners; false keeps
// the net-package path (listener.serveTCP), which other systems use.
var l4LoopEnabled = true

// l4LockThread "on" locks the loop goroutine to its OS thread. Off by
// default: when the scheduler preempts a locked goroutine (every 10 ms of
// running, which a busy loop reaches since epoll_wait returns at once), it
// is handed between two threads through the kernel's run queue, which on a
// loaded machine stalls the loop for milliseconds. (A string, to be set
// with -ldflags -X for comparisons.)
var l4LockThread = "off"

// l4BulkMode is what a direction switches to after its first read that
// fills the small buffer (a bulk transfer): "splice" moves the bytes
// through a pipe of l4PipeSize, kernel to kernel; "buffer" reads and sends
// through a buffer of l4BulkBuf bytes.
var l4BulkMode = "splice"

var l4BulkBuf = 256 << 10

// l4HoldAck "on" holds back the ACK ending the upstream handshake to ride
// on the client's first bytes (dialStart, releaseAck); a string, to be set
// with -ldflags -X for comparisons.
var l4HoldAck = "on"

const l4PipeSize = 1 << 20

const (
	l4BufSize   = 16 << 10
	l4MaxEvents = 256
	l4SlotLn    = 0 // epoll data of the listening socket
	l4SlotEv    = 1 // of the eventfd
)

var l4Bufs = sync.Pool{New: func() any { b := make([]byte, l4BufSize); return &b }}
var l4BigBufs = sync.Pool{New: func() any { b := make([]byte, l4BulkBuf); return &b }}

type l4loop struct {
	l    *listener
	epfd int
	// ep is epfd as a file in Go's poller: with nothing to do, the loop
	// parks there, not in a blocking epoll_wait. A goroutine blocked in a
	// syscall keeps its P until the scheduler's monitor takes it back,
	// after up to 10 ms when the process has been quiet; with GOMAXPROCS=1
	// an idle loop held up every other goroutine of the agent each time it
	// woke. (The epoll set is readable when it has events.)
	ep       *os.File
	epRC     syscall.RawConn
	deadline int64                 // the read deadline set on ep (nowNS units), 0 for none
	pollFn   func(fd uintptr) bool // lp.poll, bound once
	pEvents  []unix.EpollEvent     // park's buffer, for poll
	pN       int
	pErr     error
	evfd     int
	rc       syscall.RawConn // the listening socket (owned by l.ln)
	lnfd     int

	accepting bool
	stopping  bool // no more accepts; exit when no connection is left
	slots     []l4slot
	free      []int32
	conns     map[*l4conn]struct{}
	base      time.Time
	now       int64 // ns since base, once per wake-up
	nextSweep int64 // 0: nothing to time out
	backoff   int64 // accept errors: the current pause
	resumeAt  int64 // accepting paused until then (0: not paused)

	acceptFn func(uintptr)
	afd      int
	araw     unix.RawSockaddrAny // the accepted peer's address
	alen     uint32
	aerr     error

	l7 l7state // the L7 fast path (l7loop_linux.go)

	mu     sync.Mutex
	cmds   []func()
	exited bool
}

type l4slot struct {
	gen int32
	end *l4end
	x7  *l7sock // an L7 socket (l7loop_linux.go)
}

// l4end is one socket of a connection.
type l4end struct {
	fd       int
	c        *l4conn
	slot     int32
	gen      int32
	canRead  bool // readable, or unknown (read until a short read or EAGAIN)
	rdhup    bool // the peer has shut down its writing side
	blocked  bool // the last send was short or EAGAIN; wait for EPOLLOUT
	sockaddr unix.Sockaddr
}

// l4dir is one direction: bytes read from src and not yet sent to dst are
// buf[off:n].
type l4dir struct {
	src, dst *l4end
	bp       *[]byte
	wantBulk bool   // a read filled the small buffer
	bulk     bool   // switched to bulk mode: pipe, or bp is a big buffer
	big      bool   // bp is a big buffer
	pipe     [2]int // splice mode: the pipe (read end, write end), else -1
	off, n   int
	eof      bool // src has ended
	done     bool // and everything was sent and the end passed on
	bytes    int64
	sent     int64 // bytes sent to dst
}

type l4conn struct {
	client, up l4end
	c2u, u2c   l4dir

	r        *route
	cl       *cluster
	e        *endpoint
	p        pickReq
	attempt  int
	lastErr  error
	acquired bool
	waiting  bool // acquiring a slot or waiting for the cluster on a goroutine
	// connecting: connect in progress, until connectBy.
	connecting bool
	connected  bool
	ackHeld    bool // the upstream's handshake ACK is delayed (releaseAck)
	connectBy  int64
	idle       int64
	lastRecv   int64
	t          *tracked
	closed     bool
}

// startL4Loop prepares a loop for l; run it with run.
func startL4Loop(l *listener) (*l4loop, error) {
	rc, err := l.ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	lp := &l4loop{l: l, rc: rc, conns: map[*l4conn]struct{}{}, base: time.Now(), lnfd: -1, epfd: -1, evfd: -1}
	lp.acceptFn = func(fd uintptr) {
		// Not unix.Accept4: its address conversion costs a
		// getsockopt(SO_PROTOCOL) per connection.
		lp.alen = unix.SizeofSockaddrAny
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&lp.araw)), uintptr(unsafe.Pointer(&lp.alen)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		lp.afd, lp.aerr = int(r), nil
		if e != 0 {
			lp.afd, lp.aerr = -1, e
		}
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		lp.lnfd = int(fd)
		// Accepted sockets inherit it: no setsockopt per connection.
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	lp.protocolChanged()
	if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	// Non-blocking, so that os.NewFile puts it in Go's poller.
	if err := unix.SetNonblock(lp.epfd, true); err != nil {
		unix.Close(lp.epfd)
		return nil, err
	}
	lp.ep = os.NewFile(uintptr(lp.epfd), "sidecar-l4-epoll")
	lp.pollFn = lp.poll
	if lp.epRC, err = lp.ep.SyscallConn(); err != nil {
		lp.ep.Close()
		return nil, err
	}
	if lp.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		lp.ep.Close()
		return nil, err
	}
	lp.slots = make([]l4slot, 2, 64)
	if err := lp.ctlAdd(lp.evfd, l4SlotEv, 0, unix.EPOLLIN); err != nil {
		lp.closeFDs()
		return nil, err
	}
	// Level-triggered for the listener: a batch cut short (EMFILE) is
	// reported again.
	if err := lp.ctlAdd(lp.lnfd, l4SlotLn, 0, unix.EPOLLIN); err != nil {
		lp.closeFDs()
		return nil, err
	}
	lp.accepting = true
	return lp, nil
}

// protocolChanged sets TCP_DEFER_ACCEPT on the listening socket when the
// loop serves http on it: the kernel then hands over a connection once its
// first bytes are there (or after a second of silence), and accept7's read
// finds the request instead of an EAGAIN and a wake-up later. Never for
// tcp: a client waiting for a server that speaks first would wait too.
func (lp *l4loop) protocolChanged() {
	v := 0
	if l7LoopEnabled && lp.l.h.Load().protocol == ProtocolHTTP {
		v = 1
	}
	lp.rc.Control(func(fd uintptr) { setsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, v) })
}

func (lp *l4loop) closeFDs() {
	if lp.evfd >= 0 {
		unix.Close(lp.evfd)
	}
	if lp.ep != nil {
		lp.ep.Close()
	}
}

func (lp *l4loop) ctlAdd(fd int, slot, gen int32, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: slot, Pad: gen}
	return epollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// post runs f on the loop goroutine. It reports false when the loop has
// ended (f does not run).
func (lp *l4loop) post(f func()) bool {
	lp.mu.Lock()
	if lp.exited {
		lp.mu.Unlock()
		return false
	}
	wake := len(lp.cmds) == 0
	lp.cmds = append(lp.cmds, f)
	if wake {
		var one = [8]byte{1}
		unix.Write(lp.evfd, one[:])
	}
	lp.mu.Unlock()
	return true
}

// stopAccepting makes the loop stop accepting (the listening socket is
// closed by its owner); l.done closes when it has.
func (lp *l4loop) stopAccepting() {
	lp.post(func() { lp.stopAccept() })
}

// closeAll closes every connection of the loop.
func (lp *l4loop) closeAll() int {
	n := make(chan int, 1)
	if !lp.post(func() {
		k := len(lp.conns)
		for c := range lp.conns {
			lp.closeConn(c)
		}
		k += lp.closeAll7()
		n <- k
	}) {
		return 0
	}
	return <-n
}

func (lp *l4loop) stopAccept() {
	if lp.accepting {
		lp.accepting = false
		close(lp.l.done)
	}
	lp.stopping = true
	lp.drain7()
}

func (lp *l4loop) nowNS() int64 { return int64(time.Since(lp.base)) }

// run is the loop; it returns when the loop has stopped accepting and its
// last connection has ended.
func (lp *l4loop) run() {
	if l4LockThread == "on" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	defer lp.l.wg.Done()
	events := make([]unix.EpollEvent, l4MaxEvents)
	for {
		if lp.stopping && len(lp.conns) == 0 && len(lp.l7.clients) == 0 {
			break
		}
		// park polls the set first (a raw syscall, no scheduler work)
		// and, with nothing there, waits in Go's poller until it has
		// events or the next sweep is due. A sweep already due: poll
		// only.
		var n int
		var err error
		if lp.nextSweep != 0 && lp.nowNS() >= lp.nextSweep {
			n, err = epollPoll(lp.epfd, events)
		} else {
			n, err = lp.park(events)
		}
		if err != nil && err != unix.EINTR {
			lp.l.m.log.Error("sidecar: epoll_wait", "listener", lp.l.name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		lp.now = lp.nowNS()
		for i := 0; i < n; i++ {
			ev := &events[i]
			switch ev.Fd {
			case l4SlotLn:
				lp.accept()
			case l4SlotEv:
				lp.commands()
			default:
				s := &lp.slots[ev.Fd]
				if s.x7 != nil && s.gen == ev.Pad {
					lp.event7(s.x7, ev.Events)
					continue
				}
				if s.end == nil || s.gen != ev.Pad {
					continue // closed earlier in this batch
				}
				lp.event(s.end, ev.Events)
			}
		}
		if lp.nextSweep != 0 && lp.now >= lp.nextSweep {
			lp.sweep()
		}
	}
	lp.mu.Lock()
	lp.exited = true
	cmds := lp.cmds
	lp.cmds = nil
	lp.mu.Unlock()
	for _, f := range cmds {
		f() // with no connection left: closeAll's answer
	}
	if lp.accepting {
		lp.accepting = false
		close(lp.l.done)
	}
	lp.closeFDs()
}

// park waits in Go's poller until the epoll set has events (and returns
// them) or the next sweep is due (0 events).
func (lp *l4loop) park(events []unix.EpollEvent) (int, error) {
	if lp.nextSweep != lp.deadline {
		var t time.Time
		if lp.nextSweep != 0 {
			t = lp.base.Add(time.Duration(lp.nextSweep))
		}
		if err := lp.ep.SetReadDeadline(t); err != nil {
			return 0, err
		}
		lp.deadline = lp.nextSweep
	}
	// RawConn.Read polls first: it clears the readiness Go's poller
	// recorded before (prepareRead), so that poll is what catches an event
	// that came since the loop's own; skipping it lost wake-ups.
	lp.pEvents, lp.pN, lp.pErr = events, 0, nil
	err := lp.epRC.Read(lp.pollFn)
	lp.pEvents = nil
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return lp.pN, lp.pErr
}

// poll is park's RawConn.Read callback (bound once in pollFn: a closure
// made per call allocated five objects per wake-up).
func (lp *l4loop) poll(fd uintptr) bool {
	lp.pN, lp.pErr = epollPoll(int(fd), lp.pEvents)
	return lp.pN > 0 || (lp.pErr != nil && lp.pErr != unix.EINTR)
}

func (lp *l4loop) commands() {
	var b [8]byte
	unix.RawSyscall(unix.SYS_READ, uintptr(lp.evfd), uintptr(unsafe.Pointer(&b[0])), 8)
	lp.mu.Lock()
	cmds := lp.cmds
	lp.cmds = nil
	lp.mu.Unlock()
	for _, f := range cmds {
		f()
	}
}

// takeSlot returns a free slot (an epoll event's data names a slot and its
// generation) with its generation moved on.
func (lp *l4loop) takeSlot() (int32, *l4slot) {
	var i int32
	if k := len(lp.free); k > 0 {
		i = lp.free[k-1]
		lp.free = lp.free[:k-1]
	} else {
		lp.slots = append(lp.slots, l4slot{})
		i = int32(len(lp.slots) - 1)
	}
	s := &lp.slots[i]
	s.gen++
	return i, s
}

func (lp *l4loop) addSlot(e *l4end) {
	i, s := lp.takeSlot()
	s.end, s.x7 = e, nil
	e.slot, e.gen = i, s.gen
}

func (lp *l4loop) dropSlot(e *l4end) {
	if e.slot > l4SlotEv {
		lp.slots[e.slot].end = nil
		lp.free = append(lp.free, e.slot)
		e.slot = 0
	}
}

// l4Events: every socket is registered once, edge-triggered, for all.
const l4Events = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// register adds a socket to the loop.
func (lp *l4loop) register(e *l4end) error {
	lp.addSlot(e)
	if err := lp.ctlAdd(e.fd, e.slot, e.gen, l4Events); err != nil {
		lp.dropSlot(e)
		return err
	}
	return nil
}

func (lp *l4loop) accept() {
	l := lp.l
	for lp.accepting {
		if err := lp.rc.Control(lp.acceptFn); err != nil {
			lp.stopAccept() // the listening socket was closed
			return
		}
		if lp.aerr != nil {
			switch lp.aerr {
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
				if lp.aerr == unix.EAGAIN {
					return
				}
				continue
			}
			// EMFILE and the like: pause accepting for a while (the
			// listener is level-triggered and would wake the loop
			// at once), as the net-package path does.
			l.m.log.Warn("sidecar: accept", "listener", l.name, "err", lp.aerr)
			if lp.backoff == 0 {
				lp.backoff = int64(5 * time.Millisecond)
			} else if lp.backoff *= 2; lp.backoff > int64(time.Second) {
				lp.backoff = int64(time.Second)
			}
			ev := unix.EpollEvent{Fd: l4SlotLn}
			lp.rc.Control(func(fd uintptr) { unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev) })
			lp.resumeAt = lp.now + lp.backoff
			lp.sweepBy(lp.resumeAt)
			return
		}
		lp.backoff = 0
		fd := lp.afd
		l.met.total.Inc()
		l.met.active.Inc()
		h := l.h.Load()
		if h.protocol == ProtocolHTTP {
			if l7LoopEnabled {
				lp.accept7(fd)
				continue
			}
			// Changed to http since the listener started: the
			// net-package path serves it.
			lp.handoff(fd)
			continue
		}
		c := &l4conn{r: h.routes[0]}
		c.client.fd, c.client.c = fd, c
		c.up.fd, c.up.c = -1, c
		c.c2u.src, c.c2u.dst = &c.client, &c.up
		c.u2c.src, c.u2c.dst = &c.up, &c.client
		c.c2u.pipe, c.u2c.pipe = [2]int{-1, -1}, [2]int{-1, -1}
		lp.conns[c] = struct{}{}
		if err := lp.register(&c.client); err != nil {
			l.m.log.Warn("sidecar: epoll_ctl", "listener", l.name, "err", err)
			lp.closeConn(c)
			continue
		}
		c.cl = c.r.target()
		if c.cl.st.balancer == BalancerHash {
			// As hashClientIP: the 4 or 16 address bytes.
			switch lp.araw.Addr.Family {
			case unix.AF_INET:
				a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&lp.araw))
				c.p.key = hashBytes(a.Addr[:])
			case unix.AF_INET6:
				a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&lp.araw))
				c.p.key = hashBytes(a.Addr[:])
			}
		}
		lp.start(c)
	}
}

// handoff gives an accepted socket to the net-package path.
func (lp *l4loop) handoff(fd int) {
	l := lp.l
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.met.active.Dec()
		return
	}
	cc := &clientConn{c: nc.(*net.TCPConn)}
	l.mu.Lock()
	l.conns[cc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go l.handle(cc)
}

// start takes a connection slot and waits for the cluster's first load,
// on a goroutine if either would block, then connects.
func (lp *l4loop) start(c *l4conn) {
	cl := c.cl
	select {
	case <-cl.ready:
		if cl.conns.tryAcquire() {
			c.acquired = true
			lp.connect(c)
			return
		}
	default:
	}
	c.waiting = true
	go func() {
		ok := cl.conns.acquire(cl.st.connectTimeout)
		cl.waitReady(cl.st.connectTimeout)
		if !lp.post(func() { lp.acquired(c, ok) }) && ok {
			cl.conns.release()
		}
	}()
}

func (lp *l4loop) acquired(c *l4conn, ok bool) {
	c.waiting = false
	if c.closed {
		if ok {
			c.cl.conns.release()
		}
		return
	}
	if !ok {
		c.cl.met.connOverflows.Inc()
		lp.l.m.log.Warn("sidecar: connection refused by limits", "listener", lp.l.name, "upstream", c.cl.name)
		lp.closeConn(c)
		return
	}
	c.acquired = true
	lp.connect(c)
}

// connect starts a connection to the next instance, as cluster.dial does:
// up to maxAttempts instances, each bounded by the connect timeout,
// failures reported to outlier detection.
func (lp *l4loop) connect(c *l4conn) {
	cl := c.cl
	for ; c.attempt < cl.st.maxAttempts; c.attempt++ {
		e := cl.pick(&c.p)
		if e == nil {
			break
		}
		sa, ok := sockaddrOf(e.addr)
		if !ok {
			// A host name: the net-package path resolves it.
			lp.toGoPath(c)
			return
		}
		if c.attempt > 0 {
			cl.met.retries.Inc()
		}
		err := lp.dialStart(c, sa)
		if err == nil {
			c.e = e
			return
		}
		lp.connectFailed(c, e, err)
	}
	lp.giveUp(c)
}

func (lp *l4loop) giveUp(c *l4conn) {
	cl, l := c.cl, lp.l
	if c.lastErr == nil {
		c.r.metrics.noInstance(cl.name).Inc()
		if cl.logNoInstance() {
			l.m.log.Warn("sidecar: no healthy instance; closing connection", "listener", l.name, "upstream", cl.name)
		}
	} else {
		l.m.log.Warn("sidecar: cannot reach any instance; closing connection", "listener", l.name, "upstream", cl.name, "err", c.lastErr)
	}
	lp.closeConn(c)
}

// toGoPath hands a connection that has not reached an instance yet to the
// net-package path (which resolves host names); only before any byte was
// read from the client.
func (lp *l4loop) toGoPath(c *l4conn) {
	if c.c2u.n > 0 || c.c2u.eof {
		c.lastErr = errors.New("instance address is a host name")
		lp.giveUp(c)
		return
	}
	fd := c.client.fd
	lp.dropSlot(&c.client)
	c.client.fd = -1
	if c.acquired {
		c.cl.conns.release()
		c.acquired = false
	}
	c.closed = true
	delete(lp.conns, c)
	// Out of the loop's epoll: the copies the net package makes would
	// keep the registration alive.
	unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	lp.handoff(fd)
}

func sockaddrOf(addr string) (unix.Sockaddr, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, false
	}
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, true
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, true
}

// dialStart opens a non-blocking socket and starts connecting it.
func (lp *l4loop) dialStart(c *l4conn, sa unix.Sockaddr) error {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := socketNB(family)
	if err != nil {
		return err
	}
	setsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// The ACK that ends the handshake is held back, to ride on the
	// client's first bytes (HAProxy's tcp-smart-connect); releaseAck
	// sends it on its own when there are none yet.
	c.ackHeld = l4HoldAck == "on" && setsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0) == nil
	raw := toRawSockaddr(sa)
	err = connectNB(fd, &raw)
	if err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		closeFD(fd)
		return err
	}
	c.up = l4end{fd: fd, c: c}
	if err := lp.register(&c.up); err != nil {
		closeFD(fd)
		c.up.fd = -1
		return err
	}
	c.connecting = true
	c.connectBy = lp.now + int64(c.cl.st.connectTimeout)
	lp.sweepBy(c.connectBy)
	return nil
}

func (lp *l4loop) sweepBy(t int64) {
	if lp.nextSweep == 0 || t < lp.nextSweep {
		lp.nextSweep = t
	}
}

func (lp *l4loop) connectFailed(c *l4conn, e *endpoint, err error) {
	cl := c.cl
	c.lastErr = err
	cl.met.connectFailures.Inc()
	cl.m.log.Debug("sidecar: connect failed", "upstream", cl.name, "instance", e.id, "addr", e.addr, "err", err)
	cl.failure(e)
	c.p.tryAdd(e)
}

// connectDone handles the end of a connect: success, or a failure and the
// next attempt.
func (lp *l4loop) connectDone(c *l4conn, err error) {
	c.connecting = false
	if err != nil {
		lp.dropSlot(&c.up)
		closeFD(c.up.fd)
		c.up.fd = -1
		e := c.e
		c.e = nil
		lp.connectFailed(c, e, err)
		c.attempt++
		lp.connect(c)
		return
	}
	cl, e := c.cl, c.e
	c.connected = true
	cl.success(e)
	cl.met.total.Inc()
	cl.met.active.Inc()
	e.active.Add(1)
	c.t = &tracked{close: func() { lp.post(func() { lp.closeConn(c) }) }}
	e.track(c.t)
	c.lastRecv = lp.now
	if idle := cl.st.idleTimeout; idle > 0 {
		c.idle = int64(idle)
		lp.sweepBy(lp.now + c.idle)
	}
}

var errConnectTimeout = errors.New("connect timeout")

func (lp *l4loop) event(x *l4end, ev uint32) {
	c := x.c
	if ev&unix.EPOLLERR != 0 && !(x == &c.up && c.connecting) {
		// Reset or the like: what is pending cannot be delivered to
		// x, and reads from it fail; end both, as a read error would.
		lp.closeConn(c)
		return
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		x.canRead, x.blocked = true, false
		if ev&unix.EPOLLHUP != 0 {
			x.rdhup = true
		}
	}
	if ev&unix.EPOLLIN != 0 {
		x.canRead = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		x.rdhup = true
	}
	if ev&unix.EPOLLOUT != 0 {
		x.blocked = false
	}
	if x == &c.up && c.connecting {
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := error(unix.ECONNREFUSED)
			if v, gerr := getsockoptInt(x.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && v != 0 {
				err = unix.Errno(v)
			}
			lp.connectDone(c, err)
			if c.closed || c.connecting || !c.connected {
				return
			}
		} else if ev&unix.EPOLLOUT != 0 {
			lp.connectDone(c, nil)
		} else {
			return
		}
	}
	lp.pump(c, &c.c2u)
	if !c.closed {
		lp.pump(c, &c.u2c)
	}
	if c.ackHeld && c.connected && !c.closed {
		lp.releaseAck(c)
	}
}

// releaseAck settles the handshake's held-back ACK once connected: it went
// with the client's first bytes, or with its end, or goes now. The
// client's bytes may have arrived with their event not handled yet: one
// read looks first. (A server that speaks first would otherwise wait for
// the delayed ACK, up to 200 ms.)
func (lp *l4loop) releaseAck(c *l4conn) {
	c.ackHeld = false
	d := &c.c2u
	if d.sent > 0 || d.done {
		return
	}
	if !c.client.canRead && !d.eof {
		c.client.canRead = true
		lp.pump(c, d)
		if c.closed || d.sent > 0 || d.done {
			return
		}
	}
	setsockoptInt(c.up.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
}

// pump moves what it can in one direction: the pending bytes, then reads
// while the destination accepts them. It stops reading while dst is blocked
// (backpressure) and resumes on dst's EPOLLOUT.
func (lp *l4loop) pump(c *l4conn, d *l4dir) {
	defer d.dropIdleBuf()
	for {
		if d.n > d.off {
			if d.dst.blocked || d.dst == &c.up && !c.connected {
				return
			}
			var k int
			var err error
			if d.pipe[0] >= 0 {
				k, err = spliceNB(d.pipe[0], d.dst.fd, d.n-d.off)
			} else {
				// With the end already read, the FIN follows
				// at once: MSG_MORE lets it ride on the last
				// data segment (the shutdown pushes it).
				k, err = sendFlagsNB(d.dst.fd, (*d.bp)[d.off:d.n], d.eofMore())
			}
			if err != nil {
				if err == unix.EAGAIN {
					d.dst.blocked = true
					return
				}
				lp.closeConn(c)
				return
			}
			d.off += k
			d.sent += int64(k)
			if d.off < d.n {
				// Not necessarily full: a signal (Go's preemption)
				// cuts a splice short without setting the socket's
				// NOSPACE flag, and then no EPOLLOUT would come.
				// Only EAGAIN means wait.
				continue
			}
			d.off, d.n = 0, 0
		}
		if d.eof {
			if !d.done {
				lp.dirDone(c, d)
			}
			return
		}
		if !d.src.canRead || d.src == &c.up && !c.connected {
			return
		}
		if d.wantBulk && !d.bulk {
			lp.toBulk(d)
		}
		var k, size int
		var err error
		if d.pipe[0] >= 0 {
			size = l4PipeSize
			k, err = spliceNB(d.src.fd, d.pipe[1], size)
		} else {
			if d.bp == nil {
				d.bp = l4Bufs.Get().(*[]byte)
			}
			size = len(*d.bp)
			k, err = recvNB(d.src.fd, *d.bp)
		}
		switch {
		case k > 0:
			d.n = k
			d.bytes += int64(k)
			c.lastRecv = lp.now
			if d.pipe[0] >= 0 {
				// A short splice may be the pipe's slots, not a
				// drained socket: read on until EAGAIN.
			} else if k < size {
				// Drained: a new edge comes with new data. After
				// EPOLLRDHUP the FIN follows what was read.
				d.src.canRead = false
				if d.src.rdhup {
					d.eof = true
				}
			} else if !d.bulk {
				d.wantBulk = true // a full read: bulk from the next read on
			}
		case err == nil: // k == 0: EOF
			d.eof = true
			d.src.canRead = false
		case err == unix.EAGAIN:
			d.src.canRead = false
			return
		case err == unix.EINTR:
		default:
			lp.closeConn(c)
			return
		}
	}
}

// dropIdleBuf gives an empty small buffer back to the pool: a keep-alive
// connection between requests holds none (with 50 connections, 1.6 MiB
// of buffers held, and the agent's RSS went past 30 MiB under wrk).
func (d *l4dir) dropIdleBuf() {
	if d.bp != nil && !d.big && d.off >= d.n {
		l4Bufs.Put(d.bp)
		d.bp = nil
		d.off, d.n = 0, 0
	}
}

// toBulk switches a direction, its buffer empty, to splice through a pipe
// (l4BulkMode "splice") or to a larger buffer.
func (lp *l4loop) toBulk(d *l4dir) {
	d.bulk = true
	if l4BulkMode == "splice" {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err == nil {
			unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, l4PipeSize)
			d.pipe = p
			if d.bp != nil {
				l4Bufs.Put(d.bp)
				d.bp = nil
			}
			splicedDirections.Add(1)
			return
		}
	}
	if d.bp != nil {
		l4Bufs.Put(d.bp)
	}
	d.bp = l4BigBufs.Get().(*[]byte)
	d.big = true
}

// dirDone passes an end on: shutdown(SHUT_WR) of dst, or, when the other
// direction has ended too, closes both.
func (lp *l4loop) dirDone(c *l4conn, d *l4dir) {
	if d.dst == &c.up && !c.connected {
		// The client ended before the upstream connection is up: pass
		// the end on once it is (connectDone's pump comes back here).
		return
	}
	d.done = true
	other := &c.u2c
	if d == &c.u2c {
		other = &c.c2u
	}
	if other.done {
		lp.closeConn(c)
		return
	}
	if d.dst.fd >= 0 && (d.dst != &c.up || c.connected) {
		shutdownWR(d.dst.fd)
	}
}

// closeConn closes both sockets (close removes them from epoll) and
// settles the accounting.
func (lp *l4loop) closeConn(c *l4conn) {
	if c.closed {
		return
	}
	c.closed = true
	delete(lp.conns, c)
	l := lp.l
	if c.client.fd >= 0 {
		lp.dropSlot(&c.client)
		closeFD(c.client.fd)
		c.client.fd = -1
	}
	if c.up.fd >= 0 {
		lp.dropSlot(&c.up)
		closeFD(c.up.fd)
		c.up.fd = -1
	}
	for _, d := range []*l4dir{&c.c2u, &c.u2c} {
		if d.pipe[0] >= 0 {
			closeFD(d.pipe[0])
			closeFD(d.pipe[1])
			d.pipe = [2]int{-1, -1}
		}
		if d.bp != nil {
			if !d.big {
				l4Bufs.Put(d.bp)
			} else if len(*d.bp) == l4BulkBuf {
				l4BigBufs.Put(d.bp)
			}
			d.bp = nil
		}
	}
	if c.connected {
		c.e.untrack(c.t)
		c.e.active.Add(-1)
		c.cl.met.active.Dec()
		in, out := c.c2u.bytes, c.u2c.bytes
		l.met.bytesIn.Add(float64(in))
		l.met.bytesOut.Add(float64(out))
		c.cl.met.bytesOut.Add(float64(in))
		c.cl.met.bytesIn.Add(float64(out))
	}
	if c.acquired {
		c.cl.conns.release()
		c.acquired = false
	}
	l.met.active.Dec()
}

// sweep closes idle connections and times out connects, and finds the next
// time to look.
func (lp *l4loop) sweep() {
	lp.nextSweep = 0
	now := lp.now
	if lp.resumeAt != 0 {
		if now >= lp.resumeAt {
			lp.resumeAt = 0
			if lp.accepting {
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: l4SlotLn}
				if lp.rc.Control(func(fd uintptr) { unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev) }) != nil {
					lp.stopAccept()
				}
			}
		} else {
			lp.sweepBy(lp.resumeAt)
		}
	}
	for c := range lp.conns {
		switch {
		case c.connecting:
			if now >= c.connectBy {
				lp.connectDone(c, errConnectTimeout)
				if c.connecting {
					lp.sweepBy(c.connectBy)
				}
			} else {
				lp.sweepBy(c.connectBy)
			}
		case c.connected && c.idle > 0:
			if now-c.lastRecv >= c.idle {
				lp.closeConn(c)
			} else {
				lp.sweepBy(c.lastRecv + c.idle)
			}
		}
	}
	lp.sweep7()
}

func recvNB(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// eofMore is sendFlagsNB's flags for what is left of d's buffer.
func (d *l4dir) eofMore() int {
	if d.eof {
		return unix.MSG_MORE
	}
	return 0
}

func sendFlagsNB(fd int, b []byte, flags int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unix.MSG_NOSIGNAL|flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func spliceNB(from, to, n int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// epollPoll is epoll_wait with a zero timeout, as a raw syscall (it does
// not block, so the scheduler need not know).
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// The loop's other syscalls are raw too. The x/sys/unix wrappers go through
// the scheduler (entersyscall/exitsyscall): when one of them takes longer
// than 20 µs — a close that runs the TCP teardown, or a preemption by the
// kernel on a loaded machine — the scheduler's monitor takes the P away and
// starts another thread to poll the network, and the loop pays a futex
// wake-up and a context switch to get a P back. None of these block on
// non-blocking sockets.

func closeFD(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func shutdownWR(fd int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
}

func socketNB(family int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func setsockoptInt(fd, level, opt, v int) error {
	x := int32(v)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptInt(fd, level, opt int) (int, error) {
	var x int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(x), nil
}

// rawSockaddr is a socket address in the kernel's form, for connectNB.
type rawSockaddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

func toRawSockaddr(sa unix.Sockaddr) rawSockaddr {
	var r rawSockaddr
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.b[0]))
		p.Family = unix.AF_INET
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		pb[0], pb[1] = byte(a.Port>>8), byte(a.Port)
		p.Addr = a.Addr
		r.n = unix.SizeofSockaddrInet4
	case *unix.SockaddrInet6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.b[0]))
		p.Family = unix.AF_INET6
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		pb[0], pb[1] = byte(a.Port>>8), byte(a.Port)
		p.Addr = a.Addr
		p.Scope_id = a.ZoneId
		r.n = unix.SizeofSockaddrInet6
	}
	return r
}

func connectNB(fd int, sa *rawSockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.b[0])), uintptr(sa.n))
	if e != 0 {
		return e
	}
	return nil
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
