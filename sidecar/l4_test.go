package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

func countNames(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		got[name(t, addr)]++
	}
	return got
}

func TestL4RoundRobin(t *testing.T) {
	env := newEnv(t)
	a, b, c := newTCPBackend(t, "a"), newTCPBackend(t, "b"), newTCPBackend(t, "c")
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()), entry("api", "api3", "n3", c.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	got := countNames(t, addr, 30)
	for _, n := range []string{"a", "b", "c"} {
		if got[n] != 10 {
			t.Errorf("round robin: %s got %d of 30, want 10 (all: %v)", n, got[n], got)
		}
	}
}

func TestL4FollowsCatalog(t *testing.T) {
	env := newEnv(t)
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	if n := name(t, addr); n != "a" {
		t.Fatalf("got %q, want a", n)
	}
	// An established connection to a stays through the change.
	_, held := dialName(t, addr)
	defer held.Close()
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()))
	waitFor(t, "b gets traffic", func() error {
		if got := countNames(t, addr, 4); got["b"] == 0 {
			return fmt.Errorf("names %v", got)
		}
		return nil
	})
	// a goes critical: no new connections to it; the held one still works.
	e := entry("api", "api1", "n1", a.addr(), critical)
	env.src.set("api", e, entry("api", "api2", "n2", b.addr()))
	waitFor(t, "only b", func() error {
		if got := countNames(t, addr, 4); got["b"] != 4 {
			return fmt.Errorf("names %v", got)
		}
		return nil
	})
	echo(t, held, "still here")
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg+"\n" {
		t.Fatalf("echo: got %q, %v", buf, err)
	}
}

func TestL4RetryOnConnectFailure(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	dead := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t)) // nothing listens
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "dead", "n2", dead))
	addr := env.upstream(Upstream{DestinationName: "api", Outlier: OutlierConfig{Disabled: true}})
	for i := 0; i < 10; i++ {
		if n := name(t, addr); n != "a" {
			t.Fatalf("connection %d: got %q, want a (the dead instance retried on a)", i, n)
		}
	}
	c := env.m.metrics.cluster("api")
	if f := counter(t, c.connectFailures); f < 4 {
		t.Errorf("connect failures = %v, want about 5", f)
	}
	if r := counter(t, c.retries); r < 4 {
		t.Errorf("retries = %v, want about 5", r)
	}
}

func TestL4EjectionAndReturn(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	// Reserve a port for b, start b only later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bAddr := ln.Addr().String()
	ln.Close()
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", bAddr))
	addr := env.upstream(Upstream{DestinationName: "api", Outlier: OutlierConfig{
		MaxFailures: 2, BaseEjectionTime: 300 * time.Millisecond, MaxEjectionPercent: 50}})
	met := env.m.metrics.cluster("api")
	for i := 0; i < 6; i++ {
		if n := name(t, addr); n != "a" {
			t.Fatalf("got %q", n)
		}
	}
	if e := counter(t, met.ejections); e != 1 {
		t.Fatalf("ejections = %v, want 1", e)
	}
	failsAtEjection := counter(t, met.connectFailures)
	// While ejected, b is not tried.
	for i := 0; i < 4; i++ {
		name(t, addr)
	}
	if f := counter(t, met.connectFailures); f != failsAtEjection {
		t.Errorf("connect failures went %v → %v while b was ejected", failsAtEjection, f)
	}
	// b comes up: after the ejection time it gets traffic again.
	b := &tcpBackend{name: "b"}
	ln, err = net.Listen("tcp", bAddr)
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", bAddr, err)
	}
	b.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "b\n")
			c.Close()
		}
	}()
	waitFor(t, "b back in rotation", func() error {
		if got := countNames(t, addr, 4); got["b"] == 0 {
			return fmt.Errorf("names %v", got)
		}
		return nil
	})
}

func TestL4MaxEjectionPercent(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	var ents = []string{a.addr()}
	for i := 0; i < 3; i++ {
		ents = append(ents, fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t)))
	}
	var es = nil2(ents)
	env.src.set("api", es...)
	addr := env.upstream(Upstream{DestinationName: "api", MaxAttempts: 4, Outlier: OutlierConfig{
		MaxFailures: 1, BaseEjectionTime: time.Minute, MaxEjectionPercent: 50}})
	for i := 0; i < 12; i++ {
		if n := name(t, addr); n != "a" {
			t.Fatalf("got %q", n)
		}
	}
	if e := counter(t, env.m.metrics.cluster("api").ejections); e != 2 {
		t.Errorf("ejections = %v, want 2 (50%% of 4 instances)", e)
	}
}

func nil2(addrs []string) (out []catalogEntry) {
	for i, a := range addrs {
		out = append(out, entry("api", fmt.Sprintf("api%d", i), fmt.Sprintf("n%d", i), a))
	}
	return out
}

func TestL4Limits(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", ConnectTimeout: 300 * time.Millisecond,
		Limits: Limits{MaxConnections: 2, MaxPendingRequests: 1}})
	_, c1 := dialName(t, addr)
	_, c2 := dialName(t, addr)
	if c1 == nil || c2 == nil {
		t.Fatal("first two connections failed")
	}
	// The third waits (pending) and gets through once one closes.
	got3 := make(chan string, 1)
	go func() {
		n, c := dialName(t, addr)
		if c != nil {
			c.Close()
		}
		got3 <- n
	}()
	time.Sleep(50 * time.Millisecond) // let it queue; the assertion does not depend on it
	c1.Close()
	if n := <-got3; n != "a" {
		t.Errorf("pending connection: got %q, want a", n)
	}
	// With two open and one pending, a fourth is refused.
	_, c3 := dialName(t, addr)
	defer c3.Close()
	pend := make(chan struct{})
	go func() {
		defer close(pend)
		n, c := dialName(t, addr) // pending, times out after 300ms
		if c != nil {
			c.Close()
		}
		_ = n
	}()
	waitFor(t, "one pending", func() error {
		if p := env.m.clustersNamed("api")[0].conns.pending.Load(); p != 1 {
			return fmt.Errorf("pending = %d", p)
		}
		return nil
	})
	if n := name(t, addr); n != "" {
		t.Errorf("fourth connection got %q, want refused", n)
	}
	<-pend
	c2.Close()
	if o := counter(t, env.m.metrics.cluster("api").connOverflows); o < 1 {
		t.Errorf("overflows = %v", o)
	}
}

func TestL4DrainOnDeregister(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.DrainTimeout = 500 * time.Millisecond })
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	held := map[string]net.Conn{}
	for len(held) < 2 {
		n, c := dialName(t, addr)
		if held[n] != nil {
			c.Close()
			continue
		}
		held[n] = c
	}
	defer held["a"].Close()
	defer held["b"].Close()
	env.src.set("api", entry("api", "api2", "n2", b.addr()))
	start := time.Now()
	// a's connection works during the drain, and is closed after it.
	echo(t, held["a"], "draining")
	held["a"].SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := held["a"].Read(make([]byte, 1))
	if err == nil {
		t.Fatal("connection to the removed instance still open")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("closed after %v, before the drain time", d)
	}
	// b's connection was never touched.
	echo(t, held["b"], "healthy")
}

func TestL4HalfClose(t *testing.T) {
	env := newEnv(t)
	// The backend reads to EOF, then answers with what it read.
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
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got %d bytes: %s", len(b), b)
			}()
		}
	}()
	env.src.set("api", entry("api", "api1", "n1", ln.Addr().String()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 5 bytes: hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestL4NoInstanceClosesAndListenerStays(t *testing.T) {
	env := newEnv(t)
	addr := env.upstream(Upstream{DestinationName: "api", ConnectTimeout: 200 * time.Millisecond})
	if n := name(t, addr); n != "" {
		t.Fatalf("got %q with no instance", n)
	}
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	waitFor(t, "a reachable", func() error {
		if n := name(t, addr); n != "a" {
			return fmt.Errorf("got %q", n)
		}
		return nil
	})
}

func TestL4MeshAddressing(t *testing.T) {
	env := newEnv(t)
	app, side := newTCPBackend(t, "app"), newTCPBackend(t, "sidecar")
	env.src.set("api", entry("api", "api1", "n1", app.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	if n := name(t, addr); n != "app" {
		t.Fatalf("got %q, want app (no sidecar yet)", n)
	}
	px := entry("api-sidecar-proxy", "api1-sidecar-proxy", "n1", side.addr())
	px.Service.Kind = "connect-proxy"
	px.Service.Proxy = []byte(`{"DestinationServiceName":"api","DestinationServiceID":"api1"}`)
	env.src.set("api-sidecar-proxy", px)
	waitFor(t, "traffic goes to the sidecar", func() error {
		if n := name(t, addr); n != "sidecar" {
			return fmt.Errorf("got %q", n)
		}
		return nil
	})
}

func TestL4IdleTimeout(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", IdleTimeout: 300 * time.Millisecond})
	_, c := dialName(t, addr)
	defer c.Close()
	// Activity keeps it open past the timeout...
	for i := 0; i < 4; i++ {
		time.Sleep(150 * time.Millisecond)
		echo(t, c, "ping")
	}
	// ...silence closes it.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v of silence, want about 300ms", d)
	}
}

func TestInboundForwardsToLocalApp(t *testing.T) {
	env := newEnv(t)
	app := newTCPBackend(t, "app")
	_, port, _ := net.SplitHostPort(app.addr())
	var lp int
	fmt.Sscan(port, &lp)
	bind := tu.FreePort(t)
	err := env.m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "web-sidecar-proxy",
		Inbound: &Inbound{BindAddress: "127.0.0.1", BindPort: bind, LocalServicePort: lp}}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := name(t, fmt.Sprintf("127.0.0.1:%d", bind)); n != "app" {
		t.Fatalf("got %q", n)
	}
}

func TestL4LargeStream(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	_, c := dialName(t, addr)
	defer c.Close()
	const size = 32 << 20
	go func() {
		w := bufio.NewWriter(c)
		io.CopyN(w, strings.NewReader(strings.Repeat("x", 1<<20)+""), 1<<20)
		for i := 1; i < size>>20; i++ {
			io.CopyN(w, strings.NewReader(strings.Repeat("y", 1<<20)), 1<<20)
		}
		w.Flush()
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != size {
		t.Fatalf("echoed %d bytes, %v; want %d", n, err, size)
	}
}

// Idle L4 connections hold no splice pipes: only their sockets. (Splicing
// from the first byte parks each direction in splice holding a pipe — two
// more fds per direction — which would exhaust a container's fd limit with
// a few hundred idle connections.)
func TestL4IdleConnectionsHoldNoPipes(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	name(t, addr) // warm up: the cluster and its first connection
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(ents)
	}
	before := countFDs()
	const n = 20
	var conns []net.Conn
	for i := 0; i < n; i++ {
		_, c := dialName(t, addr)
		if c == nil {
			t.Fatal("connection failed")
		}
		echo(t, c, "some traffic first")
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	waitFor(t, "backend sees every connection", func() error {
		if o := a.open.Load(); o < n {
			return fmt.Errorf("%d open", o)
		}
		return nil
	})
	// Per connection, in this process: the test's client socket, the
	// proxy's accepted and upstream sockets, the backend's socket.
	if added := countFDs() - before; added > 4*n+4 {
		t.Errorf("%d idle connections added %d fds, want at most %d (4 sockets each)", n, added, 4*n+4)
	}
}

// A bulk transfer switches its direction to splice (io.Copy between the two
// *net.TCPConn); small exchanges do not.
func TestL4BulkUsesSplice(t *testing.T) {
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	_, c := dialName(t, addr)
	defer c.Close()
	before := splicedDirections.Load()
	echo(t, c, "small talk")
	if n := splicedDirections.Load(); n != before {
		t.Fatalf("a small exchange switched %d directions to splice", n-before)
	}
	// 256 KiB one way, echoed back: both directions see full reads.
	go io.Copy(io.Discard, c)
	if _, err := c.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both directions spliced", func() error {
		if n := splicedDirections.Load() - before; n < 2 {
			return fmt.Errorf("%d spliced", n)
		}
		return nil
	})
}

// A listener removed by Apply stops accepting at once, lets its
// connections drain, and Close cuts the drain short.
func TestRemovedListenerDrains(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.DrainTimeout = time.Minute })
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	_, held := dialName(t, addr)
	defer held.Close()
	if err := env.m.Apply(context.Background(), Spec{}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("removed listener still accepts")
	}
	echo(t, held, "draining but alive")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	env.m.Close(ctx)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("connection of the removed listener still open after Close")
	}
}
