//go:build linux

package sidecar

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

// loopOf returns the event loop serving the listener on addr (nil when the
// net-package path serves it).
func (env *testEnv) loopOf(addr string) *l4loop {
	env.m.mu.Lock()
	defer env.m.mu.Unlock()
	for _, l := range env.m.listeners {
		if l.ln.Addr().String() == addr {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.loop
		}
	}
	return nil
}

// loopConns is how many connections the loop holds (read on the loop).
func loopConns(t *testing.T, lp *l4loop) int {
	n := make(chan int, 1)
	if !lp.post(func() { n <- len(lp.conns) }) {
		return 0
	}
	select {
	case k := <-n:
		return k
	case <-time.After(5 * time.Second):
		t.Fatal("loop does not answer")
		return 0
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

func loopEnv(t *testing.T, tweak ...func(*Config)) (*testEnv, func(Upstream) string) {
	t.Helper()
	if !l4LoopEnabled {
		t.Skip("the L4 event loop is switched off")
	}
	env := newEnv(t, tweak...)
	return env, func(u Upstream) string {
		addr := env.upstream(u)
		waitFor(t, "the tcp listener served by the event loop", func() error {
			if env.loopOf(addr) == nil {
				return errors.New("no loop")
			}
			return nil
		})
		return addr
	}
}

// A backend's handler per connection, on its own listener.
func newFuncBackend(t *testing.T, f func(c *net.TCPConn)) string {
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
				f(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// The server half-closes first: the client reads its answer and EOF, and
// can still send; the server reads that to EOF (the client's half-close).
func TestL4LoopHalfCloseFromServer(t *testing.T) {
	env, up := loopEnv(t)
	got := make(chan string, 1)
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "server says bye")
		c.CloseWrite()
		rest, err := io.ReadAll(c)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(rest)
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	answer, err := io.ReadAll(c) // to EOF: the server's half-close passed on
	if err != nil || string(answer) != "server says bye" {
		t.Fatalf("got %q, %v", answer, err)
	}
	// The other direction still works.
	for i := 0; i < 3; i++ {
		if _, err := fmt.Fprintf(c, "late %d;", i); err != nil {
			t.Fatalf("write after the server's half-close: %v", err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "late 0;late 1;late 2;" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not get the client's data and EOF")
	}
	// Both directions done: the proxy closes both; the client sees EOF.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after both ends: %v, want EOF", err)
	}
}

// The client half-closes first, with data in flight both ways.
func TestL4LoopHalfCloseFromClient(t *testing.T) {
	env, up := loopEnv(t)
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Echo upper-cased until EOF, then a trailer, then close.
		buf := make([]byte, 1000)
		for {
			n, err := c.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] >= 'a' && buf[i] <= 'z' {
					buf[i] -= 'a' - 'A'
				}
			}
			c.Write(buf[:n])
			if err != nil {
				break
			}
		}
		fmt.Fprint(c, "|end")
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api"})
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "hello world")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "HELLO WORLD|end" {
			t.Fatalf("round %d: got %q, %v", i, got, err)
		}
	}
}

// A client that half-closes at once, before the proxy's connect to the
// upstream has completed (often before the proxy accepts): the upstream
// still sees the EOF, and answers.
func TestL4LoopHalfCloseBeforeConnect(t *testing.T) {
	env, up := loopEnv(t)
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "read %d bytes", n)
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api"})
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "read 0 bytes" {
			t.Fatalf("round %d: got %q, %v", i, got, err)
		}
	}
}

// A server that speaks first (SMTP, MySQL): the loop holds back the ACK
// that ends its handshake to the upstream, to ride on the client's first
// bytes; with none coming it must send it at once, or the server would not
// see the connection until the delayed ACK (200 ms).
func TestL4LoopServerSpeaksFirst(t *testing.T) {
	env, up := loopEnv(t)
	b := newFuncBackend(t, func(c *net.TCPConn) {
		fmt.Fprint(c, "220 ready\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
	})
	env.src.set("db", entry("db", "db1", "n1", b))
	addr := up(Upstream{DestinationName: "db"})
	var slowest time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || line != "220 ready\r\n" {
			t.Fatalf("round %d: got %q, %v", i, line, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	// The delayed ACK takes 200 ms; a loaded machine well under that.
	if slowest > 150*time.Millisecond {
		t.Errorf("the slowest banner took %v: the handshake's ACK was held back", slowest)
	}
}

// Keep-alive HTTP traffic from net/http through an L4 (tcp) listener: the
// loop must not miss a wake-up. (Parking without polling first after
// RawConn.Read's prepareRead, which drops a readiness Go's poller saw since
// the loop's last poll, stalled it within a few hundred requests.)
func TestL4LoopParkNoLostWakeup(t *testing.T) {
	env, up := loopEnv(t)
	a := newHTTPBackend(t, "a")
	env.src.set("api", entry("api", "a", "n1", a.addr()))
	addr := up(Upstream{DestinationName: "api"})
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 5000; i++ {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// tcpMemMax is the maximum of a tcp_rmem or tcp_wmem sysctl.
func tcpMemMax(t *testing.T, name string) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
	if err != nil {
		t.Skipf("no /proc/sys/net/ipv4/%s (a Linux /proc is needed for the TCP buffer bound): %v", name, err)
	}
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("%s: %q", name, b)
	}
	return n
}

// pattern is the byte at offset i of the test streams.
func pattern(i int64) byte { return byte(i*7 + i>>11) }

func fillPattern(b []byte, off int64) {
	for i := range b {
		b[i] = pattern(off + int64(i))
	}
}

func checkPattern(b []byte, off int64) int {
	for i := range b {
		if b[i] != pattern(off+int64(i)) {
			return i
		}
	}
	return -1
}

// A large transfer to a slow reader: every byte arrives, in order, and the
// proxy does not buffer without bound (the sender is held back).
func TestL4LoopBackpressureSlowClient(t *testing.T) {
	env, up := loopEnv(t)
	// What the kernel may hold on the way, whatever the proxy does: the
	// backend's send buffer, the proxy's receive buffer from it (which
	// autotuning grows up to tcp_rmem's maximum, 32 MiB on some machines),
	// its pipe and its send buffer to the client. The stream is longer,
	// and the reader slow until the bound could be told from the whole.
	bound := int64(tcpMemMax(t, "tcp_rmem")+2*tcpMemMax(t, "tcp_wmem")) + 4<<20
	size := bound + 24<<20
	size -= size % (64 << 10)
	var sent atomic.Int64
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 64<<10)
		for off := int64(0); off < size; off += int64(len(buf)) {
			fillPattern(buf, off)
			n, err := c.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var got int64
	var maxAhead int64
	buf := make([]byte, 16<<10)
	slow := time.NewTicker(200 * time.Microsecond) // the reader's pace until past the bound
	defer slow.Stop()
	for {
		if got < size-16<<20 {
			<-slow.C
		}
		n, err := c.Read(buf)
		if i := checkPattern(buf[:n], got); i >= 0 {
			t.Fatalf("byte %d: got %d, want %d", got+int64(i), buf[i], pattern(got+int64(i)))
		}
		if a := sent.Load() - got; a > maxAhead {
			maxAhead = a
		}
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	if got != size {
		t.Fatalf("got %d bytes, want %d", got, size)
	}
	if maxAhead > bound {
		t.Errorf("the sender ran %d MiB ahead of the slow reader", maxAhead>>20)
	}
}

// The same toward a slow upstream: the client's data is held back, and
// arrives whole and in order.
func TestL4LoopBackpressureSlowUpstream(t *testing.T) {
	env, up := loopEnv(t)
	const size = 32 << 20
	result := make(chan error, 1)
	var received atomic.Int64
	b := newFuncBackend(t, func(c *net.TCPConn) {
		c.SetReadBuffer(64 << 10)
		c.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 8<<10)
		slow := time.NewTicker(200 * time.Microsecond)
		defer slow.Stop()
		var off int64
		for {
			if off < 4<<20 {
				<-slow.C
			}
			n, err := c.Read(buf)
			if i := checkPattern(buf[:n], off); i >= 0 {
				result <- fmt.Errorf("byte %d wrong", off+int64(i))
				return
			}
			off += int64(n)
			received.Store(off)
			if err == io.EOF {
				if off != size {
					result <- fmt.Errorf("upstream got %d bytes, want %d", off, size)
				} else {
					fmt.Fprint(c, "ok")
					result <- nil
				}
				return
			}
			if err != nil {
				result <- err
				return
			}
		}
	})
	env.src.set("api", entry("api", "api1", "n1", b))
	addr := up(Upstream{DestinationName: "api"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64<<10)
	var maxAhead int64
	for off := int64(0); off < size; off += int64(len(buf)) {
		fillPattern(buf, off)
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if a := off + int64(len(buf)) - received.Load(); a > maxAhead {
			maxAhead = a
		}
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("upstream did not finish")
	}
	if ans, err := io.ReadAll(c); err != nil || string(ans) != "ok" {
		t.Fatalf("answer %q, %v", ans, err)
	}
	if maxAhead > 24<<20 {
		t.Errorf("the client ran %d MiB ahead of the slow upstream", maxAhead>>20)
	}
}

// A refused connect is retried on another instance and counted; with the
// only live instance, every connection gets through.
func TestL4LoopConnectFailureRetry(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	dead1 := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t))
	dead2 := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t))
	env.src.set("api", entry("api", "d1", "n1", dead1), entry("api", "a", "n2", a.addr()), entry("api", "d2", "n3", dead2))
	addr := up(Upstream{DestinationName: "api", MaxAttempts: 3, Outlier: OutlierConfig{Disabled: true}})
	for i := 0; i < 12; i++ {
		n, c := dialName(t, addr)
		if n != "a" {
			t.Fatalf("connection %d: got %q, want a", i, n)
		}
		echo(t, c, "through")
		c.Close()
	}
	m := env.m.metrics.cluster("api")
	if f := counter(t, m.connectFailures); f < 6 {
		t.Errorf("connect failures = %v, want 8 (2 in 3 first picks on a dead one)", f)
	}
	if r := counter(t, m.retries); r != counter(t, m.connectFailures) {
		t.Errorf("retries = %v, connect failures = %v: want equal", r, counter(t, m.connectFailures))
	}
	// All instances dead: the client is closed, the failure logged.
	env.src.set("api", entry("api", "d1", "n1", dead1), entry("api", "d2", "n3", dead2))
	waitFor(t, "no instance reachable", func() error {
		if n := name(t, addr); n != "" {
			return fmt.Errorf("got %q", n)
		}
		return nil
	})
}

// Ejection through the loop: a dead instance is ejected after MaxFailures
// and not picked while ejected.
func TestL4LoopOutlierEjection(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	dead := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t))
	env.src.set("api", entry("api", "a", "n1", a.addr()), entry("api", "dead", "n2", dead))
	addr := up(Upstream{DestinationName: "api", Outlier: OutlierConfig{MaxFailures: 2, BaseEjectionTime: time.Minute, MaxEjectionPercent: 50}})
	for i := 0; i < 6; i++ {
		if n := name(t, addr); n != "a" {
			t.Fatalf("got %q", n)
		}
	}
	m := env.m.metrics.cluster("api")
	if e := counter(t, m.ejections); e != 1 {
		t.Fatalf("ejections = %v, want 1", e)
	}
	f := counter(t, m.connectFailures)
	for i := 0; i < 6; i++ {
		name(t, addr)
	}
	if f2 := counter(t, m.connectFailures); f2 != f {
		t.Errorf("the ejected instance was tried again (%v → %v failures)", f, f2)
	}
}

func TestL4LoopIdleTimeout(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := up(Upstream{DestinationName: "api", IdleTimeout: 300 * time.Millisecond})
	lp := env.loopOf(addr)
	_, quiet := dialName(t, addr)
	defer quiet.Close()
	_, busy := dialName(t, addr)
	defer busy.Close()
	start := time.Now()
	quiet.SetReadDeadline(time.Now().Add(10 * time.Second))
	closed := make(chan time.Duration, 1)
	go func() {
		quiet.Read(make([]byte, 1))
		closed <- time.Since(start)
	}()
	// busy talks every 100ms and stays open past the quiet one's end.
	var quietAfter time.Duration
	for quietAfter == 0 || time.Since(start) < quietAfter+300*time.Millisecond {
		echo(t, busy, "ping")
		select {
		case d := <-closed:
			quietAfter = d
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the idle connection was not closed")
		}
	}
	if quietAfter < 250*time.Millisecond || quietAfter > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about 300ms", quietAfter)
	}
	echo(t, busy, "still open")
	waitFor(t, "one connection left on the loop", func() error {
		if n := loopConns(t, lp); n != 1 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
}

// A deregistered instance's connections work through the drain and are
// closed after it; the accounting goes back to zero.
func TestL4LoopDrainOnDeregister(t *testing.T) {
	env, up := loopEnv(t, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()))
	addr := up(Upstream{DestinationName: "api"})
	lp := env.loopOf(addr)
	var toA []net.Conn
	var toB net.Conn
	for len(toA) < 3 || toB == nil {
		n, c := dialName(t, addr)
		switch {
		case n == "a" && len(toA) < 3:
			toA = append(toA, c)
		case n == "b" && toB == nil:
			toB = c
		default:
			c.Close()
		}
	}
	defer toB.Close()
	var ea *endpoint
	cl := env.m.clustersNamed("api")[0]
	cl.mu.Lock()
	ea = cl.all[a.addr()]
	cl.mu.Unlock()
	env.src.set("api", entry("api", "api2", "n2", b.addr()))
	start := time.Now()
	for _, c := range toA {
		echo(t, c, "draining")
	}
	for _, c := range toA {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection to the removed instance still open")
		}
		c.Close()
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the drain time", d)
	}
	echo(t, toB, "healthy")
	waitFor(t, "drained accounting", func() error {
		ea.mu.Lock()
		n := len(ea.conns)
		ea.mu.Unlock()
		if n != 0 || ea.active.Load() != 0 {
			return fmt.Errorf("endpoint a: %d tracked, %d active", n, ea.active.Load())
		}
		if k := loopConns(t, lp); k != 1 {
			return fmt.Errorf("%d connections on the loop, want 1", k)
		}
		return nil
	})
}

// Many connections at once, each with several exchanges; then the metrics
// agree with what was sent.
func TestL4LoopManyConnections(t *testing.T) {
	env, up := loopEnv(t)
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()))
	addr := up(Upstream{DestinationName: "api"})
	lp := env.loopOf(addr)
	const n, rounds = 200, 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var names [2]atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			nm, err := br.ReadString('\n')
			if err != nil {
				errs <- fmt.Errorf("name: %w", err)
				return
			}
			if nm == "a\n" {
				names[0].Add(1)
			} else {
				names[1].Add(1)
			}
			for r := 0; r < rounds; r++ {
				msg := fmt.Sprintf("conn %d round %d\n", i, r)
				if _, err := io.WriteString(c, msg); err != nil {
					errs <- err
					return
				}
				got, err := br.ReadString('\n')
				if err != nil || got != msg {
					errs <- fmt.Errorf("got %q, %v; want %q", got, err, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if names[0].Load() == 0 || names[1].Load() == 0 {
		t.Errorf("balance: a %d, b %d", names[0].Load(), names[1].Load())
	}
	waitFor(t, "every connection ended", func() error {
		if k := loopConns(t, lp); k != 0 {
			return fmt.Errorf("%d on the loop", k)
		}
		if o := a.open.Load() + b.open.Load(); o != 0 {
			return fmt.Errorf("%d open at the backends", o)
		}
		return nil
	})
	lm := env.m.metrics.listener("app-sidecar-proxy/api")
	if act := counter(t, lm.active); act != 0 {
		t.Errorf("active = %v", act)
	}
	if tot := counter(t, lm.total); tot != n {
		t.Errorf("total = %v, want %d", tot, n)
	}
	if cm := env.m.metrics.cluster("api"); counter(t, cm.active) != 0 || counter(t, cm.total) != n {
		t.Errorf("upstream active %v total %v", counter(t, cm.active), counter(t, cm.total))
	}
	// Bytes: what the clients sent went in; names and echoes came out.
	var in int
	for i := 0; i < n; i++ {
		for r := 0; r < rounds; r++ {
			in += len(fmt.Sprintf("conn %d round %d\n", i, r))
		}
	}
	if got := counter(t, lm.bytesIn); got != float64(in) {
		t.Errorf("bytes in = %v, want %d", got, in)
	}
	if got := counter(t, lm.bytesOut); got != float64(in+2*n) {
		t.Errorf("bytes out = %v, want %d", got, in+2*n)
	}
}

// Connections of every kind (plain, half-closed, bulk, refused, reset,
// drained by the listener's removal) leave no fd behind.
func TestL4LoopNoFDLeak(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	dead := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t))
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "dead", "n2", dead))
	addr := up(Upstream{DestinationName: "api", Outlier: OutlierConfig{Disabled: true}})
	lp := env.loopOf(addr)
	name(t, addr) // warm up
	before := countFDs(t)
	for i := 0; i < 30; i++ {
		_, c := dialName(t, addr)
		switch i % 4 {
		case 0:
			echo(t, c, "plain")
			c.Close()
		case 1:
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		case 2: // bulk both ways: spliced directions and their pipes
			go func() {
				c.Write(make([]byte, 1<<20))
				c.(*net.TCPConn).CloseWrite()
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, _ := io.Copy(io.Discard, c); n != 1<<20 {
				t.Errorf("bulk echo: %d bytes", n)
			}
			c.Close()
		case 3: // reset
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	waitFor(t, "fds back to the count before", func() error {
		if k := loopConns(t, lp); k != 0 {
			return fmt.Errorf("%d connections on the loop", k)
		}
		if n := countFDs(t); n > before {
			return fmt.Errorf("%d fds, %d before", n, before)
		}
		return nil
	})
	// Removing the listener ends the loop and closes its epoll and eventfd.
	_, held := dialName(t, addr)
	defer held.Close()
	withLoop := countFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := env.m.Apply(context.Background(), Spec{}); err != nil {
		t.Fatal(err)
	}
	env.m.Close(ctx)
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	held.Close()
	waitFor(t, "loop fds closed", func() error {
		// held (1), the proxy's two sockets, the backend's socket, the
		// listener, the epoll and the eventfd: 7 fewer.
		if n := countFDs(t); n > withLoop-7 {
			return fmt.Errorf("%d fds, %d with the loop", n, withLoop)
		}
		return nil
	})
	if lp.post(func() {}) {
		t.Error("the loop still runs after Close")
	}
}

// Hash balancing on the client address: every connection from one client
// IP goes to the same instance.
func TestL4LoopHashOnClientIP(t *testing.T) {
	env, up := loopEnv(t)
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	env.src.set("api", entry("api", "api1", "n1", a.addr()), entry("api", "api2", "n2", b.addr()))
	addr := up(Upstream{DestinationName: "api", Balancer: BalancerHash})
	first := name(t, addr)
	if first == "" {
		t.Fatal("no answer")
	}
	for i := 0; i < 10; i++ {
		if n := name(t, addr); n != first {
			t.Fatalf("connection %d went to %q, first to %q", i, n, first)
		}
	}
}

// The limits apply on the loop: a connection over MaxConnections waits in
// the pending queue and gets through when a slot frees.
func TestL4LoopLimitsQueue(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := up(Upstream{DestinationName: "api", ConnectTimeout: 5 * time.Second,
		Limits: Limits{MaxConnections: 1, MaxPendingRequests: 1}})
	_, c1 := dialName(t, addr)
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// c2 waits for a slot: its data is held meanwhile.
	fmt.Fprint(c2, "early\n")
	waitFor(t, "c2 pending", func() error {
		if p := env.m.clustersNamed("api")[0].conns.pending.Load(); p != 1 {
			return fmt.Errorf("pending %d", p)
		}
		return nil
	})
	c1.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c2)
	got, err := br.ReadString('\n')
	if err != nil || got != "a\n" {
		t.Fatalf("c2 got %q, %v", got, err)
	}
	got, err = br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) || got != "early\n" {
		t.Fatalf("c2's early data: %q, %v", got, err)
	}
}

// Switched off, the net-package path serves tcp listeners.
func TestL4NetPathWhenLoopOff(t *testing.T) {
	defer func(v bool) { l4LoopEnabled = v }(l4LoopEnabled)
	l4LoopEnabled = false
	env := newEnv(t)
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "api1", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api"})
	if env.loopOf(addr) != nil {
		t.Fatal("loop used while switched off")
	}
	n, c := dialName(t, addr)
	if n != "a" {
		t.Fatalf("got %q", n)
	}
	echo(t, c, "net path")
	c.Close()
}

// A tcp listener changed to http in place: the loop hands new connections
// to the net-package path (the HTTP forwarder); the one already open stays
// at L4.
func TestL4LoopListenerChangedToHTTP(t *testing.T) {
	env, up := loopEnv(t)
	tb := newTCPBackend(t, "tcp")
	hb := newHTTPBackend(t, "web")
	env.src.set("api", entry("api", "api1", "n1", tb.addr()))
	env.src.set("web", entry("web", "web1", "n1", hb.addr()))
	port := tu.FreePort(t)
	addr := up(Upstream{DestinationName: "api", LocalBindPort: port})
	_, held := dialName(t, addr)
	defer held.Close()
	env.upstream(Upstream{DestinationName: "web", LocalBindPort: port, Protocol: "http"})
	if env.loopOf(addr) == nil {
		t.Fatal("the listener was recreated; want an update in place")
	}
	waitFor(t, "http served", func() error {
		if code, body, _ := get(t, httpClient(), "http://"+addr+"/x"); code != 200 || body != "web" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	echo(t, held, "still at L4")
	// http: the kernel hands connections over with their request
	// (TCP_DEFER_ACCEPT); back to tcp: at once again.
	if l7LoopEnabled {
		if v := deferAcceptOf(t, env.loopOf(addr)); v == 0 {
			t.Errorf("TCP_DEFER_ACCEPT is off on the http listener")
		}
	}
	env.upstream(Upstream{DestinationName: "api", LocalBindPort: port})
	if v := deferAcceptOf(t, env.loopOf(addr)); v != 0 {
		t.Errorf("TCP_DEFER_ACCEPT is %d on the tcp listener, want 0", v)
	}
	_, c := dialName(t, addr)
	echo(t, c, "tcp again")
	c.Close()
}

func deferAcceptOf(t *testing.T, lp *l4loop) int {
	t.Helper()
	if lp == nil {
		t.Fatal("no loop")
	}
	var v int
	var err error
	lp.rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT) })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// blackhole is an address whose SYNs are dropped: a listening socket with
// a backlog of 0 whose queue is full (nothing accepts). It returns "" when
// the system does not drop them.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// Fill the queue; the next connect must hang.
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	return ""
}

// A connect that hangs is given up after the connect timeout and retried
// on another instance.
func TestL4LoopConnectTimeoutRetry(t *testing.T) {
	env, up := loopEnv(t)
	hole := blackhole(t)
	if hole == "" {
		t.Skip("SYNs to a full backlog are not dropped here")
	}
	a := newTCPBackend(t, "a")
	env.src.set("api", entry("api", "hole", "n1", hole), entry("api", "a", "n2", a.addr()))
	addr := up(Upstream{DestinationName: "api", ConnectTimeout: 200 * time.Millisecond, Outlier: OutlierConfig{Disabled: true}})
	slow := 0
	for i := 0; i < 4; i++ {
		start := time.Now()
		if n := name(t, addr); n != "a" {
			t.Fatalf("connection %d: got %q, want a", i, n)
		}
		if d := time.Since(start); d >= 180*time.Millisecond {
			slow++
			if d > 5*time.Second {
				t.Errorf("connection %d took %v", i, d)
			}
		}
	}
	f := counter(t, env.m.metrics.cluster("api").connectFailures)
	if slow == 0 || f != float64(slow) {
		t.Errorf("%d connections waited for the timeout, %v connect failures counted; want equal and > 0", slow, f)
	}
}

// An instance registered by host name: the loop hands the connection to
// the net-package path, which resolves it.
func TestL4LoopHostNameInstance(t *testing.T) {
	env, up := loopEnv(t)
	a := newTCPBackend(t, "a")
	_, port, _ := net.SplitHostPort(a.addr())
	env.src.set("api", entry("api", "api1", "n1", net.JoinHostPort("localhost", port)))
	addr := up(Upstream{DestinationName: "api"})
	n, c := dialName(t, addr)
	if n != "a" {
		t.Fatalf("got %q", n)
	}
	echo(t, c, "by name")
	c.Close()
	waitFor(t, "accounting back to zero", func() error {
		if act := counter(t, env.m.metrics.listener("app-sidecar-proxy/api").active); act != 0 {
			return fmt.Errorf("active %v", act)
		}
		return nil
	})
}
