//go:build linux

package sidecar

import (
	"net"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The L7 fast path on the event loop (l4loop_linux.go): an http listener's
// loop serves the common request itself, as HAProxy does, without a
// goroutine per connection: the request head (and a Content-Length body
// that fits in the client buffer) is read and parsed from a 16 KiB buffer
// (reqHead.parse, read's rules), routed, and sent to an instance over a
// keep-alive connection of the loop's own pool (idle ones stay in the epoll
// set and close when the instance closes them); the response head is parsed
// from the upstream buffer and the response streamed back with its framing
// (Content-Length, chunked followed by a chunkScanner, bodyless, until EOF),
// reading the upstream only while the client takes what was read.
//
// What the loop does not serve is handed to the net-package path
// (serveHTTPFrom) at a request boundary, with the bytes read from the client
// so far, before any byte of that request went upstream: chunked request
// bodies, Expect: 100-continue, Upgrade, the HTTP/2 preface, heads and
// bodies that do not fit in the buffer, a cluster not loaded yet, a full
// connection limit (the net path waits in its queue), instances addressed
// by host name.
//
// Retries, outlier detection, timeouts (the client's idle timeout, the
// request timeout, the connect timeout), metrics and the keep-alive rules
// are forward's and exchange's.

// l7LoopEnabled serves http listeners on the event loop (with l4LoopEnabled);
// false keeps the net-package path (listener.serveHTTP) for them.
var l7LoopEnabled = true

const l7BufSize = 16 << 10

var l7WBufs = sync.Pool{New: func() any { b := make([]byte, 0, l7BufSize); return &b }}

// l7state is the loop's L7 part.
type l7state struct {
	clients  map[*l7client]struct{}
	pool     map[*endpoint][]*l7up // idle upstream connections, most recent last
	served   int64                 // requests forwarded on the loop (tests)
	handoffs int64                 // connections handed to the net path (tests)
}

// l7sock is one socket of the L7 path in the loop's epoll set.
type l7sock struct {
	fd        int
	slot, gen int32
	canRead   bool // readable, or unknown
	rdhup     bool // the peer has shut down its side
	blocked   bool // the last send was short: wait for EPOLLOUT
	cc        *l7client
	up        *l7up
}

// l7up is a connection to an instance: busy (owner set) or idle in the
// pool.
type l7up struct {
	s          l7sock
	e          *endpoint
	cl         *cluster
	t          *tracked // set once connected
	connecting bool
	connectBy  int64
	pooled     bool
	idleSince  int64
	owner      *l7client
	closed     bool
}

// Client states.
const (
	c7Idle     = iota // reading a request
	c7Exchange        // a request is being forwarded
	c7Flush           // sending the rest of an answer, then next or close
)

// Exchange phases.
const (
	ph7Connect = iota
	ph7Send
	ph7Head
	ph7Body
)

type l7client struct {
	s          l7sock
	ip         string
	state      uint8
	closed     bool
	eof        bool  // the client's side has ended
	lastActive int64 // the start of the wait for a request
	inCounted  bool  // the current request's head is in the listener's bytes in

	in          *[]byte // bytes from the client: in[inOff:inN]
	inOff, inN  int
	wb          *[]byte // the request going upstream, then the answer's head
	wOff        int
	ub          *[]byte // bytes from the upstream; ub[boff:bend] go to the client
	uN          int     // head phase: ub[:uN]
	boff, bend  int
	req         reqHead
	resp        respHead
	headLen     int
	bodyLen     int
	keep        bool
	outBytes    int64
	r           *route
	cl          *cluster
	p           pickReq
	start       time.Time
	attempt     int
	stale       int
	lastErr     string
	lastCode    int
	heldRetry   bool
	retryable   bool
	acquired    bool
	counted     bool
	u           *l7up
	reused      bool
	phase       uint8
	deadline    int64 // request timeout of the send and head phases
	progress    int64 // body phase: the last byte moved
	passedOn    bool  // a 1xx went to the client
	ueof        bool  // the upstream ended
	uerr        bool  // and not cleanly
	noBody      bool
	chunked     bool
	dechunk     bool
	untilEOF    bool
	bodyDone    bool
	dirty       bool // the upstream sent more than the response
	left        int64
	cs          chunkScanner
	handedOff   bool
	wantNewConn bool
}

func (lp *l4loop) l7init() {
	if lp.l7.clients == nil {
		lp.l7.clients = map[*l7client]struct{}{}
		lp.l7.pool = map[*endpoint][]*l7up{}
	}
}

func (lp *l4loop) draining7() bool { return lp.stopping || lp.l.isDraining() }

func (lp *l4loop) addSlot7(x *l7sock) {
	i, s := lp.takeSlot()
	s.end, s.x7 = nil, x
	x.slot, x.gen = i, s.gen
}

func (lp *l4loop) dropSlot7(x *l7sock) {
	if x.slot > l4SlotEv {
		lp.slots[x.slot].x7 = nil
		lp.free = append(lp.free, x.slot)
		x.slot = 0
	}
}

func (lp *l4loop) register7(x *l7sock) error {
	lp.addSlot7(x)
	if err := lp.ctlAdd(x.fd, x.slot, x.gen, l4Events); err != nil {
		lp.dropSlot7(x)
		return err
	}
	return nil
}

// accept7 takes an accepted http connection onto the loop.
func (lp *l4loop) accept7(fd int) {
	lp.l7init()
	c := &l7client{lastCode: 503}
	c.s = l7sock{fd: fd, cc: c}
	switch lp.araw.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&lp.araw))
		c.ip = net.IP(a.Addr[:]).String()
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&lp.araw))
		c.ip = net.IP(a.Addr[:]).String()
	}
	lp.l7.clients[c] = struct{}{}
	c.lastActive = lp.now
	if idle := lp.l.h.Load().settings.idleTimeout; idle > 0 {
		lp.sweepBy(lp.now + int64(idle))
	}
	// Read what the client has sent already (it has often sent its
	// request by the time it is accepted) before the socket is
	// registered: registering then reports no EPOLLIN for it.
	c.s.canRead = true
	lp.step7(c)
	if c.closed {
		return
	}
	if err := lp.register7(&c.s); err != nil {
		lp.l.m.log.Warn("sidecar: epoll_ctl", "listener", lp.l.name, "err", err)
		lp.close7(c)
	}
}

// event7 handles the events of an L7 socket.
func (lp *l4loop) event7(x *l7sock, ev uint32) {
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
	if c := x.cc; c != nil {
		if ev&unix.EPOLLERR != 0 {
			lp.close7(c) // reset: nothing can be delivered
			return
		}
		lp.step7(c)
		return
	}
	u := x.up
	if u.pooled {
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			lp.closeUp7(u) // closed (or talking) while idle
		}
		return
	}
	c := u.owner
	if c == nil {
		return
	}
	if u.connecting {
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := error(unix.ECONNREFUSED)
			if v, gerr := getsockoptInt(x.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && v != 0 {
				err = unix.Errno(v)
			}
			lp.connectFailedAsync7(c, err)
			lp.step7(c)
			return
		}
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		lp.connected7(u)
		if c.phase == ph7Connect {
			c.phase = ph7Send
		}
	}
	lp.step7(c)
}

// step7 moves a client connection on as far as it can.
func (lp *l4loop) step7(c *l7client) {
	for !c.closed {
		var more bool
		switch c.state {
		case c7Idle:
			more = lp.readReq7(c)
		case c7Exchange:
			more = lp.exchange7(c)
		case c7Flush:
			more = lp.flushDone7(c)
		}
		if !more {
			break
		}
	}
	if !c.closed && c.state == c7Idle {
		lp.dropBufs7(c)
	}
}

// dropBufs7 gives back the buffers an idle connection does not need.
func (lp *l4loop) dropBufs7(c *l7client) {
	if c.in != nil && c.inOff >= c.inN {
		l4Bufs.Put(c.in)
		c.in, c.inOff, c.inN = nil, 0, 0
	}
	if c.ub != nil {
		l4Bufs.Put(c.ub)
		c.ub = nil
	}
	if c.wb != nil {
		if cap(*c.wb) <= 64<<10 {
			*c.wb = (*c.wb)[:0]
			l7WBufs.Put(c.wb)
		}
		c.wb, c.wOff = nil, 0
	}
}

func (c *l7client) wbuf() []byte {
	if c.wb == nil {
		c.wb = l7WBufs.Get().(*[]byte)
	}
	return *c.wb
}

// readReq7 reads and parses the next request; it reports whether the
// state changed.
func (lp *l4loop) readReq7(c *l7client) bool {
	c.inCounted = false // a new request: nothing of it counted yet
	for {
		if c.inN > c.inOff {
			in := (*c.in)[c.inOff:c.inN]
			n, err := c.req.parse(in)
			switch err {
			case nil:
				if c.req.chunked || c.req.expect || c.req.upgrade {
					lp.handoff7(c)
					return true
				}
				if c.req.contentLength > 0 && n+int(min(c.req.contentLength, l7BufSize)) > len(in) {
					if int64(n)+c.req.contentLength > l7BufSize {
						lp.handoff7(c)
						return true
					}
					break // read the rest of the body
				}
				lp.dispatch7(c, n)
				return true
			case errIncomplete:
				if c.inN-c.inOff >= l7BufSize {
					lp.handoff7(c) // a head larger than the buffer
					return true
				}
			case errH2Preface:
				lp.handoff7(c)
				return true
			case errHeadTooLarge:
				lp.reply7(c, 431, "request head too large", true)
				return true
			default:
				lp.reply7(c, 400, "malformed request", true)
				return true
			}
		}
		if c.eof {
			if c.inN > c.inOff {
				lp.handoff7(c) // a partial request: the net path answers it as it would
			} else {
				lp.close7(c)
			}
			return true
		}
		if !c.s.canRead {
			return false
		}
		if c.in == nil {
			c.in = l4Bufs.Get().(*[]byte)
			c.inOff, c.inN = 0, 0
		}
		if c.inN == len(*c.in) {
			if c.inOff == 0 {
				lp.handoff7(c)
				return true
			}
			c.inN = copy(*c.in, (*c.in)[c.inOff:c.inN])
			c.inOff = 0
		}
		space := len(*c.in) - c.inN
		k, err := recvNB(c.s.fd, (*c.in)[c.inN:])
		switch {
		case k > 0:
			c.inN += k
			if k < space {
				c.s.canRead = false
				if c.s.rdhup {
					c.eof = true
				}
			}
		case err == nil:
			c.eof = true
			c.s.canRead = false
		case err == unix.EAGAIN:
			c.s.canRead = false
			return false
		case err == unix.EINTR:
		default:
			lp.close7(c)
			return true
		}
	}
}

// dispatch7 starts serving a parsed request of headLen bytes (its body, if
// any, follows in the buffer).
func (lp *l4loop) dispatch7(c *l7client, headLen int) {
	l := lp.l
	req := &c.req
	c.inCounted = false
	if req.chunked || req.expect || req.upgrade {
		lp.handoff7(c)
		return
	}
	c.headLen = headLen
	c.bodyLen = 0
	if req.contentLength > 0 {
		c.bodyLen = int(req.contentLength)
	}
	h := l.h.Load()
	r := h.match(req)
	if r == nil {
		l.met.bytesIn.Add(float64(req.raw))
		lp.reply7(c, 404, "no route matches this request", req.close || req.hasBody())
		return
	}
	cl := r.target()
	select {
	case <-cl.ready:
	default:
		lp.handoff7(c) // the net path waits for the first load
		return
	}
	c.start = time.Now()
	c.r, c.cl = r, cl
	c.attempt, c.stale, c.lastErr, c.lastCode = 0, 0, "", 503
	c.heldRetry, c.acquired, c.counted, c.passedOn = false, false, false, false
	c.p = pickReq{}
	st := &cl.st
	if max := st.limits.MaxConcurrentRequests; max > 0 && cl.requests.Load() >= int64(max) {
		l.met.bytesIn.Add(float64(req.raw))
		cl.met.reqOverflows.Inc()
		lp.respond7(c, 503, "upstream "+cl.name+": too many requests in flight (max_concurrent_requests)")
		return
	}
	if len(cl.set.Load().eps) == 0 {
		l.met.bytesIn.Add(float64(req.raw))
		r.metrics.noInstance(cl.name).Inc()
		if cl.logNoInstance() {
			l.m.log.Warn("sidecar: no healthy instance; answering 503", "listener", l.name, "route", r.spec.name, "upstream", cl.name)
		}
		lp.respond7(c, 503, "no healthy instance of "+cl.name)
		return
	}
	if !cl.conns.tryAcquire() {
		lp.handoff7(c) // the net path waits in the limit's queue
		return
	}
	l.met.bytesIn.Add(float64(req.raw))
	c.inCounted = true
	cl.requests.Add(1)
	c.counted, c.acquired = true, true
	if st.balancer == BalancerHash {
		if len(st.hashOn) > len(HashOnHeaderPrefix) && st.hashOn[:len(HashOnHeaderPrefix)] == HashOnHeaderPrefix {
			c.p.key = hashBytes(req.headerValue(st.hashOn[len(HashOnHeaderPrefix):]))
		} else {
			c.p.key = hashString(c.ip)
		}
	}
	c.retryable = req.idempotent()
	lp.l7.served++
	c.state = c7Exchange
	lp.attempt7(c)
}

// endRequest7 gives back what a request held.
func (lp *l4loop) endRequest7(c *l7client) {
	if c.u != nil {
		lp.dropUp7(c, true)
	}
	if c.acquired {
		c.cl.conns.release()
		c.acquired = false
	}
	if c.counted {
		c.cl.requests.Add(-1)
		c.counted = false
	}
	if c.heldRetry {
		c.cl.retries.Add(-1)
		c.heldRetry = false
	}
}

// dropUp7 ends the request's use of its upstream connection: closed, or
// back in the pool.
func (lp *l4loop) dropUp7(c *l7client, close bool) {
	u := c.u
	c.u = nil
	u.owner = nil
	u.e.active.Add(-1)
	if c.phase == ph7Send || c.phase == ph7Connect {
		if c.wb != nil {
			*c.wb = (*c.wb)[:0]
		}
		c.wOff = 0
	}
	c.deadline = 0
	if close || u.connecting {
		lp.closeUp7(u)
		return
	}
	lp.putUp7(u)
}

// consume7 drops the request (head and body) from the client buffer.
func (c *l7client) consume7() {
	c.inOff += c.headLen + c.bodyLen
	if c.inOff > c.inN {
		c.inOff = c.inN
	}
	c.headLen, c.bodyLen = 0, 0
}

// reply7 answers with an error of the proxy's own, outside a route.
func (lp *l4loop) reply7(c *l7client, code int, msg string, close bool) {
	wb := c.wbuf()
	n := len(wb)
	wb = appendError(wb, code, msg, close, code != 400 && code != 431 && c.req.isHead())
	*c.wb = wb
	lp.l.met.bytesOut.Add(float64(len(wb) - n))
	c.keep = !close
	if close {
		c.inOff = c.inN
	} else {
		c.consume7()
	}
	c.state = c7Flush
	c.progress = lp.now
}

// respond7 is forward's respond: an error answer counted on the route.
func (lp *l4loop) respond7(c *l7client, code int, msg string) {
	req := &c.req
	errClose := req.close || req.hasBody()
	c.r.metrics.code(code).Inc()
	c.r.metrics.duration.Observe(time.Since(c.start).Seconds())
	lp.endRequest7(c)
	wb := c.wbuf()
	n := len(wb)
	wb = appendError(wb, code, msg, errClose, req.isHead())
	*c.wb = wb
	lp.l.met.bytesOut.Add(float64(len(wb) - n))
	c.keep = !errClose
	c.consume7()
	c.state = c7Flush
	c.progress = lp.now
}

func (lp *l4loop) retry7(c *l7client) bool {
	if c.heldRetry {
		return true
	}
	c.heldRetry = c.cl.retryAllowed()
	return c.heldRetry
}

// attempt7 picks an instance and a connection to it and sends the request
// (forward's loop).
func (lp *l4loop) attempt7(c *l7client) {
	cl := c.cl
	for {
		e := cl.pick(&c.p)
		if e == nil {
			if c.attempt == 0 {
				c.r.metrics.noInstance(cl.name).Inc()
				lp.respond7(c, 503, "no healthy instance of "+cl.name)
				return
			}
			lp.respond7(c, c.lastCode, c.lastErr)
			return
		}
		var u *l7up
		if c.stale <= 1 {
			u = lp.takeIdle7(e, !c.retryable)
		}
		c.reused = u != nil
		if u == nil {
			sa, ok := sockaddrOf(e.addr)
			if !ok {
				if c.attempt == 0 && c.stale == 0 {
					// A host name: the net path resolves it.
					lp.endRequest7(c)
					lp.handoff7(c)
					return
				}
				if !lp.connectFailed7(c, e, errHostNameAddr) {
					return
				}
				continue
			}
			var err error
			u, err = lp.dial7(cl, e, sa)
			if err != nil {
				if !lp.connectFailed7(c, e, err) {
					return
				}
				continue
			}
		}
		c.u = u
		u.owner = c
		e.active.Add(1)
		c.ueof, c.uerr, c.dirty = false, false, false
		lp.buildRequest7(c)
		c.phase = ph7Send
		if u.connecting {
			c.phase = ph7Connect
		}
		return
	}
}

type hostNameErr struct{}

func (hostNameErr) Error() string { return "instance address is a host name" }

var errHostNameAddr error = hostNameErr{}

// buildRequest7 writes the request as exchange sends it.
func (lp *l4loop) buildRequest7(c *l7client) {
	req := &c.req
	wb := c.wbuf()[:0]
	wb = append(wb, req.buf...)
	wb = append(wb, "X-Forwarded-For: "...)
	if len(req.xff) > 0 {
		wb = append(wb, req.xff...)
		wb = append(wb, ", "...)
	}
	wb = append(wb, c.ip...)
	if !req.hasXFP {
		wb = append(wb, "\r\nX-Forwarded-Proto: http"...)
	}
	wb = append(wb, "\r\n\r\n"...)
	if c.bodyLen > 0 {
		s := c.inOff + c.headLen
		wb = append(wb, (*c.in)[s:s+c.bodyLen]...)
	}
	*c.wb = wb
	c.wOff = 0
}

// connectFailed7 is forward's handling of a connect failure; it reports
// whether to try again (else it has answered).
func (lp *l4loop) connectFailed7(c *l7client, e *endpoint, err error) bool {
	cl := c.cl
	cl.met.connectFailures.Inc()
	cl.failure(e)
	c.p.tryAdd(e)
	msg := err.Error()
	if err == errConnectTimeout {
		msg = "dial tcp " + e.addr + ": i/o timeout"
	} else if _, ok := err.(unix.Errno); ok {
		msg = "dial tcp " + e.addr + ": connect: " + msg
	}
	c.lastErr, c.lastCode = "upstream "+cl.name+": cannot connect to "+e.id+": "+msg, 503
	lp.l.m.log.Debug("sidecar: connect failed", "upstream", cl.name, "instance", e.id, "err", err)
	c.attempt++
	if c.attempt >= cl.st.maxAttempts || !lp.retry7(c) {
		lp.respond7(c, 503, c.lastErr)
		return false
	}
	cl.met.retries.Inc()
	return true
}

// connectFailedAsync7: the connect of the request's connection failed.
func (lp *l4loop) connectFailedAsync7(c *l7client, err error) {
	e := c.u.e
	lp.dropUp7(c, true)
	if lp.connectFailed7(c, e, err) {
		lp.attempt7(c)
	}
}

// dial7 opens a non-blocking socket and starts connecting it, as dialStart.
func (lp *l4loop) dial7(cl *cluster, e *endpoint, sa unix.Sockaddr) (*l7up, error) {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := socketNB(family)
	if err != nil {
		return nil, err
	}
	setsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// The request is waiting to go: the handshake's last ACK rides on
	// it (as dialStart does).
	setsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
	raw := toRawSockaddr(sa)
	err = connectNB(fd, &raw)
	if err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		closeFD(fd)
		return nil, err
	}
	u := &l7up{e: e, cl: cl}
	u.s = l7sock{fd: fd, up: u}
	if err := lp.register7(&u.s); err != nil {
		closeFD(fd)
		return nil, err
	}
	u.connecting = true
	u.connectBy = lp.now + int64(cl.st.connectTimeout)
	lp.sweepBy(u.connectBy)
	return u, nil
}

func (lp *l4loop) connected7(u *l7up) {
	u.connecting = false
	cl := u.cl
	cl.met.total.Inc()
	cl.met.active.Inc()
	u.t = &tracked{
		close: func() { lp.post(func() { lp.killUp7(u) }) },
		idle: func() {
			lp.post(func() {
				if u.pooled {
					lp.closeUp7(u)
				}
			})
		},
	}
	u.e.track(u.t)
}

// killUp7 is a drain's close of an upstream connection: an idle one closes,
// a busy one is shut down (its exchange sees the end).
func (lp *l4loop) killUp7(u *l7up) {
	if u.closed {
		return
	}
	if u.owner == nil {
		lp.closeUp7(u)
		return
	}
	unix.Shutdown(u.s.fd, unix.SHUT_RDWR)
}

func (lp *l4loop) closeUp7(u *l7up) {
	if u.closed {
		return
	}
	u.closed = true
	if u.pooled {
		u.pooled = false
		list := lp.l7.pool[u.e]
		for i, x := range list {
			if x == u {
				copy(list[i:], list[i+1:])
				list[len(list)-1] = nil
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 && u.e.removed.Load() {
			delete(lp.l7.pool, u.e)
		} else {
			lp.l7.pool[u.e] = list
		}
	}
	lp.dropSlot7(&u.s)
	closeFD(u.s.fd)
	u.s.fd = -1
	if u.t != nil {
		u.e.untrack(u.t)
		u.cl.met.active.Dec()
	}
}

// takeIdle7 returns a pooled connection to e, or nil (getConn's rules).
func (lp *l4loop) takeIdle7(e *endpoint, needAlive bool) *l7up {
	list := lp.l7.pool[e]
	for len(list) > 0 {
		u := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		lp.l7.pool[e] = list // kept when empty: no allocation at the next put
		u.pooled = false
		idle := u.cl.st.idleTimeout
		if idle > 0 && lp.now-u.idleSince > int64(idle) || e.removed.Load() || needAlive && !fdAlive(u.s.fd) {
			lp.closeUp7(u)
			continue
		}
		return u
	}
	return nil
}

func (lp *l4loop) putUp7(u *l7up) {
	e := u.e
	list := lp.l7.pool[e]
	if u.s.rdhup || e.removed.Load() || u.cl.closed.Load() || lp.stopping || len(list) >= lp.l.m.cfg.MaxIdlePerInstance ||
		u.s.canRead && !fdAlive(u.s.fd) {
		lp.closeUp7(u)
		return
	}
	u.s.canRead = false
	u.pooled = true
	u.idleSince = lp.now
	lp.l7.pool[e] = append(list, u)
	if idle := u.cl.st.idleTimeout; idle > 0 {
		lp.sweepBy(lp.now + int64(idle))
	}
}

// exchange7 moves the request on; it reports whether the state changed.
func (lp *l4loop) exchange7(c *l7client) bool {
	for {
		u := c.u
		switch c.phase {
		case ph7Connect:
			return false
		case ph7Send:
			wb := *c.wb
			k, err := sendAll7(&u.s, wb[c.wOff:], 0)
			c.wOff += k
			if err != nil {
				lp.noResponse7(c, "sending the request to "+u.e.id+" failed")
				return true
			}
			if c.wOff < len(wb) {
				return false
			}
			*c.wb = wb[:0]
			c.wOff = 0
			c.uN = 0
			c.phase = ph7Head
			if rt := c.cl.st.requestTimeout; rt > 0 {
				c.deadline = lp.now + int64(rt)
				lp.sweepBy(c.deadline)
			}
		case ph7Head:
			if c.uN > 0 {
				if done, changed := lp.head7(c); done {
					return changed
				}
			}
			if c.ueof {
				if c.uN == 0 && !c.passedOn {
					lp.noResponse7(c, "no response from "+u.e.id+" (connection closed)")
				} else {
					lp.fail7(c, 502, "upstream "+c.cl.name+": bad or no response from "+u.e.id)
				}
				return true
			}
			if !u.s.canRead {
				return false
			}
			if c.ub == nil {
				c.ub = l4Bufs.Get().(*[]byte)
			}
			ub := *c.ub
			if c.uN == len(ub) {
				lp.fail7(c, 502, "upstream "+c.cl.name+": bad or no response from "+u.e.id)
				return true
			}
			space := len(ub) - c.uN
			k, err := recvNB(u.s.fd, ub[c.uN:])
			switch {
			case k > 0:
				c.uN += k
				if k < space {
					u.s.canRead = false
					if u.s.rdhup {
						c.ueof = true
					}
				}
			case err == nil:
				c.ueof = true
			case err == unix.EAGAIN:
				u.s.canRead = false
				return false
			case err == unix.EINTR:
			default:
				c.ueof, c.uerr = true, true
			}
		case ph7Body:
			if !lp.flush7(c) {
				return c.closed
			}
			if c.bodyDone {
				lp.finish7(c)
				return true
			}
			if c.ueof {
				if c.untilEOF && !c.uerr {
					c.bodyDone = true
					c.resp.close = true
					continue
				}
				// The upstream ended mid-body: close the client
				// after what it has.
				c.keep = false
				c.dirty = true
				lp.finish7(c)
				return true
			}
			if !u.s.canRead {
				return false
			}
			ub := *c.ub
			k, err := recvNB(u.s.fd, ub)
			switch {
			case k > 0:
				c.progress = lp.now
				if k < len(ub) {
					u.s.canRead = false
					if u.s.rdhup {
						c.ueof = true
					}
				}
				n, out, done, ferr := lp.frame7(c, ub[:k])
				if ferr != nil {
					c.ueof, c.uerr = true, true
					c.boff, c.bend = 0, 0
					continue
				}
				c.boff, c.bend = 0, out
				if done {
					c.bodyDone = true
					if n < k {
						c.dirty = true
					}
				}
			case err == nil:
				c.ueof = true
			case err == unix.EAGAIN:
				u.s.canRead = false
				return false
			case err == unix.EINTR:
			default:
				c.ueof, c.uerr = true, true
			}
		}
	}
}

// head7 parses the response head in ub[:uN]. done: the head phase is over
// (changed: the state changed); else more bytes are needed.
func (lp *l4loop) head7(c *l7client) (done, changed bool) {
	u, cl := c.u, c.cl
	ub := *c.ub
	resp := &c.resp
	for {
		n, err := resp.parse(ub[:c.uN])
		if err == errIncomplete {
			return false, false
		}
		if err != nil {
			lp.fail7(c, 502, "upstream "+cl.name+": bad or no response from "+u.e.id)
			return true, true
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != 101 {
			c.passedOn = true
			wb := c.wbuf()
			wb = append(wb, resp.buf...)
			wb = append(wb, "\r\n"...)
			*c.wb = wb
			c.uN = copy(ub, ub[n:c.uN])
			if c.uN == 0 {
				return false, false
			}
			continue
		}
		if resp.status == 101 {
			// Only a request with Upgrade may be switched; those go
			// to the net path.
			lp.fail7(c, 502, "upstream "+cl.name+": bad or no response from "+u.e.id)
			return true, true
		}
		c.deadline = 0
		code := resp.status
		req := &c.req
		if (code == 502 || code == 503) && c.retryable && !c.passedOn {
			// Discard the answer; the connection is kept if the whole
			// of it is here.
			keep := !resp.close && !c.ueof
			rest := ub[n:c.uN]
			switch {
			case bodyless(code, req.isHead()):
				keep = keep && len(rest) == 0
			case resp.chunked:
				c.cs.reset()
				k, _, d, ferr := c.cs.scan(rest, true)
				keep = keep && ferr == nil && d && k == len(rest)
			case resp.contentLength >= 0:
				keep = keep && int64(len(rest)) == resp.contentLength
			default:
				keep = false
			}
			e := u.e
			lp.dropUp7(c, !keep)
			c.uN = 0
			lp.after7(c, outcomeRetry, e, code, "upstream "+cl.name+": "+e.id+" answered "+strconv.Itoa(code))
			return true, true
		}
		if code >= 500 {
			cl.failure(u.e)
		} else {
			cl.success(u.e)
		}
		c.r.metrics.code(code).Inc()
		c.r.metrics.duration.Observe(time.Since(c.start).Seconds())
		c.noBody = bodyless(code, req.isHead())
		c.chunked = resp.chunked && !c.noBody
		c.dechunk = c.chunked && req.http10
		c.untilEOF = !c.noBody && !resp.chunked && resp.contentLength < 0
		c.keep = !req.close && !c.untilEOF && !c.dechunk && !lp.draining7()
		c.left = 0
		if !c.noBody && !c.chunked && resp.contentLength > 0 {
			c.left = resp.contentLength
		}
		c.cs.reset()
		wb := c.wbuf()
		if c.dechunk {
			wb = append(wb, resp.buf[:resp.te.s]...)
			wb = append(wb, resp.buf[resp.te.e:]...)
		} else {
			wb = append(wb, resp.buf...)
		}
		switch {
		case !c.keep:
			wb = append(wb, "Connection: close\r\n\r\n"...)
		case req.http10:
			wb = append(wb, "Connection: keep-alive\r\n\r\n"...)
		default:
			wb = append(wb, "\r\n"...)
		}
		c.outBytes = int64(len(resp.buf) + 2)
		c.bodyDone = false
		body := ub[n:c.uN]
		k, out, d, ferr := lp.frame7(c, body)
		wb = append(wb, body[:out]...)
		*c.wb = wb
		c.wOff = 0
		c.uN, c.boff, c.bend = 0, 0, 0
		c.phase = ph7Body
		c.progress = lp.now
		if ferr != nil {
			c.ueof, c.uerr = true, true
		} else if d {
			c.bodyDone = true
			if k < len(body) {
				c.dirty = true
			}
		}
		if idle := cl.st.idleTimeout; idle > 0 {
			lp.sweepBy(lp.now + int64(idle))
		}
		return true, true
	}
}

// frame7 follows the response body's framing over b: consumed bytes of
// the body, out bytes to send (at the front of b), done at its end.
func (lp *l4loop) frame7(c *l7client, b []byte) (consumed, out int, done bool, err error) {
	switch {
	case c.noBody:
		return 0, 0, true, nil
	case c.chunked:
		before := c.cs.data
		consumed, out, done, err = c.cs.scan(b, c.dechunk)
		c.outBytes += c.cs.data - before
		return consumed, out, done, err
	case c.untilEOF:
		c.outBytes += int64(len(b))
		return len(b), len(b), false, nil
	}
	k := len(b)
	if int64(k) > c.left {
		k = int(c.left)
	}
	c.left -= int64(k)
	c.outBytes += int64(k)
	return k, k, c.left == 0, nil
}

// moreFlag is MSG_MORE while the rest of a small Content-Length body is
// still to come from the upstream (nginx, for one, sends the head and the
// body in two segments): the kernel holds the partial segment until the
// send that completes the body, and the client gets one segment, not two.
// As HAProxy does by default (its option http-no-delay turns it off); only
// for small, length-framed bodies here, never for chunked or until-EOF
// ones, which may be streams whose pieces must not wait (the kernel would
// hold a piece up to 200 ms).
func (c *l7client) moreFlag() int {
	if c.phase == ph7Body && !c.bodyDone && !c.chunked && !c.untilEOF && !c.ueof && c.left > 0 && c.left <= 64<<10 {
		return unix.MSG_MORE
	}
	return 0
}

// flush7 sends what is pending to the client; false when it must wait (or
// the client is gone: c.closed).
func (lp *l4loop) flush7(c *l7client) bool {
	more := c.moreFlag()
	if c.wb != nil {
		wb := *c.wb
		k, err := sendAll7(&c.s, wb[c.wOff:], more)
		c.wOff += k
		if k > 0 {
			c.progress = lp.now
		}
		if err != nil {
			lp.close7(c)
			return false
		}
		if c.wOff < len(wb) {
			return false
		}
		*c.wb = wb[:0]
		c.wOff = 0
	}
	if c.boff < c.bend {
		k, err := sendAll7(&c.s, (*c.ub)[c.boff:c.bend], more)
		c.boff += k
		if k > 0 {
			c.progress = lp.now
		}
		if err != nil {
			lp.close7(c)
			return false
		}
		if c.boff < c.bend {
			return false
		}
	}
	c.boff, c.bend = 0, 0
	return true
}

// sendAll7 sends b until it is all sent, the socket is blocked (EAGAIN:
// s.blocked set) or an error; it returns the bytes sent.
func sendAll7(s *l7sock, b []byte, flags int) (int, error) {
	n := 0
	for n < len(b) && !s.blocked {
		k, err := sendFlagsNB(s.fd, b[n:], flags)
		switch err {
		case nil:
			n += k
		case unix.EINTR:
		case unix.EAGAIN:
			s.blocked = true
		default:
			return n, err
		}
	}
	return n, nil
}

// finish7 ends an exchange whose response was read (or broke off).
func (lp *l4loop) finish7(c *l7client) {
	lp.l.met.bytesOut.Add(float64(c.outBytes))
	lp.dropUp7(c, c.resp.close || c.dirty || c.ueof)
	lp.endRequest7(c)
	c.consume7()
	c.state = c7Flush
	c.progress = lp.now
}

// flushDone7 sends the rest of an answer; then the next request, or the
// close.
func (lp *l4loop) flushDone7(c *l7client) bool {
	if !lp.flush7(c) {
		return c.closed
	}
	if !c.keep || lp.draining7() {
		lp.close7(c)
		return true
	}
	c.state = c7Idle
	c.lastActive = lp.now
	if idle := lp.l.h.Load().settings.idleTimeout; idle > 0 {
		lp.sweepBy(lp.now + int64(idle))
	}
	return true
}

// noResponse7: the connection failed before any response byte (exchange's
// noResponse).
func (lp *l4loop) noResponse7(c *l7client, what string) {
	msg := "upstream " + c.cl.name + ": " + what
	e := c.u.e
	reused := c.reused
	lp.dropUp7(c, true)
	switch {
	case c.retryable && reused:
		lp.after7(c, outcomeStale, e, 502, msg)
	case c.retryable:
		lp.after7(c, outcomeRetry, e, 502, msg)
	default:
		lp.after7(c, outcomeFail, e, 502, msg)
	}
}

// fail7 ends an attempt with an error answer (outcomeFail).
func (lp *l4loop) fail7(c *l7client, code int, msg string) {
	e := c.u.e
	lp.dropUp7(c, true)
	lp.after7(c, outcomeFail, e, code, msg)
}

// after7 is forward's handling of an attempt's outcome.
func (lp *l4loop) after7(c *l7client, o outcome, e *endpoint, code int, msg string) {
	cl := c.cl
	c.uN = 0
	switch o {
	case outcomeStale:
		c.stale++
		if c.stale > 3 {
			lp.respond7(c, 502, "upstream "+cl.name+": connections keep closing")
			return
		}
		lp.attempt7(c)
	case outcomeRetry:
		cl.failure(e)
		c.p.tryAdd(e)
		c.attempt++
		c.lastErr, c.lastCode = msg, code
		if c.attempt >= cl.st.maxAttempts || !lp.retry7(c) {
			lp.respond7(c, code, msg)
			return
		}
		cl.met.retries.Inc()
		c.stale = 0
		lp.attempt7(c)
	default:
		cl.failure(e)
		lp.respond7(c, code, msg)
	}
}

// close7 closes a client connection and whatever its request held.
func (lp *l4loop) close7(c *l7client) {
	if c.closed {
		return
	}
	c.closed = true
	if c.u != nil {
		lp.dropUp7(c, true)
	}
	if c.cl != nil {
		lp.endRequest7(c)
	}
	delete(lp.l7.clients, c)
	if c.s.fd >= 0 {
		lp.dropSlot7(&c.s)
		closeFD(c.s.fd)
		c.s.fd = -1
	}
	c.inOff, c.inN = 0, 0
	lp.dropBufs7(c)
	lp.l.met.active.Dec()
	if lp.stopping && len(lp.l7.clients) == 0 {
		lp.closePool7()
	}
}

// handoff7 gives the connection to the net-package path with what was
// read from it and not served.
func (lp *l4loop) handoff7(c *l7client) {
	lp.l7.handoffs++
	counted := c.inCounted // dispatch7 counted the head's bytes
	c.inCounted = false
	var prefix []byte
	if c.inN > c.inOff {
		prefix = append([]byte(nil), (*c.in)[c.inOff:c.inN]...)
	}
	fd := c.s.fd
	lp.dropSlot7(&c.s)
	c.s.fd = -1
	// Out of the loop's epoll: the copies the net package makes would
	// keep the registration alive.
	epollCtl(lp.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	c.closed = true
	if c.cl != nil {
		lp.endRequest7(c)
	}
	delete(lp.l7.clients, c)
	c.inOff, c.inN = 0, 0
	lp.dropBufs7(c)
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
	go l.handleFrom(cc, prefix, counted)
	if lp.stopping && len(lp.l7.clients) == 0 {
		lp.closePool7()
	}
}

// handleFrom is handle for a connection the loop hands over.
func (l *listener) handleFrom(cc *clientConn, prefix []byte, counted bool) {
	defer func() {
		cc.c.Close()
		l.mu.Lock()
		delete(l.conns, cc)
		l.mu.Unlock()
		l.met.active.Dec()
		l.wg.Done()
	}()
	l.serveHTTPFrom(cc, prefix, counted)
}

func (lp *l4loop) closePool7() {
	for _, list := range lp.l7.pool {
		for _, u := range append([]*l7up(nil), list...) {
			lp.closeUp7(u)
		}
	}
}

// drain7: the listener stops; idle client connections close now, the
// others after their request.
func (lp *l4loop) drain7() {
	for c := range lp.l7.clients {
		if c.state == c7Idle {
			lp.close7(c)
		}
	}
	if len(lp.l7.clients) == 0 {
		lp.closePool7()
	}
}

// closeAll7 closes every L7 connection of the loop.
func (lp *l4loop) closeAll7() int {
	n := len(lp.l7.clients)
	for c := range lp.l7.clients {
		lp.close7(c)
	}
	lp.closePool7()
	return n
}

// sweep7 applies the L7 timeouts (from sweep).
func (lp *l4loop) sweep7() {
	now := lp.now
	for c := range lp.l7.clients {
		switch c.state {
		case c7Idle, c7Flush:
			idle := int64(lp.l.h.Load().settings.idleTimeout)
			since := c.lastActive
			if c.state == c7Flush {
				since = c.progress
			}
			if idle > 0 {
				if now-since >= idle {
					lp.close7(c)
				} else {
					lp.sweepBy(since + idle)
				}
			}
		case c7Exchange:
			u := c.u
			switch {
			case u == nil:
			case u.connecting:
				if now >= u.connectBy {
					lp.connectFailedAsync7(c, errConnectTimeout)
					lp.step7(c)
				} else {
					lp.sweepBy(u.connectBy)
				}
			case c.phase == ph7Body:
				if idle := int64(c.cl.st.idleTimeout); idle > 0 {
					if now-c.progress >= idle {
						lp.close7(c)
					} else {
						lp.sweepBy(c.progress + idle)
					}
				}
			case c.deadline != 0:
				if now >= c.deadline {
					lp.fail7(c, 504, "upstream "+c.cl.name+": "+u.e.id+" did not answer within "+c.cl.st.requestTimeout.String())
					lp.step7(c)
				} else {
					lp.sweepBy(c.deadline)
				}
			}
		}
	}
	for e, list := range lp.l7.pool {
		if len(list) == 0 && e.removed.Load() {
			delete(lp.l7.pool, e)
			continue
		}
		for i := len(list) - 1; i >= 0; i-- {
			u := list[i]
			idle := int64(u.cl.st.idleTimeout)
			switch {
			case e.removed.Load() || u.cl.closed.Load() || idle > 0 && now-u.idleSince >= idle:
				lp.closeUp7(u)
				list = lp.l7.pool[e]
			case idle > 0:
				lp.sweepBy(u.idleSince + idle)
			}
		}
	}
}
