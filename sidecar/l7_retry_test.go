package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend serves connections with fn, one goroutine each.
func rawBackend(t *testing.T, fn func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// answer reads one request from br and answers 200 with name (and the
// request body) on a keep-alive response.
func answer(c net.Conn, br *bufio.Reader, name string) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	body, _ := io.ReadAll(req.Body)
	out := name
	if len(body) > 0 {
		out += ":" + string(body)
	}
	n := len(out)
	if req.Method == "HEAD" {
		out = ""
	}
	_, err = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n%s", name, n, out)
	return err == nil
}

func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An instance that accepts and closes without answering (an app stopped
// behind its still-running sidecar) must not fail idempotent requests:
// they go to another instance.
func TestL7RetryNoResponse(t *testing.T) {
	env := newEnv(t)
	var closed atomic.Int64
	// Closes at once (the sidecar could not reach its app).
	atOnce := rawBackend(t, func(c *net.TCPConn) { closed.Add(1) })
	// Reads the request, then closes (EOF).
	afterRead := rawBackend(t, func(c *net.TCPConn) {
		http.ReadRequest(bufio.NewReader(c))
		closed.Add(1)
	})
	// Reads the request, then resets the connection.
	reset := rawBackend(t, func(c *net.TCPConn) {
		http.ReadRequest(bufio.NewReader(c))
		c.SetLinger(0)
		closed.Add(1)
	})
	good := newHTTPBackend(t, "good")
	env.src.set("api", entry("api", "o", "n1", atOnce), entry("api", "r", "n2", afterRead),
		entry("api", "x", "n3", reset), entry("api", "g", "n4", good.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", MaxAttempts: 4, Outlier: OutlierConfig{Disabled: true}})
	c := httpClient()
	for i := 0; i < 12; i++ {
		for _, m := range []string{"GET", "HEAD", "DELETE"} {
			code, body := do(t, c, m, "http://"+addr+"/", "")
			if code != 200 || m != "HEAD" && body != "good" {
				t.Fatalf("%s %d: %d %q; want good after retries", m, i, code, body)
			}
		}
		// A small body is held and sent again.
		if code, body := do(t, c, "PUT", "http://"+addr+"/", "data"); code != 200 || body != "good:data" {
			t.Fatalf("PUT %d: %d %q", i, code, body)
		}
	}
	if closed.Load() < 12 {
		t.Errorf("the closing instances were tried %d times", closed.Load())
	}
	if r := counter(t, env.m.metrics.cluster("api").retries); r == 0 {
		t.Error("no retries counted")
	}
	// POST is not idempotent: the upstream may have acted on it.
	saw502 := false
	for i := 0; i < 8; i++ {
		code, body := do(t, c, "POST", "http://"+addr+"/", "x")
		if code == 502 && strings.Contains(body, "no response") {
			saw502 = true
		}
	}
	if !saw502 {
		t.Error("POST sent again after a connection closed without a response")
	}
}

// An upstream closing an idle keep-alive connection races with the request
// sent on it; idempotent requests are sent again on another connection
// (a single instance: this is not a failure of the instance).
func TestL7RetryIdleClosedKeepAlive(t *testing.T) {
	for _, mode := range []string{"closed-before", "closed-on-arrival"} {
		t.Run(mode, func(t *testing.T) {
			env := newEnv(t)
			var raced atomic.Int64
			addr := rawBackend(t, func(c *net.TCPConn) {
				br := bufio.NewReader(c)
				if !answer(c, br, "a") {
					return
				}
				// One request per connection, then the idle
				// timeout fires.
				if mode == "closed-on-arrival" {
					// ... just as the next request arrives: it is
					// left unread, the close sends a reset.
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := br.Peek(1); err == nil {
						raced.Add(1)
					}
					c.SetLinger(0)
				}
			})
			env.src.set("api", entry("api", "a", "n1", addr))
			up := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
			c := httpClient()
			for i := 0; i < 10; i++ {
				for _, m := range []string{"GET", "HEAD", "OPTIONS", "DELETE"} {
					if code, _ := do(t, c, m, "http://"+up+"/", ""); code != 200 {
						t.Fatalf("%s %d: %d", m, i, code)
					}
				}
				if code, body := do(t, c, "PUT", "http://"+up+"/", "data"); code != 200 || body != "a:data" {
					t.Fatalf("PUT %d: %d %q", i, code, body)
				}
				if mode == "closed-before" {
					// Let the FIN arrive before the next request.
					time.Sleep(5 * time.Millisecond)
				}
			}
			if mode == "closed-on-arrival" && raced.Load() < 10 {
				t.Errorf("only %d requests met a connection closing on arrival", raced.Load())
			}
			if n := counter(t, env.m.metrics.cluster("api").connectFailures); n != 0 {
				t.Errorf("connect failures counted: %v", n)
			}
		})
	}
}

// An error answer to HEAD has no body: the next response on the connection
// must start where the client expects it.
func TestL7ErrorToHEADHasNoBody(t *testing.T) {
	env := newEnv(t)
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, m := range []string{"HEAD", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || m == "GET" && !strings.Contains(string(body), "no healthy instance") {
			t.Fatalf("%s: %d %q", m, resp.StatusCode, body)
		}
	}
}

// The compose fault: an app stopped behind its still-running sidecar. The
// sidecar (an L4 listener of another Manager) accepts, cannot reach the
// app, and closes; the ingress (L7) sends the GET to another instance.
func TestL7RetryStoppedAppBehindSidecar(t *testing.T) {
	side := newEnv(t)
	side.src.set("web", entry("web", "w2", "n2", fmt.Sprintf("127.0.0.1:%d", freeClosedPort(t))))
	sidecarAddr := side.upstream(Upstream{DestinationName: "web", ConnectTimeout: time.Second})
	good := newHTTPBackend(t, "web1")
	env := newEnv(t)
	env.src.set("web", entry("web", "w1", "n1", good.addr()), entry("web", "w2", "n2", sidecarAddr))
	addr := env.upstream(Upstream{DestinationName: "web", Protocol: "http", Outlier: OutlierConfig{Disabled: true}})
	c := httpClient()
	for i := 0; i < 20; i++ {
		if code, body := do(t, c, "GET", "http://"+addr+"/", ""); code != 200 || body != "web1" {
			t.Fatalf("GET %d: %d %q", i, code, body)
		}
	}
	if r := counter(t, env.m.metrics.cluster("web").retries); r < 5 {
		t.Errorf("retries = %v; the stopped instance was not tried", r)
	}
}

// freeClosedPort is a port nothing listens on (connections are refused).
func freeClosedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}
