package sidecar

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

func TestL7Basics(t *testing.T) {
	env := newEnv(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c := httpClient()
	code, body, hdr := get(t, c, "http://"+addr+"/x/y?z=1", "X-Forwarded-For", "10.1.2.3")
	if code != 200 || body != "a" || hdr.Get("X-Backend") != "a" {
		t.Fatalf("got %d %q %v", code, body, hdr)
	}
	last := *a.last.Load()
	if got := last.Get("X-Forwarded-For"); got != "10.1.2.3, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the client appended", got)
	}
	if got := last.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := last.Get("X-Path"); got != "/x/y" {
		t.Errorf("path = %q", got)
	}
	// Keep-alive: many requests, few connections to the backend.
	for i := 0; i < 50; i++ {
		if code, body, _ := get(t, c, "http://"+addr+"/"); code != 200 || body != "a" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := counter(t, env.m.metrics.cluster("api").total); n > 3 {
		t.Errorf("%v upstream connections for 51 sequential requests; want keep-alive", n)
	}
	// POST with a body, chunked and with a length.
	resp, err := c.Post("http://"+addr+"/p", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a:hello" {
		t.Errorf("POST: %q", b)
	}
	resp, err = c.Post("http://"+addr+"/p", "text/plain", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a:chunked" {
		t.Errorf("chunked POST: %q", b)
	}
	if n := counter(t, env.m.metrics.requests.WithLabelValues("app-sidecar-proxy/api", "app-sidecar-proxy/api", "200")); n != 53 {
		t.Errorf("requests_total{code=200} = %v, want 53", n)
	}
}

func TestL7LargeAndChunkedResponses(t *testing.T) {
	env := newEnv(t)
	big := strings.Repeat("0123456789", 300_000)
	srv := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, big)
		case "/chunked":
			for i := 0; i < 5; i++ {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/nocontent":
			w.WriteHeader(204)
		}
	})
	env.src.set("api", entry("api", "api1", "n1", srv))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c := httpClient()
	if _, body, _ := get(t, c, "http://"+addr+"/big"); body != big {
		t.Errorf("big body: %d bytes, want %d", len(body), len(big))
	}
	if _, body, _ := get(t, c, "http://"+addr+"/chunked"); body != "part0;part1;part2;part3;part4;" {
		t.Errorf("chunked: %q", body)
	}
	resp, err := c.Head("http://" + addr + "/head")
	if err != nil || resp.ContentLength != 1000 {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	if code, body, _ := get(t, c, "http://"+addr+"/nocontent"); code != 204 || body != "" {
		t.Errorf("204: %d %q", code, body)
	}
	// An HTTP/1.0 client gets a chunked response decoded, ending at close.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /chunked HTTP/1.0\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	if !strings.HasSuffix(string(raw), "\r\n\r\npart0;part1;part2;part3;part4;") || strings.Contains(strings.ToLower(string(raw)), "transfer-encoding") {
		t.Errorf("HTTP/1.0 response:\n%s", raw)
	}
}

func newRawHTTPServer(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestL7NoInstance503(t *testing.T) {
	env := newEnv(t)
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	code, body, _ := get(t, httpClient(), "http://"+addr+"/")
	if code != 503 || !strings.Contains(body, "no healthy instance of api") {
		t.Fatalf("got %d %q", code, body)
	}
	if n := counter(t, env.m.metrics.noInstance.WithLabelValues("app-sidecar-proxy/api", "app-sidecar-proxy/api", "api")); n != 1 {
		t.Errorf("no_instance_total = %v", n)
	}
}

func TestL7RetryOn503AndConnectFailure(t *testing.T) {
	env := newEnv(t)
	bad, good := newHTTPBackend(t, "bad"), newHTTPBackend(t, "good")
	bad.code.Store(503)
	dead := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t))
	env.src.set("api", entry("api", "b", "n1", bad.addr()), entry("api", "g", "n2", good.addr()), entry("api", "d", "n3", dead))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", Outlier: OutlierConfig{Disabled: true}})
	c := httpClient()
	for i := 0; i < 9; i++ {
		code, body, _ := get(t, c, "http://"+addr+"/")
		if code != 200 || body != "good" {
			t.Fatalf("GET %d: %d %q; want good after retries", i, code, body)
		}
	}
	if bad.hits.Load() == 0 {
		t.Error("the 503 backend was never tried")
	}
	if r := counter(t, env.m.metrics.cluster("api").retries); r == 0 {
		t.Error("no retries counted")
	}
	// POST is not idempotent: a 503 comes back as it is.
	sawBad := false
	for i := 0; i < 6; i++ {
		resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 && resp.Header.Get("X-Backend") == "bad" {
			sawBad = true
		}
	}
	if !sawBad {
		t.Error("POST retried on 503")
	}
}

func TestL7RetryBudget(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MinRetries = 1; c.RetryBudgetPercent = 1 })
	bad := newHTTPBackend(t, "bad")
	bad.code.Store(503)
	// A slow 503: several requests in flight at once want a retry.
	slow := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(503)
	})
	env.src.set("api", entry("api", "s", "n1", slow), entry("api", "b", "n2", bad.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", Balancer: "p2c", Outlier: OutlierConfig{Disabled: true}})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, httpClient(), "http://"+addr+"/")
		}()
	}
	wg.Wait()
	if n := counter(t, env.m.metrics.cluster("api").retryOverflows); n == 0 {
		t.Error("retry budget of 1 never exhausted by 8 concurrent failing requests")
	}
}

func TestL7Ejection5xx(t *testing.T) {
	env := newEnv(t)
	bad, good := newHTTPBackend(t, "bad"), newHTTPBackend(t, "good")
	bad.code.Store(500)
	env.src.set("api", entry("api", "b", "n1", bad.addr()), entry("api", "g", "n2", good.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", Outlier: OutlierConfig{
		MaxFailures: 3, BaseEjectionTime: 400 * time.Millisecond, MaxEjectionPercent: 50}})
	c := httpClient()
	for i := 0; i < 10; i++ {
		get(t, c, "http://"+addr+"/")
	}
	if e := counter(t, env.m.metrics.cluster("api").ejections); e != 1 {
		t.Fatalf("ejections = %v, want 1", e)
	}
	hits := bad.hits.Load()
	for i := 0; i < 10; i++ {
		if code, _, _ := get(t, c, "http://"+addr+"/"); code != 200 {
			t.Fatalf("got %d while bad is ejected", code)
		}
	}
	if bad.hits.Load() != hits {
		t.Error("ejected instance got requests")
	}
	bad.code.Store(0)
	waitFor(t, "bad back after its ejection", func() error {
		get(t, c, "http://"+addr+"/")
		if bad.hits.Load() == hits {
			return fmt.Errorf("no request to it yet")
		}
		return nil
	})
}

func TestL7Limits(t *testing.T) {
	env := newEnv(t)
	release := make(chan struct{})
	slow := newRawHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "slow")
	})
	env.src.set("api", entry("api", "s", "n1", slow))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", Limits: Limits{MaxConcurrentRequests: 2}})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body, _ := get(t, httpClient(), "http://"+addr+"/"); code != 200 || body != "slow" {
				t.Errorf("in-limit request: %d %q", code, body)
			}
		}()
	}
	waitFor(t, "two in flight", func() error {
		if n := env.m.clustersNamed("api")[0].requests.Load(); n != 2 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	code, body, _ := get(t, httpClient(), "http://"+addr+"/")
	if code != 503 || !strings.Contains(body, "max_concurrent_requests") {
		t.Errorf("third request: %d %q, want 503 naming the limit", code, body)
	}
	close(release)
	wg.Wait()
}

func TestL7DrainOnDeregisterKeepsServing(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	env.src.set("api", entry("api", "a", "n1", a.addr()), entry("api", "b", "n2", b.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c := httpClient()
	for i := 0; i < 4; i++ {
		get(t, c, "http://"+addr+"/")
	}
	env.src.set("api", entry("api", "b", "n2", b.addr()))
	waitFor(t, "only b", func() error {
		for i := 0; i < 4; i++ {
			if _, body, _ := get(t, c, "http://"+addr+"/"); body != "b" {
				return fmt.Errorf("got %q", body)
			}
		}
		return nil
	})
}

func TestL7HashOnHeader(t *testing.T) {
	env := newEnv(t)
	var bs []catalogEntry
	for _, n := range []string{"a", "b", "c", "d"} {
		bs = append(bs, entry("api", n, "n-"+n, newHTTPBackend(t, n).addr()))
	}
	env.src.set("api", bs...)
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http", Balancer: "ring_hash", HashOn: "header:X-User"})
	c := httpClient()
	owners := map[string]string{}
	for i := 0; i < 40; i++ {
		user := fmt.Sprintf("user%d", i%10)
		_, body, _ := get(t, c, "http://"+addr+"/", "X-User", user)
		if prev, ok := owners[user]; ok && prev != body {
			t.Fatalf("%s went to %s, then %s", user, prev, body)
		}
		owners[user] = body
	}
	spread := map[string]bool{}
	for _, o := range owners {
		spread[o] = true
	}
	if len(spread) < 2 {
		t.Errorf("10 users all on %v", spread)
	}
	// Removing one instance moves only its users.
	var kept []catalogEntry
	for _, e := range bs {
		if e.Service.ID != "a" {
			kept = append(kept, e)
		}
	}
	env.src.set("api", kept...)
	waitFor(t, "a gone", func() error {
		for i := 0; i < 10; i++ {
			if _, body, _ := get(t, c, "http://"+addr+"/", "X-User", fmt.Sprintf("user%d", i)); body == "a" {
				return fmt.Errorf("still sent to a")
			}
		}
		return nil
	})
	for u, o := range owners {
		if o == "a" {
			continue
		}
		if _, body, _ := get(t, c, "http://"+addr+"/", "X-User", u); body != o {
			t.Errorf("%s moved from %s to %s when a left", u, o, body)
		}
	}
}

func TestL7H2CPassThrough(t *testing.T) {
	env := newEnv(t)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s", r.Proto)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	env.src.set("api", entry("api", "a", "n1", ln.Addr().String()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	tr := &http.Transport{Protocols: &protos, TLSClientConfig: &tls.Config{}}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "proto=HTTP/2.0" {
		t.Errorf("got %q", b)
	}
}

func TestL7Upgrade(t *testing.T) {
	env := newEnv(t)
	// A backend that upgrades to an echo protocol.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Header.Get("Upgrade") != "echo" || !strings.EqualFold(req.Header.Get("Connection"), "upgrade") {
					fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
					return
				}
				fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				io.Copy(c, br)
			}()
		}
	}()
	env.src.set("api", entry("api", "a", "n1", ln.Addr().String()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(c, "over the tunnel\n")
	if line, err := br.ReadString('\n'); err != nil || line != "over the tunnel\n" {
		t.Fatalf("tunnel echo: %q %v", line, err)
	}
}

func TestL7BadRequests(t *testing.T) {
	env := newEnv(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	for _, tc := range []struct{ name, req, want string }{
		{"garbage", "HELLO\r\n\r\n", "400"},
		{"both framings", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400"},
		{"bad length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", "400"},
		{"huge head", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n", "431"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(resp.StatusCode); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if a.hits.Load() != 0 {
		t.Errorf("bad requests reached the backend")
	}
}

func TestShutdownDrainsIdleKeepAlive(t *testing.T) {
	env := newEnv(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c := httpClient()
	get(t, c, "http://"+addr+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := env.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with only an idle keep-alive connection", d)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after Close")
	}
}
