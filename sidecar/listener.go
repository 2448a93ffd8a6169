package sidecar

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// listener is one bound port: it accepts connections and hands each to the
// current handler (swapped in place when its spec changes).
type listener struct {
	m    *Manager
	name string        // fixed at creation (logs, metrics)
	spec *listenerSpec // guarded by m.mu
	ln   *net.TCPListener
	h    atomic.Pointer[handler]
	met  *listenerMetrics

	mu        sync.Mutex
	conns     map[*clientConn]struct{}
	draining  bool
	drainFlag atomic.Bool // draining, read without the lock
	wg        sync.WaitGroup
	done      chan struct{} // closed when the accept loop ends
	loop      *l4loop       // the L4 event loop serving it, if any (guarded by mu)
	lnClosed  bool          // shutdownCtx has begun (guarded by mu)
	shutDown  chan struct{} // closed when shutdownCtx has finished
}

// clientConn is an accepted connection; idle is set between HTTP requests
// so that a drain can close it at once.
type clientConn struct {
	c    *net.TCPConn
	idle atomic.Bool
}

// handler is what a listener does with a connection: its routes and their
// clusters, and the upstream settings.
type handler struct {
	spec     *listenerSpec
	settings settings
	protocol string
	routes   []*route
}

type route struct {
	spec    routeSpec
	targets []weighted
	total   int
	metrics *routeMetrics
}

type weighted struct {
	c      *cluster
	weight int
}

// target picks the route's cluster by weight.
func (r *route) target() *cluster {
	if len(r.targets) == 1 {
		return r.targets[0].c
	}
	n := randN(r.total)
	for _, t := range r.targets {
		if n < t.weight {
			return t.c
		}
		n -= t.weight
	}
	return r.targets[len(r.targets)-1].c
}

func newListener(m *Manager, spec *listenerSpec, ln *net.TCPListener, h *handler) *listener {
	l := &listener{m: m, name: spec.name, spec: spec, ln: ln, met: m.metrics.listener(spec.name),
		conns: map[*clientConn]struct{}{}, done: make(chan struct{}), shutDown: make(chan struct{})}
	l.h.Store(h)
	return l
}

// update swaps in a new handler; connections already being served finish
// their current request (http) or stay (tcp) on the old one. Called with
// m.mu held.
func (l *listener) update(spec *listenerSpec, h *handler) {
	l.spec = spec
	old := l.h.Swap(h)
	l.m.releaseHandlerLocked(old)
	l.mu.Lock()
	lp := l.loop
	l.mu.Unlock()
	if lp != nil {
		lp.protocolChanged()
	}
}

func (l *listener) serve() {
	if l4LoopEnabled && (l.h.Load().protocol != ProtocolHTTP || l7LoopEnabled) {
		lp, err := startL4Loop(l)
		if err == nil {
			l.mu.Lock()
			if !l.lnClosed {
				l.loop = lp
				l.wg.Add(1)
			}
			l.mu.Unlock()
			if l.loop == lp {
				lp.run()
				return
			}
			lp.closeFDs()
		} else if !errors.Is(err, net.ErrClosed) {
			l.m.log.Warn("sidecar: L4 event loop unavailable; using the net package", "listener", l.name, "err", err)
		}
	}
	l.serveNet()
}

// serveNet is the accept loop of the net-package path.
func (l *listener) serveNet() {
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait a little, as net/http does.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			l.m.log.Warn("sidecar: accept", "listener", l.name, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		cc := &clientConn{c: c}
		l.mu.Lock()
		if l.draining {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[cc] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		l.met.total.Inc()
		l.met.active.Inc()
		go l.handle(cc)
	}
}

func (l *listener) handle(cc *clientConn) {
	defer func() {
		cc.c.Close()
		l.mu.Lock()
		delete(l.conns, cc)
		l.mu.Unlock()
		l.met.active.Dec()
		l.wg.Done()
	}()
	h := l.h.Load()
	if h.protocol == ProtocolHTTP {
		l.serveHTTP(cc)
		return
	}
	l.serveTCP(cc.c, h, h.routes[0], nil)
}

func (l *listener) isDraining() bool { return l.drainFlag.Load() }

// shutdown stops accepting and drains for up to timeout.
func (l *listener) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l.shutdownCtx(ctx)
}

// shutdownCtx stops accepting, closes idle HTTP connections, waits for the
// others to end until ctx is done, then closes them. Call it once.
func (l *listener) shutdownCtx(ctx context.Context) {
	defer close(l.shutDown)
	l.ln.Close()
	l.mu.Lock()
	l.lnClosed = true
	loop := l.loop
	l.mu.Unlock()
	if loop != nil {
		loop.stopAccepting()
	}
	<-l.done
	l.mu.Lock()
	l.draining = true
	l.drainFlag.Store(true)
	for cc := range l.conns {
		if cc.idle.Load() {
			cc.c.SetReadDeadline(time.Now())
		}
	}
	l.mu.Unlock()
	ended := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-ctx.Done():
		if n := l.closeConns(); n > 0 {
			l.m.log.Info("sidecar: drain time over; closed connections", "listener", l.name, "connections", n)
		}
		<-ended
	}
	l.m.releaseHandler(l.h.Load())
}

// closeConns closes every client connection still open.
func (l *listener) closeConns() int {
	l.mu.Lock()
	for cc := range l.conns {
		cc.c.Close()
	}
	n := len(l.conns)
	loop := l.loop
	l.mu.Unlock()
	if loop != nil {
		n += loop.closeAll()
	}
	return n
}

// serveTCP forwards one connection at L4 with the net package. prefix, if
// any, is what was already read from the client (an h2c preface) and goes
// first. On Linux, tcp listeners are served by the event loop instead
// (l4loop_linux.go); this path serves the h2c tunnel of http listeners,
// connections the loop hands over (a listener changed to http, an instance
// addressed by host name), and other systems.
func (l *listener) serveTCP(client *net.TCPConn, h *handler, r *route, prefix []byte) {
	c := r.target()
	st := &c.st
	if !c.conns.acquire(st.connectTimeout) {
		c.met.connOverflows.Inc()
		l.m.log.Warn("sidecar: connection refused by limits", "listener", l.name, "upstream", c.name)
		return
	}
	defer c.conns.release()
	var p pickReq
	if c.st.balancer == BalancerHash {
		p.key = hashClientIP(client)
	}
	up, e, err := c.dial(context.Background(), &p) // each attempt bounded by connectTimeout
	if err != nil {
		if errors.Is(err, errNoInstance) {
			r.metrics.noInstance(c.name).Inc()
			if c.logNoInstance() {
				l.m.log.Warn("sidecar: no healthy instance; closing connection", "listener", l.name, "upstream", c.name)
			}
		} else {
			l.m.log.Warn("sidecar: cannot reach any instance; closing connection", "listener", l.name, "upstream", c.name, "err", err)
		}
		return
	}
	c.success(e)
	c.met.total.Inc()
	c.met.active.Inc()
	e.active.Add(1)
	t := &tracked{close: func() { up.Close(); client.Close() }}
	e.track(t)
	defer func() {
		e.untrack(t)
		e.active.Add(-1)
		c.met.active.Dec()
		up.Close()
	}()
	if len(prefix) > 0 {
		if _, err := up.Write(prefix); err != nil {
			return
		}
		l.met.bytesIn.Add(float64(len(prefix)))
	}
	in, out := pipe(client, up, st.idleTimeout)
	l.met.bytesIn.Add(float64(in))
	l.met.bytesOut.Add(float64(out))
	c.met.bytesOut.Add(float64(in))
	c.met.bytesIn.Add(float64(out))
}

func hashClientIP(c net.Conn) uint64 {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return hashBytes(a.IP)
	}
	return 0
}

// pipe copies a→b and b→a until both directions end, passing on half-close.
// The copies are io.Copy between *net.TCPConn values: Linux splices them.
// idle > 0 closes both when neither direction has received data for that
// long (checked with the kernel's TCP_INFO, so the hot path has no
// wrapper). It returns the bytes copied each way.
func pipe(a, b *net.TCPConn, idle time.Duration) (aToB, bToA int64) {
	var finished atomic.Int32
	done := make(chan struct{})
	go func() {
		bToA = copyHalf(a, b, idle, &finished)
		close(done)
	}()
	aToB = copyHalf(b, a, idle, &finished)
	<-done
	return aToB, bToA
}

// copyHalf copies src to dst; on EOF it half-closes dst (unless the other
// direction has ended too: the caller closes both then, and a shutdown
// would be a wasted syscall), on an error it closes both (so the other
// direction ends too).
//
// Small exchanges (request/response traffic) go through a small buffer with
// read and write; the first read that fills the buffer switches the
// direction to splice for good (bulk transfer). splice moves each chunk
// through a pipe — two syscalls and a pipe held while waiting — which costs
// more than one read and one write for a few hundred bytes, and much less
// for megabytes.
func copyHalf(dst, src *net.TCPConn, idle time.Duration, finished *atomic.Int32) int64 {
	var total int64
	if idle > 0 {
		src.SetReadDeadline(time.Now().Add(idle))
	}
	spliced := spliceMode == "always"
	var bp *[]byte
	if !spliced {
		bp = smallBufs.Get().(*[]byte)
		defer func() {
			if bp != nil {
				smallBufs.Put(bp)
			}
		}()
	}
	for {
		var n int64
		var err error
		if spliced {
			n, err = copyTCP(dst, src)
		} else {
			buf := *bp
			var k int
			k, err = src.Read(buf)
			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil && err == nil {
					err = werr
				}
				n = int64(k)
				if k == len(buf) && err == nil {
					spliced = true
					splicedDirections.Add(1)
					smallBufs.Put(bp)
					bp = nil
				}
			}
			if err == io.EOF {
				err = nil
			} else if err == nil {
				total += n
				continue
			}
		}
		total += n
		if err == nil {
			if finished.Add(1) == 1 {
				dst.CloseWrite()
			}
			return total
		}
		if idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			quiet := quietFor(src, dst)
			if quiet < idle {
				src.SetReadDeadline(time.Now().Add(idle - quiet))
				continue
			}
		}
		finished.Add(1)
		src.Close()
		dst.Close()
		return total
	}
}

// spliceMode "always" splices from the first byte (set with -ldflags -X
// for comparisons); anything else is the small-buffer-first mode above.
var spliceMode = "auto"

// splicedDirections counts the switches to splice (tests).
var splicedDirections atomic.Int64

const smallBufSize = 4 << 10

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}

// quietFor is how long neither socket has received data.
func quietFor(a, b *net.TCPConn) time.Duration {
	qa, oka := lastDataRecv(a)
	qb, okb := lastDataRecv(b)
	switch {
	case !oka || !okb:
		return 0 // unknown: do not close
	case qa < qb:
		return qa
	}
	return qb
}
