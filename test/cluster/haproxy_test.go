package cluster

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

// lookTool finds an external command the test drives, also in the sbin
// directories a non-root PATH may lack; ok is false when it is missing.
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// named is a tiny HTTP backend answering its own name to every request.
type named struct {
	name string
	srv  *httptest.Server
	port int
}

func startNamed(t *testing.T, name string) *named {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	return &named{name: name, srv: srv, port: port}
}

// registerWeb registers b as an instance of "web" (ID = its name) on the
// agent behind cl, with an HTTP check against it.
func registerWeb(t *testing.T, cl *consul.Client, b *named) {
	t.Helper()
	err := cl.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: b.name, Name: "web", Address: "127.0.0.1", Port: b.port,
		Check: &consul.AgentServiceCheck{
			HTTP: b.srv.URL + "/health", Interval: "1s", Timeout: "1s",
		},
	})
	if err != nil {
		t.Fatalf("register %s: %v", b.name, err)
	}
}

// lockedBuf collects a subprocess's output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const haproxyCfg = `global
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 1s
    timeout client 5s
    timeout server 5s

resolvers agent
    nameserver a 127.0.0.1:%[1]d
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 250ms
    timeout retry 250ms
    hold valid 1s
    hold obsolete 1s
    hold other 1s
    hold refused 1s
    hold nx 1s
    hold timeout 1s

frontend fe
    bind 127.0.0.1:%[2]d
    default_backend web

backend web
    balance roundrobin
    server-template web 10 _web._tcp.service.consul resolvers agent resolve-prefer ipv4 check inter 500ms

listen stats
    bind 127.0.0.1:%[3]d
    stats enable
    stats uri /stats
`

// startHAProxy runs `haproxy -f cfg -db` resolving through dnsPort and
// returns the frontend address and the stats CSV URL.
func startHAProxy(t *testing.T, bin string, dnsPort int) (front, stats string, logs *lockedBuf) {
	t.Helper()
	fePort, statsPort := testutil.FreePort(t), testutil.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyCfg, dnsPort, fePort, statsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	logs = &lockedBuf{}
	cmd := exec.Command(bin, "-f", cfg, "-db")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stats = fmt.Sprintf("http://127.0.0.1:%d/stats;csv", statsPort)
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("--- haproxy log (tail):\n%s", tail(logs.String(), 60))
		}
	})
	front = fmt.Sprintf("127.0.0.1:%d", fePort)
	testutil.WaitFor(t, 15*time.Second, "haproxy frontend", func() error {
		select {
		case <-done:
			return fmt.Errorf("haproxy exited: %s", logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return front, stats, logs
}

// statsCSV returns the web backend's server lines of the HAProxy stats
// page, for failure messages.
func statsCSV(stats string) string {
	resp, err := http.Get(stats)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "# ") || strings.HasPrefix(l, "web,") {
			f := strings.Split(l, ",")
			if len(f) > 80 {
				// pxname,svname,...,status(17),...,addr(73)
				out = append(out, strings.Join([]string{f[0], f[1], f[17], f[73]}, ","))
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestHAProxyFollowsAgentDNS puts HAProxy in front of two instances of web
// found through server-template + SRV against a client agent's DNS, and
// checks that it reaches both, then stops sending to a deregistered one.
func TestHAProxyFollowsAgentDNS(t *testing.T) {
	haproxy, ok := lookTool("haproxy")
	if !ok {
		t.Skip("haproxy binary not found in PATH or sbin (install Debian package haproxy; scripts/install-deps.sh does)")
	}
	c := startCluster(t, 1)
	c1 := c.clients[0]
	cl := client(t, c1)
	a, b := startNamed(t, "web-a"), startNamed(t, "web-b")
	registerWeb(t, cl, a)
	registerWeb(t, cl, b)

	front, stats, _ := startHAProxy(t, haproxy, c1.DNSPort)
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (string, error) {
		resp, err := hc.Get("http://" + front + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return string(body), nil
	}

	start := time.Now()
	seen := map[string]int{}
	testutil.WaitFor(t, 60*time.Second, "HAProxy to reach both web instances", func() error {
		got, err := get()
		if err == nil {
			seen[got]++
		}
		if seen[a.name] > 0 && seen[b.name] > 0 {
			return nil
		}
		return fmt.Errorf("seen %v, last error %v; haproxy servers:\n%s", seen, err, statsCSV(stats))
	})
	t.Logf("HAProxy reached both instances %v after %v", seen, time.Since(start).Round(10*time.Millisecond))

	// Deregister b but keep its server running: only DNS can take it out.
	if err := cl.Agent().ServiceDeregister(b.name); err != nil {
		t.Fatal(err)
	}
	dereg := time.Now()
	const n = 30
	run, total := 0, map[string]int{}
	var followed time.Duration
	// hold valid 1s + resolution timers + catalog sync, with a wide margin.
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d consecutive requests all reaching %s", n, a.name), func() error {
		got, err := get()
		if err != nil {
			run = 0
			return err
		}
		total[got]++
		if got != a.name {
			run = 0
			return fmt.Errorf("request reached %q; totals since deregister %v; haproxy servers:\n%s", got, total, statsCSV(stats))
		}
		if run == 0 {
			followed = time.Since(dereg)
		}
		run++
		if run < n {
			return fmt.Errorf("only %d consecutive to %s; totals since deregister %v", run, a.name, total)
		}
		return nil
	})
	t.Logf("HAProxy stopped sending to deregistered %s %v after deregistration (run of %d to %s began then; totals since deregister %v)",
		b.name, followed.Round(10*time.Millisecond), n, a.name, total)
}

// TestDigSRVListsBothInstances asks a client agent for web's SRV records
// with dig, as an operator would.
func TestDigSRVListsBothInstances(t *testing.T) {
	dig, ok := lookTool("dig")
	if !ok {
		t.Skip("dig binary not found in PATH (install Debian package bind9-dnsutils; scripts/install-deps.sh does)")
	}
	c := startCluster(t, 1)
	c1 := c.clients[0]
	cl := client(t, c1)
	a, b := startNamed(t, "web-a"), startNamed(t, "web-b")
	registerWeb(t, cl, a)
	registerWeb(t, cl, b)

	var out string
	testutil.WaitFor(t, 30*time.Second, "dig SRV to list both web instances", func() error {
		o, err := exec.Command(dig, "@127.0.0.1", "-p", strconv.Itoa(c1.DNSPort),
			"web.service.consul", "SRV", "+short", "+time=2", "+tries=1").CombinedOutput()
		out = string(o)
		if err != nil {
			return fmt.Errorf("dig: %v: %s", err, out)
		}
		ports := map[int]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 {
				continue
			}
			if p, err := strconv.Atoi(f[2]); err == nil {
				ports[p] = true
			}
		}
		if !ports[a.port] || !ports[b.port] || len(ports) != 2 {
			return fmt.Errorf("want ports %d and %d, dig +short said:\n%s", a.port, b.port, out)
		}
		return nil
	})
	t.Logf("dig web.service.consul SRV +short:\n%s", out)
}
