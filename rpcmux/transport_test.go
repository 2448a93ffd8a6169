package rpcmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connCounts counts a server's connections: opened (one per dial) and
// closed.
type connCounts struct{ opened, closed atomic.Int64 }

func (c *connCounts) Load() int64 { return c.opened.Load() }

// muxServer serves h on a Mux's HTTP listener and counts its connections.
func muxServer(t *testing.T, h http.Handler) (addr string, conns *connCounts, srv *http.Server) {
	t.Helper()
	m := newMux(t)
	conns = new(connCounts)
	srv = &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.opened.Add(1)
		case http.StateClosed:
			conns.closed.Add(1)
		}
	}}
	go func() { _ = srv.Serve(m.HTTPListener()) }()
	t.Cleanup(func() { srv.Close() })
	return m.Addr().String(), conns, srv
}

func get(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// Requests one after another use one connection; bodies both ways arrive
// whole, and so do bodies of unknown length (chunked).
func TestTransportReusesConnections(t *testing.T) {
	addr, conns, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Query().Has("chunked") {
			w.Write([]byte("part1 "))
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	c := &http.Client{Transport: NewTransport(), Timeout: 5 * time.Second}
	for i := range 20 {
		method, body, q, want := "GET", "", "", fmt.Sprintf("GET /v1/kv/k%d ", i)
		switch i % 3 {
		case 1:
			method, body, want = "PUT", "value", fmt.Sprintf("PUT /v1/kv/k%d value", i)
		case 2:
			q, want = "?chunked", fmt.Sprintf("part1 GET /v1/kv/k%d?chunked ", i)
		}
		code, got := get(t, c, method, fmt.Sprintf("http://%s/v1/kv/k%d%s", addr, i, q), body)
		if code != 200 || got != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, code, got, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d connections, want 1", n)
	}
}

// A connection the server closed while it was idle is not written to: the
// next request, a PUT that could not be sent again, goes on a new one.
func TestTransportServerClosedIdle(t *testing.T) {
	addr, conns, srv := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))

	c := &http.Client{Transport: NewTransport(), Timeout: 5 * time.Second}
	if code, _ := get(t, c, "GET", "http://"+addr+"/a", ""); code != 200 {
		t.Fatalf("first GET: %d", code)
	}
	srv.SetKeepAlivesEnabled(false) // closes idle connections
	deadline := time.Now().Add(5 * time.Second)
	for conns.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server never closed its idle connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.SetKeepAlivesEnabled(true)
	if code, body := get(t, c, "PUT", "http://"+addr+"/b", "x"); code != 200 || body != "ok" {
		t.Fatalf("PUT after the server closed the idle connection: %d %q", code, body)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections: %d, want 2", n)
	}
}

// A GET that fails on a reused connection before any response byte is
// sent again on a new one; a PUT is not (it may have been applied).
func TestTransportRetriesOnlyIdempotent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Each connection answers one request, then reads the next request
	// and closes without answering: the race an idle close can lose.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				if req, err = http.ReadRequest(br); err == nil {
					io.Copy(io.Discard, req.Body)
				}
			}(c)
		}
	}()
	d := net.Dialer{}
	tr := &Transport{Dial: func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	base := "http://" + ln.Addr().String()
	if code, _ := get(t, c, "GET", base+"/1", ""); code != 200 {
		t.Fatal(code)
	}
	if code, body := get(t, c, "GET", base+"/2", ""); code != 200 || body != "ok" {
		t.Fatalf("GET on a connection that dies: %d %q, want it sent again", code, body)
	}
	req, _ := http.NewRequest("PUT", base+"/3", strings.NewReader("x"))
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("PUT on a connection that dies before answering succeeded; it must fail (its outcome is unknown)")
	}
}

// The request's context ends a response that is being waited for, and
// that connection is not used again.
func TestTransportContextEnds(t *testing.T) {
	release := make(chan struct{})
	addr, conns, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	defer close(release)
	c := &http.Client{Transport: NewTransport()}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/slow", nil)
	start := time.Now()
	_, err := c.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ended after %v with a 200ms context", d)
	}
	if code, _ := get(t, c, "GET", "http://"+addr+"/fast", ""); code != 200 {
		t.Fatal(code)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections: %d, want 2 (the abandoned one not reused)", n)
	}
}

// A body closed before its end closes its connection; an interim 100
// Continue is skipped; a failed dial is a *net.OpError "dial" (what
// httpapi's forward retries on another server).
func TestTransportEdges(t *testing.T) {
	addr, conns, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(make([]byte, 1<<20))
			return
		}
		b, _ := io.ReadAll(r.Body) // sends 100 Continue to an Expect
		w.Write(b)
	}))
	tr := NewTransport()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	req, _ := http.NewRequest("PUT", "http://"+addr+"/echo", strings.NewReader("body"))
	req.Header.Set("Expect", "100-continue")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "body" {
		t.Fatalf("PUT with Expect: %d %q, want 200 %q", resp.StatusCode, b, "body")
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections: %d, want 2 (the half-read one closed)", n)
	}

	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	_, err = tr.RoundTrip(httptest.NewRequest("GET", "http://"+deadAddr+"/", nil).WithContext(context.Background()))
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("dial to a closed port: %v, want a *net.OpError dial", err)
	}
}

// Through httputil.ReverseProxy, as httpapi forwards: many requests at
// once, each answered with its own body.
func TestTransportUnderReverseProxy(t *testing.T) {
	addr, _, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}))
	target, _ := url.Parse("http://" + addr)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }, Transport: NewTransport()}
	front := httptest.NewServer(rp)
	defer front.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				path, body := fmt.Sprintf("/g%d/r%d", g, i), fmt.Sprintf("b%d", i)
				resp, err := http.Post(front.URL+path, "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := path + ":" + body; string(b) != want {
					errs <- fmt.Errorf("got %q, want %q", b, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A server that answers before it has read a large request body (a 413,
// say) and closes: the answer reaches the caller, not the error of the
// body's write.
func TestTransportEarlyAnswerToLargeBody(t *testing.T) {
	addr, _, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too large")
	}))
	c := &http.Client{Transport: NewTransport(), Timeout: 10 * time.Second}
	for _, size := range []int64{64 << 20, -1} {
		body := io.LimitReader(zeros{}, 64<<20)
		req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/kv/big", body)
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT of 64 MiB (Content-Length %d): %v, want the server's 413", size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too large" {
			t.Fatalf("PUT of 64 MiB (Content-Length %d): %d %q, want 413 %q", size, resp.StatusCode, b, "too large")
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A large body (written beside the wait for the answer) that the server
// reads whole: the answer comes, and the connection is used again.
func TestTransportLargeBodyReuse(t *testing.T) {
	addr, conns, _ := muxServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	c := &http.Client{Transport: NewTransport(), Timeout: 10 * time.Second}
	for i := range 3 {
		req, _ := http.NewRequest("PUT", "http://"+addr+"/x", io.LimitReader(zeros{}, 4<<20))
		if i == 1 {
			req.ContentLength = -1 // chunked
		} else {
			req.ContentLength = 4 << 20
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "4194304" {
			t.Fatalf("PUT %d of 4 MiB: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 large PUTs opened %d connections, want 1", n)
	}
}
