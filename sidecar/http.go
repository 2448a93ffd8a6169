package sidecar

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The L7 path: one goroutine per client connection reads request heads with
// the lean parser, picks a route and an instance, and forwards over a pooled
// keep-alive connection to that instance. Bodies are copied through the
// bufio buffers with their framing (Content-Length, chunked) intact.

// httpConn is the per-client-connection state, pooled.
type httpConn struct {
	br   *bufio.Reader
	bw   *bufio.Writer
	req  reqHead
	resp respHead
	ip   string
}

var httpConnPool = sync.Pool{New: func() any {
	return &httpConn{
		br: bufio.NewReaderSize(nil, 16<<10),
		bw: bufio.NewWriterSize(nil, 16<<10),
	}
}}

// upConn is a connection to an instance with its buffers.
type upConn struct {
	c        *net.TCPConn
	br       *bufio.Reader
	bw       *bufio.Writer
	e        *endpoint
	t        *tracked
	lastUsed time.Time
}

func (uc *upConn) close() {
	uc.c.Close()
	uc.e.untrack(uc.t)
	uc.e.c.met.active.Dec()
}

// getConn returns an idle pooled connection to e, or dials one.
func (c *cluster) getConn(e *endpoint, fresh, needAlive bool) (*upConn, bool, error) {
	if !fresh {
		now := time.Now()
		for {
			e.mu.Lock()
			n := len(e.idle)
			if n == 0 {
				e.mu.Unlock()
				break
			}
			uc := e.idle[n-1]
			e.idle[n-1] = nil
			e.idle = e.idle[:n-1]
			e.mu.Unlock()
			if c.st.idleTimeout > 0 && now.Sub(uc.lastUsed) > c.st.idleTimeout || needAlive && !connAlive(uc.c) {
				uc.close()
				continue
			}
			return uc, true, nil
		}
	}
	conn, err := e.dial(context.Background(), c.st.connectTimeout)
	if err != nil {
		return nil, false, err
	}
	// TCP_NODELAY is on already: the net package sets it on every TCP
	// connection.
	uc := &upConn{c: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 16<<10), e: e}
	uc.t = &tracked{close: func() { conn.Close() }}
	e.track(uc.t)
	c.met.total.Inc()
	c.met.active.Inc()
	return uc, false, nil
}

// putConn returns a connection to its instance's pool, or closes it.
func (c *cluster) putConn(uc *upConn) {
	e := uc.e
	uc.lastUsed = time.Now()
	e.mu.Lock()
	if e.removed.Load() || c.closed.Load() || len(e.idle) >= c.m.cfg.MaxIdlePerInstance {
		e.mu.Unlock()
		uc.close()
		return
	}
	e.idle = append(e.idle, uc)
	e.mu.Unlock()
}

func (l *listener) serveHTTP(cc *clientConn) { l.serveHTTPFrom(cc, nil, false) }

// prefixReader reads prefix, then r.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// serveHTTPFrom serves a connection of which prefix was read already (by
// the L7 event loop, which hands over what it does not serve); counted says
// the loop has counted the first request's head in the listener's bytes in.
func (l *listener) serveHTTPFrom(cc *clientConn, prefix []byte, counted bool) {
	s := httpConnPool.Get().(*httpConn)
	if len(prefix) > 0 {
		if len(prefix) > s.br.Size() {
			s.br = bufio.NewReaderSize(nil, len(prefix))
		}
		// The whole prefix goes into the buffer at the first read:
		// the h2c and Upgrade tunnels take what is buffered and then
		// read cc.c itself.
		s.br.Reset(&prefixReader{prefix: prefix, r: cc.c})
	} else {
		s.br.Reset(cc.c)
	}
	s.bw.Reset(cc.c)
	s.ip = ""
	if a, ok := cc.c.RemoteAddr().(*net.TCPAddr); ok {
		s.ip = a.IP.String()
	}
	defer func() {
		s.br.Reset(nil)
		s.bw.Reset(nil)
		if cap(s.req.buf) <= 64<<10 && cap(s.resp.buf) <= 64<<10 {
			httpConnPool.Put(s)
		}
	}()
	var deadlineSet time.Time
	for {
		h := l.h.Load()
		cc.idle.Store(true)
		if l.isDraining() {
			return
		}
		if idle := h.settings.idleTimeout; idle > 0 {
			// Moving the deadline costs a timer update per request; move
			// it only when a sixteenth of the timeout has passed.
			if now := time.Now(); now.Sub(deadlineSet) > idle/16 {
				cc.c.SetReadDeadline(now.Add(idle))
				deadlineSet = now
			}
		}
		if s.br.Buffered() == 0 {
			if _, err := s.br.Peek(1); err != nil {
				return
			}
		}
		cc.idle.Store(false)
		h = l.h.Load() // the newest routes for this request
		if err := s.req.read(s.br); err != nil {
			switch {
			case errors.Is(err, errH2Preface):
				l.tunnelH2(cc, s, h)
			case errors.Is(err, errHeadTooLarge):
				writeError(s.bw, 431, "request head too large", true, false)
			case errors.Is(err, errBadRequest):
				writeError(s.bw, 400, "malformed request", true, false)
			}
			return
		}
		if counted {
			counted = false
		} else {
			l.met.bytesIn.Add(float64(s.req.raw))
		}
		r := h.match(&s.req)
		if r == nil {
			l.met.bytesOut.Add(float64(writeError(s.bw, 404, "no route matches this request", s.req.close || s.req.hasBody(), s.req.isHead())))
			if s.req.close || s.req.hasBody() {
				return
			}
			continue
		}
		if !l.forward(cc, s, h, r) {
			return
		}
	}
}

// tunnelH2 passes an HTTP/2 prior-knowledge connection (h2c, gRPC) through
// at L4 to the catch-all route's target.
func (l *listener) tunnelH2(cc *clientConn, s *httpConn, h *handler) {
	r := h.catchAll()
	if r == nil {
		l.m.log.Warn("sidecar: HTTP/2 connection without a catch-all route; closing", "listener", l.name)
		return
	}
	prefix := append([]byte("PRI * HTTP/2.0\r\n"), peekBuffered(s.br)...)
	cc.c.SetReadDeadline(time.Time{})
	l.serveTCP(cc.c, h, r, prefix)
}

func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	out := append([]byte(nil), b...)
	br.Discard(len(b))
	return out
}

// match returns the first route matching the request, or nil.
func (h *handler) match(req *reqHead) *route {
	host := req.get(req.host)
	if i := strings.LastIndexByte(string(host), ':'); i >= 0 && !strings.HasSuffix(string(host), "]") {
		host = host[:i]
	}
	path := req.get(req.path)
	for _, r := range h.routes {
		if r.matches(host, path, req) {
			return r
		}
	}
	return nil
}

func (r *route) matches(host, path []byte, req *reqHead) bool {
	if len(r.spec.hosts) > 0 {
		ok := false
		for _, h := range r.spec.hosts {
			if h == "*" || eqFold(host, h) ||
				strings.HasPrefix(h, "*.") && len(host) > len(h)-1 && eqFold(host[len(host)-(len(h)-1):], h[1:]) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if p := r.spec.pathPrefix; p != "/" && p != "" {
		if len(path) < len(p) || string(path[:len(p)]) != p {
			return false
		}
	}
	for name, want := range r.spec.headers {
		v := req.headerValue(name)
		if v == nil || want != "*" && string(v) != want {
			return false
		}
	}
	return true
}

// catchAll is the first route matching any request.
func (h *handler) catchAll() *route {
	for _, r := range h.routes {
		if len(r.spec.hosts) == 0 && len(r.spec.headers) == 0 && (r.spec.pathPrefix == "/" || r.spec.pathPrefix == "") {
			return r
		}
	}
	return nil
}

// forward sends one request to the route's target and its response back.
// It reports whether the client connection may serve another request.
func (l *listener) forward(cc *clientConn, s *httpConn, h *handler, r *route) bool {
	start := time.Now()
	req := &s.req
	c := r.target()
	st := &c.st
	mustClose := req.close || req.upgrade
	// Errors before the body was read leave it unread: close then.
	errClose := mustClose || req.hasBody()
	respond := func(code int, msg string) bool {
		r.metrics.code(code).Inc()
		r.metrics.duration.Observe(time.Since(start).Seconds())
		l.met.bytesOut.Add(float64(writeError(s.bw, code, msg, errClose, req.isHead())))
		return !errClose
	}
	if max := st.limits.MaxConcurrentRequests; max > 0 && c.requests.Load() >= int64(max) {
		c.met.reqOverflows.Inc()
		return respond(503, "upstream "+c.name+": too many requests in flight (max_concurrent_requests)")
	}
	c.requests.Add(1)
	defer c.requests.Add(-1)
	c.waitReady(st.connectTimeout)
	if len(c.set.Load().eps) == 0 {
		r.metrics.noInstance(c.name).Inc()
		if c.logNoInstance() {
			l.m.log.Warn("sidecar: no healthy instance; answering 503", "listener", l.name, "route", r.spec.name, "upstream", c.name)
		}
		return respond(503, "no healthy instance of "+c.name)
	}
	if !c.conns.acquire(st.connectTimeout) {
		c.met.connOverflows.Inc()
		return respond(503, "upstream "+c.name+": connection limit reached (max_connections, max_pending_requests)")
	}
	defer c.conns.release()
	if req.expect {
		s.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if s.bw.Flush() != nil {
			return false
		}
	}
	var p pickReq
	if st.balancer == BalancerHash {
		if strings.HasPrefix(st.hashOn, HashOnHeaderPrefix) {
			p.key = hashBytes(req.headerValue(st.hashOn[len(HashOnHeaderPrefix):]))
		} else {
			p.key = hashString(s.ip)
		}
	}
	// A request can be sent again if it has no body or a small one with a
	// Content-Length: that body is read into the client buffer before the
	// first attempt (Peek) and consumed only when the exchange is over.
	var body []byte
	if req.contentLength > 0 && !req.upgrade && req.contentLength <= int64(s.br.Size()) {
		b, err := s.br.Peek(int(req.contentLength))
		if err != nil {
			return false // the client went away mid-body
		}
		body = b
		defer s.br.Discard(len(b))
	}
	canResend := (!req.hasBody() || body != nil) && !req.upgrade
	// Idempotent requests that can be sent again are retried on a 502/503
	// answer, on a connection that ends before any response byte, and
	// (uncounted) on a pooled connection the upstream had closed.
	retryable := canResend && req.idempotent()
	stale := 0
	var lastErr string
	lastCode := 503
	heldRetry := false
	defer func() {
		if heldRetry {
			c.retries.Add(-1)
		}
	}()
	retry := func() bool {
		if heldRetry {
			return true
		}
		heldRetry = c.retryAllowed()
		return heldRetry
	}
	for attempt := 0; ; {
		e := c.pick(&p)
		if e == nil {
			if attempt == 0 {
				r.metrics.noInstance(c.name).Inc()
				return respond(503, "no healthy instance of "+c.name)
			}
			return respond(lastCode, lastErr)
		}
		// Requests that are not sent again on a dead pooled connection
		// check that it is open first (MSG_PEEK), which narrows the race
		// with an upstream closing it to microseconds.
		uc, reused, err := c.getConn(e, stale > 1, !retryable)
		if err != nil {
			c.met.connectFailures.Inc()
			c.failure(e)
			p.tryAdd(e)
			lastErr, lastCode = "upstream "+c.name+": cannot connect to "+e.id+": "+err.Error(), 503
			l.m.log.Debug("sidecar: connect failed", "upstream", c.name, "instance", e.id, "err", err)
			attempt++
			if attempt >= st.maxAttempts || !retry() {
				return respond(503, lastErr)
			}
			c.met.retries.Inc()
			continue
		}
		e.active.Add(1)
		res := l.exchange(cc, s, h, r, c, uc, reused, retryable, body, start)
		e.active.Add(-1)
		switch res.outcome {
		case outcomeDone:
			return res.keep
		case outcomeStale:
			// A pooled connection the upstream had closed: send again
			// on another connection, not counted as a failure.
			stale++
			if stale > 3 {
				return respond(502, "upstream "+c.name+": connections keep closing")
			}
			continue
		case outcomeRetry:
			c.failure(e)
			p.tryAdd(e)
			attempt++
			lastErr, lastCode = res.msg, res.code
			if attempt >= st.maxAttempts || !retry() {
				return respond(res.code, res.msg)
			}
			c.met.retries.Inc()
			stale = 0
			continue
		case outcomeFail:
			c.failure(e)
			return respond(res.code, res.msg)
		case outcomeClientGone:
			return false
		}
	}
}

type outcome int

const (
	outcomeDone outcome = iota
	outcomeStale
	outcomeRetry
	outcomeFail
	outcomeClientGone
)

type exchangeResult struct {
	outcome outcome
	keep    bool
	code    int
	msg     string
}

// exchange sends the request on uc and copies the response back. body, if
// not nil, is the whole request body (held in the client buffer); else the
// body is streamed from the client. retryable says the request may be sent
// again: it is then retried when uc ends before any response byte or
// answers 502/503.
func (l *listener) exchange(cc *clientConn, s *httpConn, h *handler, r *route, c *cluster, uc *upConn, reused, retryable bool, body []byte, start time.Time) exchangeResult {
	req := &s.req
	st := &c.st
	bw := uc.bw
	bw.Write(req.buf)
	bw.WriteString("X-Forwarded-For: ")
	if len(req.xff) > 0 {
		bw.Write(req.xff)
		bw.WriteString(", ")
	}
	bw.WriteString(s.ip)
	if !req.hasXFP {
		bw.WriteString("\r\nX-Forwarded-Proto: http")
	}
	bw.WriteString("\r\n\r\n")
	var err error
	switch {
	case body != nil:
		_, err = bw.Write(body)
	case req.contentLength > 0:
		_, err = copyBody(bw, s.br, req.contentLength)
	case req.chunked:
		_, err = copyChunked(bw, s.br, false)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		uc.close()
		if !isUpstreamErr(err, uc) {
			return exchangeResult{outcome: outcomeClientGone}
		}
		return noResponse(c, uc, reused, retryable, "sending the request to "+uc.e.id+" failed")
	}
	if st.requestTimeout > 0 {
		uc.c.SetReadDeadline(time.Now().Add(st.requestTimeout))
	}
	resp := &s.resp
	passedOn := false // a 1xx went to the client
	for {
		if _, err = uc.br.Peek(1); err == nil {
			_, err = resp.read(uc.br)
		} else if !passedOn && !errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection ended (EOF, reset) before any response
			// byte.
			uc.close()
			return noResponse(c, uc, reused, retryable, "no response from "+uc.e.id+" (connection closed)")
		}
		if err != nil {
			uc.close()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return exchangeResult{outcome: outcomeFail, code: 504, msg: "upstream " + c.name + ": " + uc.e.id + " did not answer within " + st.requestTimeout.String()}
			}
			return exchangeResult{outcome: outcomeFail, code: 502, msg: "upstream " + c.name + ": bad or no response from " + uc.e.id}
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != 101 {
			passedOn = true
			// Informational: pass on, read the real one.
			s.bw.Write(resp.buf)
			s.bw.WriteString("\r\n")
			continue
		}
		break
	}
	// The request timeout covers the head; the body may take longer (a
	// stream) unless it is already buffered (the next request moves the
	// deadline again anyway).
	if st.requestTimeout > 0 && !(resp.contentLength >= 0 && int64(uc.br.Buffered()) >= resp.contentLength) {
		if st.idleTimeout > 0 {
			uc.c.SetReadDeadline(time.Now().Add(st.idleTimeout))
		} else {
			uc.c.SetReadDeadline(time.Time{})
		}
	}
	code := resp.status
	if (code == 502 || code == 503) && retryable && !passedOn {
		l.discardBody(c, uc, resp, req.isHead())
		return exchangeResult{outcome: outcomeRetry, code: code, msg: "upstream " + c.name + ": " + uc.e.id + " answered " + strconv.Itoa(code)}
	}
	if code >= 500 {
		c.failure(uc.e)
	} else {
		c.success(uc.e)
	}
	r.metrics.code(code).Inc()
	r.metrics.duration.Observe(time.Since(start).Seconds())
	if code == 101 {
		return l.upgrade(cc, s, c, uc, resp)
	}
	noBody := bodyless(code, req.isHead())
	dechunk := resp.chunked && req.http10 && !noBody
	untilEOF := !noBody && !resp.chunked && resp.contentLength < 0
	keep := !req.close && !req.upgrade && !untilEOF && !dechunk && !l.isDraining()
	cw := s.bw
	if dechunk {
		// HTTP/1.0 clients cannot read chunks: the body ends at close.
		cw.Write(resp.buf[:resp.te.s])
		cw.Write(resp.buf[resp.te.e:])
	} else {
		cw.Write(resp.buf)
	}
	if !keep {
		cw.WriteString("Connection: close\r\n\r\n")
	} else if req.http10 {
		cw.WriteString("Connection: keep-alive\r\n\r\n")
	} else {
		cw.WriteString("\r\n")
	}
	out := int64(len(resp.buf) + 2)
	var n int64
	switch {
	case noBody:
	case resp.chunked:
		n, err = copyChunked(cw, uc.br, dechunk)
	case resp.contentLength > 0:
		n, err = copyBody(cw, uc.br, resp.contentLength)
	case untilEOF:
		n, err = copyUntilEOF(cw, uc.br)
		resp.close = true
	}
	out += n
	l.met.bytesOut.Add(float64(out))
	if err != nil {
		uc.close()
		cw.Flush()
		return exchangeResult{outcome: outcomeDone, keep: false}
	}
	if resp.close {
		uc.close()
	} else {
		c.putConn(uc)
	}
	if err := cw.Flush(); err != nil {
		return exchangeResult{outcome: outcomeDone, keep: false}
	}
	return exchangeResult{outcome: outcomeDone, keep: keep}
}

// noResponse is the outcome of a request whose connection failed before
// any response byte. A request that may be sent again is: on a pooled
// connection (the upstream closed it while idle, the classic keep-alive
// race) on another connection without counting a failure; on a fresh one
// on another instance, as a failure, within the retry budget. Others fail
// with a 502 (the upstream may have acted on them).
func noResponse(c *cluster, uc *upConn, reused, retryable bool, what string) exchangeResult {
	msg := "upstream " + c.name + ": " + what
	switch {
	case retryable && reused:
		return exchangeResult{outcome: outcomeStale, code: 502, msg: msg}
	case retryable:
		return exchangeResult{outcome: outcomeRetry, code: 502, msg: msg}
	}
	return exchangeResult{outcome: outcomeFail, code: 502, msg: msg}
}

func (l *listener) discardBody(c *cluster, uc *upConn, resp *respHead, head bool) {
	var err error
	sink := bufio.NewWriterSize(io.Discard, 512)
	switch {
	case bodyless(resp.status, head):
	case resp.chunked:
		_, err = copyChunked(sink, uc.br, true)
	case resp.contentLength >= 0 && resp.contentLength <= 64<<10:
		_, err = copyBody(sink, uc.br, resp.contentLength)
	default:
		err = errBadRequest
	}
	if err != nil || resp.close {
		uc.close()
		return
	}
	c.putConn(uc)
}

// upgrade passes a 101 Switching Protocols on and tunnels both ways.
func (l *listener) upgrade(cc *clientConn, s *httpConn, c *cluster, uc *upConn, resp *respHead) exchangeResult {
	s.bw.Write(resp.buf)
	s.bw.WriteString("\r\n")
	if b := peekBuffered(uc.br); len(b) > 0 {
		s.bw.Write(b)
	}
	if err := s.bw.Flush(); err != nil {
		uc.close()
		return exchangeResult{outcome: outcomeDone}
	}
	if b := peekBuffered(s.br); len(b) > 0 {
		if _, err := uc.c.Write(b); err != nil {
			uc.close()
			return exchangeResult{outcome: outcomeDone}
		}
	}
	cc.c.SetReadDeadline(time.Time{})
	uc.c.SetReadDeadline(time.Time{})
	in, out := pipe(cc.c, uc.c, c.st.idleTimeout)
	l.met.bytesIn.Add(float64(in))
	l.met.bytesOut.Add(float64(out))
	uc.close()
	return exchangeResult{outcome: outcomeDone}
}

func isUpstreamErr(err error, uc *upConn) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op == "write"
	}
	return false
}

var statusText = map[int]string{400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large",
	502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

// writeError answers with a plain-text error (its head only to a HEAD
// request); it returns the bytes written.
func writeError(w *bufio.Writer, code int, msg string, close, headOnly bool) int {
	b := appendError(nil, code, msg, close, headOnly)
	w.Write(b)
	w.Flush()
	return len(b)
}
