//go:build linux

package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

type l7stats struct {
	served, handoffs int64
	clients, pooled  int
}

// l7statsOf reads the loop's L7 counters on the loop.
func l7statsOf(t *testing.T, lp *l4loop) l7stats {
	t.Helper()
	ch := make(chan l7stats, 1)
	if !lp.post(func() {
		s := l7stats{served: lp.l7.served, handoffs: lp.l7.handoffs, clients: len(lp.l7.clients)}
		for _, l := range lp.l7.pool {
			s.pooled += len(l)
		}
		ch <- s
	}) {
		return l7stats{}
	}
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("loop does not answer")
		return l7stats{}
	}
}

// l7Env is an env whose http upstreams are served by the L7 fast path.
func l7Env(t *testing.T, tweak ...func(*Config)) (*testEnv, func(Upstream) (string, *l4loop)) {
	t.Helper()
	if !l4LoopEnabled || !l7LoopEnabled {
		t.Skip("the L7 event loop is switched off")
	}
	env := newEnv(t, tweak...)
	return env, func(u Upstream) (string, *l4loop) {
		u.Protocol = "http"
		addr := env.upstream(u)
		var lp *l4loop
		waitFor(t, "the http listener served by the event loop", func() error {
			if lp = env.loopOf(addr); lp == nil {
				return errors.New("no loop")
			}
			return nil
		})
		return addr, lp
	}
}

type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReaderSize(c, 64<<10)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response (and its body).
func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(body)
}

func (rc *rawClient) get(path string) string {
	rc.t.Helper()
	rc.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 200 {
		rc.t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
	}
	return body
}

// kindsBackend answers "<method> <path> <body length>", and serves the
// kinds the loop hands over: Upgrade (101, then echo) and the HTTP/2
// preface ("H2OK", then echo).
func kindsBackend(t *testing.T) string {
	return rawBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "PRI" {
				rest := make([]byte, 6) // SM\r\n\r\n
				if _, err := io.ReadFull(br, rest); err != nil || string(rest) != "SM\r\n\r\n" {
					return
				}
				io.WriteString(c, "H2OK")
				io.Copy(c, br)
				return
			}
			if req.Header.Get("Upgrade") == "test" {
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
				io.Copy(c, br)
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			out := fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, len(body))
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out); err != nil {
				return
			}
		}
	})
}

// Each kind of request the loop does not serve is handed to the net path
// in the middle of a connection, after requests the loop served, and the
// connection goes on.
func TestL7LoopHandoffKinds(t *testing.T) {
	env, up := l7Env(t)
	env.src.set("api", entry("api", "a", "n1", kindsBackend(t)))
	addr, lp := up(Upstream{DestinationName: "api"})
	big := strings.Repeat("b", 20000)
	for _, tc := range []struct {
		name string
		do   func(rc *rawClient)
	}{
		{"chunked body", func(rc *rawClient) {
			rc.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
			if _, body := rc.read("POST"); body != "POST /c 5" {
				t.Errorf("got %q", body)
			}
		}},
		{"expect", func(rc *rawClient) {
			rc.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
			if resp, _ := rc.read("POST"); resp.StatusCode != 100 {
				t.Fatalf("got %d, want 100", resp.StatusCode)
			}
			rc.send("abc")
			if _, body := rc.read("POST"); body != "POST /e 3" {
				t.Errorf("got %q", body)
			}
		}},
		{"body larger than the buffer", func(rc *rawClient) {
			rc.send("PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + big)
			if _, body := rc.read("PUT"); body != "PUT /b 20000" {
				t.Errorf("got %q", body)
			}
		}},
		{"head larger than the buffer", func(rc *rawClient) {
			rc.send("GET /h HTTP/1.1\r\nHost: x\r\nX-A: " + big[:10000] + "\r\nX-B: " + big[:10000] + "\r\n\r\n")
			if _, body := rc.read("GET"); body != "GET /h 0" {
				t.Errorf("got %q", body)
			}
		}},
		{"upgrade", func(rc *rawClient) {
			rc.send("GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			if resp, _ := rc.read("GET"); resp.StatusCode != 101 {
				t.Fatalf("got %d, want 101", resp.StatusCode)
			}
			rc.send("tunnelled")
			b := make([]byte, 9)
			if _, err := io.ReadFull(rc.br, b); err != nil || string(b) != "tunnelled" {
				t.Errorf("echo %q, %v", b, err)
			}
		}},
		{"h2 preface", func(rc *rawClient) {
			rc.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes")
			b := make([]byte, 10)
			if _, err := io.ReadFull(rc.br, b); err != nil || string(b) != "H2OKframes" {
				t.Errorf("got %q, %v", b, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			before := l7statsOf(t, lp)
			for i := 0; i < 2; i++ {
				if b := rc.get("/fast" + strconv.Itoa(i)); b != "GET /fast"+strconv.Itoa(i)+" 0" {
					t.Fatalf("got %q", b)
				}
			}
			mid := l7statsOf(t, lp)
			if mid.served != before.served+2 || mid.handoffs != before.handoffs {
				t.Fatalf("before %+v, after two requests %+v: want 2 served on the loop", before, mid)
			}
			tc.do(rc)
			after := l7statsOf(t, lp)
			if after.handoffs != mid.handoffs+1 {
				t.Errorf("handoffs %d → %d, want one more", mid.handoffs, after.handoffs)
			}
			if tc.name == "upgrade" || tc.name == "h2 preface" {
				return
			}
			// The net path serves the connection from now on.
			if b := rc.get("/next"); b != "GET /next 0" {
				t.Errorf("after the hand-off: %q", b)
			}
		})
	}
}

// Requests written at once come back in order, with a small body among
// them; X-Forwarded-For is appended to.
func TestL7LoopPipelined(t *testing.T) {
	env, up := l7Env(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr, lp := up(Upstream{DestinationName: "api"})
	rc := dialRaw(t, addr)
	var all strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&all, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	all.WriteString("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
	all.WriteString("HEAD /h HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n")
	rc.send(all.String())
	for i := 0; i < 5; i++ {
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "a" {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "a:body" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if resp, body := rc.read("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	h := *a.last.Load()
	if got := h.Get("X-Forwarded-For"); got != "9.9.9.9, 127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("forwarded headers: %q %q", got, h.Get("X-Forwarded-Proto"))
	}
	if s := l7statsOf(t, lp); s.served != 7 || s.handoffs != 0 {
		t.Errorf("stats %+v: want 7 served on the loop", s)
	}
	lm := env.m.metrics.listener("app-sidecar-proxy/api")
	if in := counter(t, lm.bytesIn); in == 0 {
		t.Error("no bytes in counted")
	}
}

// A response much larger than the buffers, to a client that reads slowly:
// every byte arrives in order, with Content-Length and chunked, and the
// backend is held back.
func TestL7LoopLargeResponseSlowClient(t *testing.T) {
	env, up := l7Env(t)
	const size = 32 << 20
	var sent atomic.Int64
	b := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cl" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		buf := make([]byte, 64<<10)
		for off := int64(0); off < size; off += int64(len(buf)) {
			fillPattern(buf, off)
			n, err := w.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, _ := up(Upstream{DestinationName: "api"})
	for _, path := range []string{"/cl", "/chunked"} {
		sent.Store(0)
		rc := dialRaw(t, addr)
		rc.c.(*net.TCPConn).SetReadBuffer(64 << 10)
		rc.c.SetDeadline(time.Now().Add(60 * time.Second))
		rc.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if path == "/chunked" && len(resp.TransferEncoding) == 0 {
			t.Errorf("%s: not chunked", path)
		}
		var got, maxAhead int64
		buf := make([]byte, 16<<10)
		slow := time.NewTicker(200 * time.Microsecond)
		for {
			if got < 4<<20 {
				<-slow.C
			}
			n, err := resp.Body.Read(buf)
			if i := checkPattern(buf[:n], got); i >= 0 {
				t.Fatalf("%s: byte %d wrong", path, got+int64(i))
			}
			got += int64(n)
			if a := sent.Load() - got; a > maxAhead {
				maxAhead = a
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: after %d bytes: %v", path, got, err)
			}
		}
		slow.Stop()
		if got != size {
			t.Fatalf("%s: %d bytes, want %d", path, got, size)
		}
		if maxAhead > 20<<20 {
			t.Errorf("%s: the backend ran %d MiB ahead of the slow client", path, maxAhead>>20)
		}
		// The connection is still good.
		if b := rc.get("/small"); len(b) != 0 && path == "" {
			t.Fatal(b)
		}
	}
}

// A chunked response written a few bytes at a time (chunk sizes,
// extensions, CRLFs and trailers split across reads) arrives whole, to an
// HTTP/1.1 client as chunks and to an HTTP/1.0 client decoded.
func TestL7LoopChunkedSplit(t *testing.T) {
	env, up := l7Env(t)
	body := "4;x=1\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n"
	b := rawBackend(t, func(c *net.TCPConn) {
		c.SetNoDelay(true)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			step, _ := strconv.Atoi(req.URL.Query().Get("step"))
			for i := 0; i < len(body); i += step {
				j := min(i+step, len(body))
				if _, err := io.WriteString(c, body[i:j]); err != nil {
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, lp := up(Upstream{DestinationName: "api"})
	for step := 1; step <= 7; step++ {
		rc := dialRaw(t, addr)
		for i := 0; i < 2; i++ {
			rc.send(fmt.Sprintf("GET /?step=%d HTTP/1.1\r\nHost: x\r\n\r\n", step))
			resp, got := rc.read("GET")
			if got != "wikipedia in\r\n\r\nchunks." || resp.Trailer.Get("T") != "v" {
				t.Fatalf("step %d: %q, trailer %v", step, got, resp.Trailer)
			}
		}
		rc10 := dialRaw(t, addr)
		rc10.send(fmt.Sprintf("GET /?step=%d HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", step))
		resp, got := rc10.read("GET")
		if got != "wikipedia in\r\n\r\nchunks." || len(resp.TransferEncoding) != 0 || !resp.Close {
			t.Fatalf("HTTP/1.0, step %d: %q %v close=%v", step, got, resp.TransferEncoding, resp.Close)
		}
	}
	if s := l7statsOf(t, lp); s.handoffs != 0 {
		t.Errorf("%+v", s)
	}
}

// A 503 is retried on another instance (the answer discarded); a pooled
// connection the instance closed after reading the request is resent on a
// fresh one without counting a failure.
func TestL7LoopRetry503AndStale(t *testing.T) {
	env, up := l7Env(t)
	bad, good := newHTTPBackend(t, "bad"), newHTTPBackend(t, "good")
	bad.code.Store(503)
	env.src.set("api", entry("api", "bad", "n1", bad.addr()), entry("api", "good", "n2", good.addr()))
	addr, lp := up(Upstream{DestinationName: "api", Outlier: OutlierConfig{Disabled: true}})
	rc := dialRaw(t, addr)
	for i := 0; i < 10; i++ {
		if b := rc.get("/"); b != "good" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	cm := env.m.metrics.cluster("api")
	if r := counter(t, cm.retries); r == 0 || float64(bad.hits.Load()) != r {
		t.Errorf("retries %v, bad hits %d: want equal and > 0", r, bad.hits.Load())
	}

	// Stale: the second request on each upstream connection is read and
	// dropped (the connection closed without an answer).
	var got atomic.Int64
	stale := rawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if !answer(c, br, "s") {
			return
		}
		if _, err := http.ReadRequest(br); err == nil {
			got.Add(1)
		}
	})
	env.src.set("stale", entry("stale", "s", "n1", stale))
	addr2, lp2 := up(Upstream{DestinationName: "stale"})
	rc2 := dialRaw(t, addr2)
	for i := 0; i < 6; i++ {
		if b := rc2.get("/"); b != "s" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	sm := env.m.metrics.cluster("stale")
	if f := counter(t, sm.connectFailures); f != 0 {
		t.Errorf("connect failures %v", f)
	}
	if got.Load() == 0 {
		t.Error("no request was sent on a stale connection")
	}
	if s := l7statsOf(t, lp2); s.handoffs != 0 || s.served != 6 {
		t.Errorf("stale upstream stats %+v", s)
	}
	_ = lp
}

// Idle pooled upstream connections close when the instance closes them,
// and the accounting goes back to zero.
func TestL7LoopPoolClosesOnUpstreamClose(t *testing.T) {
	env, up := l7Env(t)
	closeNow := make(chan struct{})
	b := rawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if !answer(c, br, "a") {
			return
		}
		<-closeNow
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, lp := up(Upstream{DestinationName: "api"})
	rc := dialRaw(t, addr)
	rc.get("/")
	cm := env.m.metrics.cluster("api")
	if s := l7statsOf(t, lp); s.pooled != 1 || counter(t, cm.active) != 1 {
		t.Fatalf("stats %+v, active %v: want one pooled", s, counter(t, cm.active))
	}
	close(closeNow)
	waitFor(t, "the pooled connection closed", func() error {
		if s := l7statsOf(t, lp); s.pooled != 0 {
			return fmt.Errorf("%d pooled", s.pooled)
		}
		if a := counter(t, cm.active); a != 0 {
			return fmt.Errorf("active %v", a)
		}
		return nil
	})
}

// An instance that does not answer within the request timeout: 504.
func TestL7LoopRequestTimeout504(t *testing.T) {
	env, up := l7Env(t)
	hang := make(chan struct{})
	defer close(hang)
	b := rawBackend(t, func(c *net.TCPConn) {
		http.ReadRequest(bufio.NewReader(c))
		<-hang
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, _ := up(Upstream{DestinationName: "api", RequestTimeout: 300 * time.Millisecond})
	rc := dialRaw(t, addr)
	start := time.Now()
	rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 504 || !strings.Contains(body, "did not answer within 300ms") || resp.Header.Get("X-Outrigger-Proxy-Error") != "1" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("504 after %v", d)
	}
}

// The client's idle keep-alive timeout closes a quiet connection.
func TestL7LoopClientIdleTimeout(t *testing.T) {
	env, up := l7Env(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr, lp := up(Upstream{DestinationName: "api", IdleTimeout: 300 * time.Millisecond})
	rc := dialRaw(t, addr)
	rc.get("/")
	start := time.Now()
	if _, err := rc.br.ReadByte(); err == nil {
		t.Fatal("data on an idle connection")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("closed after %v, want about 300ms", d)
	}
	waitFor(t, "no client left", func() error {
		if s := l7statsOf(t, lp); s.clients != 0 {
			return fmt.Errorf("%d clients", s.clients)
		}
		return nil
	})
}

// 404, 503 without an instance, 400: the answers of the net path.
func TestL7LoopErrors(t *testing.T) {
	_, up := l7Env(t)
	addr, lp := up(Upstream{DestinationName: "api"})
	rc := dialRaw(t, addr)
	rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := rc.read("GET")
	if resp.StatusCode != 503 || body != "no healthy instance of api\n" || resp.Header.Get("X-Outrigger-Proxy-Error") != "1" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	rc.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := rc.read("HEAD"); resp.StatusCode != 503 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	rc.send("BAD\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if s := l7statsOf(t, lp); s.handoffs != 0 {
		t.Errorf("%+v", s)
	}
}

// Listener shutdown: an idle client connection closes at once, a busy one
// gets its whole answer (with Connection: close).
func TestL7LoopDrain(t *testing.T) {
	env, up := l7Env(t)
	release := make(chan struct{})
	b := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, lp := up(Upstream{DestinationName: "api"})
	idle := dialRaw(t, addr)
	idle.get("/")
	busy := dialRaw(t, addr)
	busy.get("/")
	busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the slow request in flight", func() error {
		if n := env.m.clustersNamed("api")[0].requests.Load(); n != 1 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	applied := make(chan error, 1)
	go func() { applied <- env.m.Apply(context.Background(), Spec{}) }()
	if _, err := idle.br.ReadByte(); err == nil {
		t.Fatal("idle connection not closed")
	}
	close(release)
	resp, body := busy.read("GET")
	if body != "done" || !resp.Close {
		t.Fatalf("busy: %q close=%v", body, resp.Close)
	}
	if _, err := busy.br.ReadByte(); err == nil {
		t.Fatal("busy connection not closed after its answer")
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "loop ended", func() error {
		if lp.post(func() {}) {
			return errors.New("still running")
		}
		return nil
	})
}

// Connections of every kind leave no fd behind, and removing the listener
// closes the loop's.
func TestL7LoopNoFDLeak(t *testing.T) {
	env, up := l7Env(t)
	env.src.set("api", entry("api", "a", "n1", kindsBackend(t)))
	addr, lp := up(Upstream{DestinationName: "api"})
	warm := dialRaw(t, addr)
	warm.get("/warm")
	warm.c.Close()
	waitFor(t, "the warm-up connection closed", func() error {
		if s := l7statsOf(t, lp); s.clients != 0 {
			return fmt.Errorf("%d clients", s.clients)
		}
		return nil
	})
	before := countFDs(t)
	for i := 0; i < 24; i++ {
		rc := dialRaw(t, addr)
		switch i % 6 {
		case 0:
			rc.get("/a")
			rc.get("/b")
		case 1: // handed off
			rc.get("/a")
			rc.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			rc.read("POST")
		case 2: // closed mid-request
			rc.send("GET / HTTP/1.1\r\nHo")
		case 3: // reset after sending
			rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			rc.c.(*net.TCPConn).SetLinger(0)
		case 4: // bad request
			rc.send("NOPE\r\n\r\n")
			rc.read("GET")
		case 5: // Connection: close
			rc.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			rc.read("GET")
		}
		rc.c.Close()
	}
	waitFor(t, "fds back to the count before", func() error {
		if s := l7statsOf(t, lp); s.clients != 0 {
			lp.post(func() {
				for c := range lp.l7.clients {
					t.Logf("client state %d phase %d in %d-%d eof %v canRead %v rdhup %v u %v", c.state, c.phase, c.inOff, c.inN, c.eof, c.s.canRead, c.s.rdhup, c.u != nil)
				}
			})
			return fmt.Errorf("%d clients on the loop", s.clients)
		}
		if act := counter(t, env.m.metrics.listener("app-sidecar-proxy/api").active); act != 0 {
			return fmt.Errorf("listener active %v", act)
		}
		// The backend may keep the handed-off path's connections in
		// its pool; the loop's pool holds one.
		if n := countFDs(t); n > before+4 {
			return fmt.Errorf("%d fds, %d before", n, before)
		}
		return nil
	})
	held := dialRaw(t, addr)
	held.get("/held")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := env.m.Apply(context.Background(), Spec{}); err != nil {
		t.Fatal(err)
	}
	env.m.Close(ctx)
	if _, err := held.br.ReadByte(); err == nil {
		t.Fatal("connection still open after Close")
	}
	held.c.Close()
	waitFor(t, "loop ended and its fds closed", func() error {
		if lp.post(func() {}) {
			return errors.New("loop still running")
		}
		if n := countFDs(t); n > before-1 {
			return fmt.Errorf("%d fds, %d before", n, before)
		}
		return nil
	})
}

// Switched off, the net-package path serves http listeners.
func TestL7NetPathWhenLoopOff(t *testing.T) {
	defer func(v bool) { l7LoopEnabled = v }(l7LoopEnabled)
	l7LoopEnabled = false
	env := newEnv(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	if env.loopOf(addr) != nil {
		t.Fatal("loop used while switched off")
	}
	if code, body, _ := get(t, httpClient(), "http://"+addr+"/"); code != 200 || body != "a" {
		t.Fatalf("%d %q", code, body)
	}
}

// l7BenchSetup starts a Manager with an http upstream to a backend that
// answers every request with a fixed response; it returns the listener's
// address and the response.
func l7BenchSetup(b *testing.B) (string, []byte) {
	src := newMemSource()
	m, err := New(Config{Source: src, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	crlf2 := []byte("\r\n\r\n")
	respBytes := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\nhello from the backend\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], crlf2)
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:have])
						have -= i + 4
						if _, err := c.Write(respBytes); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	src.set("api", entry("api", "a", "n1", ln.Addr().String()))
	port := tu.FreePort(b)
	if err := m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "b", Upstreams: []Upstream{{DestinationName: "api", LocalBindPort: port, Protocol: "http"}}}}}); err != nil {
		b.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port), respBytes
}

// BenchmarkL7LoopParallel is 50 keep-alive clients at once (as wrk -c 50):
// the loop serves the requests of several connections per wake-up.
func BenchmarkL7LoopParallel(b *testing.B) {
	addr, respBytes := l7BenchSetup(b)
	req := []byte("GET / HTTP/1.1\r\nHost: api\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(50)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		got := make([]byte, len(respBytes))
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, got); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkL7Loop is one keep-alive client through the L7 fast path to a
// backend answering a fixed response: per-request cost and allocations of
// the proxy (the client and the backend allocate nothing per request).
func BenchmarkL7Loop(b *testing.B) {
	src := newMemSource()
	m, err := New(Config{Source: src, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	crlf2 := []byte("\r\n\r\n")
	respBytes := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\nhello from the backend\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					// One request per head (no bodies here).
					for {
						i := bytes.Index(buf[:have], crlf2)
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:have])
						have -= i + 4
						if _, err := c.Write(respBytes); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	src.set("api", entry("api", "a", "n1", ln.Addr().String()))
	port := tu.FreePort(b)
	if err := m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "b", Upstreams: []Upstream{{DestinationName: "api", LocalBindPort: port, Protocol: "http"}}}}}); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: api\r\nUser-Agent: bench\r\n\r\n")
	got := make([]byte, len(respBytes))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}

// Informational answers (other than 101) are passed on before the real
// one; the connection stays usable.
func TestL7Loop1xx(t *testing.T) {
	env, up := l7Env(t)
	b := rawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, lp := up(Upstream{DestinationName: "api"})
	rc := dialRaw(t, addr)
	for i := 0; i < 2; i++ {
		rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, _ := rc.read("GET")
		if resp.StatusCode != 103 || resp.Header.Get("Link") != "</a.css>" {
			t.Fatalf("first: %d %v", resp.StatusCode, resp.Header)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("then: %d %q", resp.StatusCode, body)
		}
	}
	if s := l7statsOf(t, lp); s.served != 2 || s.handoffs != 0 {
		t.Errorf("%+v", s)
	}
}

// A connect that hangs is given up after the connect timeout and the
// request sent to another instance.
func TestL7LoopConnectTimeoutRetry(t *testing.T) {
	env, up := l7Env(t)
	hole := blackhole(t)
	if hole == "" {
		t.Skip("SYNs to a full backlog are not dropped here")
	}
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "hole", "n1", hole), entry("api", "a", "n2", a.addr()))
	addr, _ := up(Upstream{DestinationName: "api", ConnectTimeout: 200 * time.Millisecond, Outlier: OutlierConfig{Disabled: true}})
	for i := 0; i < 4; i++ {
		rc := dialRaw(t, addr) // a new client each time: hash-free round robin
		if b := rc.get("/"); b != "a" {
			t.Fatalf("request %d: %q", i, b)
		}
		rc.c.Close()
	}
	if f := counter(t, env.m.metrics.cluster("api").connectFailures); f == 0 {
		t.Error("no connect failure counted")
	}
}

// Over the connection limit, a request is handed to the net path, which
// waits in the limit's queue; it gets through when the slot frees.
func TestL7LoopConnectionLimitHandoff(t *testing.T) {
	env, up := l7Env(t)
	release := make(chan struct{})
	b := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	})
	env.src.set("api", entry("api", "a", "n1", b))
	addr, lp := up(Upstream{DestinationName: "api", ConnectTimeout: 5 * time.Second, Limits: Limits{MaxConnections: 1, MaxPendingRequests: 1}})
	slow := dialRaw(t, addr)
	slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the slow request in flight", func() error {
		if n := env.m.clustersNamed("api")[0].requests.Load(); n != 1 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	second := dialRaw(t, addr)
	second.send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the second request waiting for a slot", func() error {
		if p := env.m.clustersNamed("api")[0].conns.pending.Load(); p != 1 {
			return fmt.Errorf("pending %d", p)
		}
		return nil
	})
	close(release)
	if _, body := slow.read("GET"); body != "done" {
		t.Fatalf("slow: %q", body)
	}
	if _, body := second.read("GET"); body != "done" {
		t.Fatalf("second: %q", body)
	}
	if s := l7statsOf(t, lp); s.handoffs != 1 {
		t.Errorf("%+v: want one hand-off", s)
	}
}

// A deregistered instance: requests go to the other one, and the pooled
// connections to the removed one are closed by the end of the drain.
func TestL7LoopDrainOnDeregister(t *testing.T) {
	// The drain time is long: idle pooled connections to a close when it
	// starts, as the net path's do, not when it ends.
	env, up := l7Env(t, func(c *Config) { c.DrainTimeout = time.Minute })
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	env.src.set("api", entry("api", "a", "n1", a.addr()), entry("api", "b", "n2", b.addr()))
	addr, lp := up(Upstream{DestinationName: "api"})
	rc := dialRaw(t, addr)
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		seen[rc.get("/")] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("balance: %v", seen)
	}
	cl := env.m.clustersNamed("api")[0]
	cl.mu.Lock()
	ea := cl.all[a.addr()]
	cl.mu.Unlock()
	deregistered := time.Now()
	env.src.set("api", entry("api", "b", "n2", b.addr()))
	waitFor(t, "only b, and a's connections closed", func() error {
		for i := 0; i < 4; i++ {
			if got := rc.get("/"); got != "b" {
				return fmt.Errorf("got %q", got)
			}
		}
		ea.mu.Lock()
		n := len(ea.conns)
		ea.mu.Unlock()
		if n != 0 {
			return fmt.Errorf("%d connections to a", n)
		}
		if s := l7statsOf(t, lp); s.pooled != 1 {
			return fmt.Errorf("%d pooled, want 1 (to b)", s.pooled)
		}
		return nil
	})
	// Not at the next sweep or use (seconds later).
	if d := time.Since(deregistered); d > 2*time.Second {
		t.Errorf("a's idle connections closed %v after it was deregistered", d)
	}
}

// The rest of a small Content-Length body is waited for with MSG_MORE (the
// client gets the head and the body in one segment), but a chunked body is
// a stream: each piece reaches the client at once, however long the next
// one takes.
func TestL7LoopSplitResponses(t *testing.T) {
	env, up := loopEnv(t)
	release := make(chan struct{})
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch req.URL.Path {
			case "/length":
				// Head, then the body as a second segment.
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
				time.Sleep(20 * time.Millisecond)
				fmt.Fprint(c, "hello")
			case "/stream":
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
				<-release
				fmt.Fprint(c, "4\r\nlast\r\n0\r\n\r\n")
			}
		}
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api", Protocol: "http"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /length HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "hello" {
		t.Fatalf("/length: %q, %v", body, err)
	}
	fmt.Fprint(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	start := time.Now()
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("/stream: first piece %q, %v", first, err)
	}
	// The kernel would hold a corked piece for 200 ms.
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("the first piece of a stream took %v", d)
	}
	close(release)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "last" {
		t.Fatalf("/stream: rest %q, %v", rest, err)
	}
}

// An instance addressed by host name: the loop hands the request to the
// goroutine path (which resolves names) after counting its head, which the
// goroutine path must not count again.
func TestL7LoopHostNameInstanceCountedOnce(t *testing.T) {
	env, up := l7Env(t)
	a := newHTTPBackend(t, "a")
	_, port, _ := net.SplitHostPort(a.addr())
	env.src.set("api", entry("api", "a", "n1", net.JoinHostPort("localhost", port)))
	addr, lp := up(Upstream{DestinationName: "api"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
	fmt.Fprint(c, req)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "a" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if s := l7statsOf(t, lp); s.handoffs != 1 {
		t.Fatalf("stats %+v: want the request handed off", s)
	}
	lm := env.m.metrics.listener("app-sidecar-proxy/api")
	if in := counter(t, lm.bytesIn); in != float64(len(req)) {
		t.Errorf("bytes in %v, want %d (the head once)", in, len(req))
	}
}
