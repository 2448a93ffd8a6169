package rpcmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/outrigger/outrigger/internal/sockutil"
)

// Transport is an http.RoundTripper for server-to-server HTTP (forwarded
// requests) over server ports. Unlike http.Transport it has no goroutines
// per connection: the caller's goroutine writes the request and reads the
// response head, and the body hands the connection back to the idle pool
// once read to its end. A forward through http.Transport passed each
// request and response between three goroutines, and cost a follower more
// CPU than the leader spent answering it.
//
// A reused connection is checked for a close from the server before it is
// written to. A request that fails on a reused connection before any of
// the response was read is sent again on a new connection when that is
// safe (no body, or a body it can get again, and an idempotent method),
// as http.Transport does; otherwise the error is returned.
type Transport struct {
	// Dial opens a connection to a server port. Nil: Dial with
	// ProtoHTTP and a dial timeout of DialTimeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// DialTimeout is the default Dial's timeout (1 s when zero).
	DialTimeout time.Duration
	// MaxIdlePerHost is the number of idle connections kept per server
	// (64 when zero).
	MaxIdlePerHost int
	// IdleTimeout closes connections idle for longer (90 s when zero);
	// it must be below the servers' own idle timeout (2 min).
	IdleTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*pconn
	closed bool
}

// inlineBody is the largest request body written before the answer is
// waited for, rather than by a goroutine beside it.
const inlineBody = 64 << 10

// NewTransport returns a Transport with the defaults.
func NewTransport() *Transport { return &Transport{} }

type pconn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func (t *Transport) dial(ctx context.Context, addr string) (*pconn, error) {
	dial := t.Dial
	if dial == nil {
		timeout := t.DialTimeout
		if timeout <= 0 {
			timeout = time.Second
		}
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return Dial(ctx, addr, ProtoHTTP, timeout)
		}
	}
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &pconn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 8<<10)}, nil
}

// getIdle takes the most recently used idle connection to addr that the
// server has not closed, or returns nil.
func (t *Transport) getIdle(addr string) *pconn {
	timeout := t.IdleTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	now := time.Now()
	for {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			return nil
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		if now.Sub(pc.idleAt) < timeout && sockutil.ConnAlive(pc.c) {
			return pc
		}
		pc.c.Close()
	}
}

func (t *Transport) putIdle(addr string, pc *pconn) {
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = 64
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle[addr]) >= max {
		t.mu.Unlock()
		pc.c.Close()
		return
	}
	if t.idle == nil {
		t.idle = map[string][]*pconn{}
	}
	t.idle[addr] = append(t.idle[addr], pc)
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle connections; later requests dial
// anew.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.c.Close()
		}
	}
}

// errReusedConn wraps an error on a reused connection before any of the
// response was read: the server may have closed it as it was taken.
type errReusedConn struct{ err error }

func (e errReusedConn) Error() string { return e.err.Error() }
func (e errReusedConn) Unwrap() error { return e.err }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Host == "" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("rpcmux: request has no host")
	}
	addr := req.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("rpcmux: request host %q has no port", addr)
	}
	for {
		pc := t.getIdle(addr)
		reused := pc != nil
		if pc == nil {
			var err error
			if pc, err = t.dial(req.Context(), addr); err != nil {
				if req.Body != nil {
					req.Body.Close()
				}
				return nil, err
			}
		}
		resp, err := t.roundTrip(pc, addr, req, reused)
		var re errReusedConn
		if err == nil || !errors.As(err, &re) {
			return resp, err
		}
		if !replayable(req) {
			return nil, re.err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, re.err
			}
			req.Body = body
		}
	}
}

// replayable: what http.Transport sends again after a failure on a
// reused connection.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

func (t *Transport) roundTrip(pc *pconn, addr string, req *http.Request, reused bool) (*http.Response, error) {
	// The request's context ends the exchange by failing the connection's
	// reads and writes; the connection is not used again.
	var ctxErr error
	var ctxMu sync.Mutex
	stop := context.AfterFunc(req.Context(), func() {
		ctxMu.Lock()
		ctxErr = req.Context().Err()
		ctxMu.Unlock()
		pc.c.SetDeadline(time.Unix(1, 0))
	})
	fail := func(err error, readAny bool) (*http.Response, error) {
		stop()
		pc.c.Close()
		ctxMu.Lock()
		cerr := ctxErr
		ctxMu.Unlock()
		if cerr != nil {
			return nil, cerr
		}
		if reused && !readAny {
			return nil, errReusedConn{err}
		}
		return nil, err
	}
	write := func() error {
		// Write closes req.Body.
		if err := req.Write(pc.bw); err != nil {
			return err
		}
		return pc.bw.Flush()
	}
	// A large body, or one of unknown length, is written by a goroutine
	// while this one waits for the answer: a server may answer before it
	// has read it all (a 413) and close, and the answer must win over the
	// write's error, as with http.Transport. A small one fits the socket
	// buffers and is written here.
	var written chan error
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength < 0 || req.ContentLength > inlineBody) {
		written = make(chan error, 1)
		go func() { written <- write() }()
	} else if err := write(); err != nil {
		return fail(err, false)
	}
	var resp *http.Response
	for {
		var err error
		if _, err = pc.br.Peek(1); err != nil {
			if written != nil {
				// The write's error, when it has one already, says
				// more; fail's close ends a write still going.
				select {
				case werr := <-written:
					if werr != nil {
						err = werr
					}
				default:
				}
			}
			return fail(err, false)
		}
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(err, true)
		}
		// Interim responses (100 Continue to a forwarded Expect) come
		// before the one that counts; 101 is final.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	resp.Body = &body{t: t, pc: pc, addr: addr, rc: resp.Body, stop: stop, written: written,
		reuse: !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols}
	return resp, nil
}

// body is a response body that returns its connection to the idle pool
// when read to its end, and closes it when closed before.
type body struct {
	t     *Transport
	pc    *pconn
	addr  string
	rc    io.ReadCloser
	stop  func() bool
	reuse bool
	// written, when the request body is written by a goroutine, gives
	// its result: the connection is reused only after a whole write.
	written chan error

	mu   sync.Mutex
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return 0, errors.New("rpcmux: read on a closed response body")
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *body) Close() error {
	b.finish(false)
	return nil
}

func (b *body) finish(eof bool) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done = true
	b.mu.Unlock()
	// stop false: the context ended and poisoned the connection's
	// deadline. Bytes past the body: the connection is out of step.
	if b.stop() && eof && b.reuse && b.pc.br.Buffered() == 0 {
		// The answer came whole. The body's writer has finished, or is
		// about to, when the server read it all first; one still
		// writing after a moment (an early answer) would hold the
		// connection for long: close it then.
		if b.written == nil {
			b.t.putIdle(b.addr, b.pc)
			return
		}
		t := time.NewTimer(50 * time.Millisecond)
		defer t.Stop()
		select {
		case err := <-b.written:
			if err == nil {
				b.t.putIdle(b.addr, b.pc)
				return
			}
		case <-t.C:
		}
	}
	b.pc.c.Close()
}

var _ http.RoundTripper = (*Transport)(nil)
