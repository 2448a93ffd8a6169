// Package kit holds what the catalog benchmarks share: agent processes on
// loopback with their own ports and data directories, DNS and HTTP probes
// of an agent, Prometheus text scraping, and percentiles. Nothing here is
// a test helper: the benchmarks are main programs, so failures are errors.
package kit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Agent is one `agent run` process on 127.0.0.1 with fixed ports and data
// directory, so it can be killed and started again as the same node.
type Agent struct {
	Name                                 string
	Bin                                  string
	HTTPPort, SerfPort, RPCPort, DNSPort int
	DataDir                              string
	Args                                 []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// FreePort returns a port free for TCP and UDP on 127.0.0.1 now, never the
// same twice in this process, from 20000-32767 (below Linux's ephemeral
// range).
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 20000 + mrand.IntN(12768)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsGiven[port] = true
		return port, nil
	}
	return 0, errors.New("no free port found")
}

// NewAgent allocates ports and a data directory under dir for node name.
func NewAgent(bin, dir, name string, args ...string) (*Agent, error) {
	a := &Agent{Name: name, Bin: bin, DataDir: filepath.Join(dir, name), Args: args}
	for _, p := range []*int{&a.HTTPPort, &a.SerfPort, &a.RPCPort, &a.DNSPort} {
		var err error
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// HTTPAddr is "127.0.0.1:port" of the HTTP API.
func (a *Agent) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(a.HTTPPort) }

// URL is the HTTP API's base URL.
func (a *Agent) URL() string { return "http://" + a.HTTPAddr() }

// SerfAddr is the gossip address to join.
func (a *Agent) SerfAddr() string { return "127.0.0.1:" + strconv.Itoa(a.SerfPort) }

// RPCAddr is the server port's address (what /v1/status/leader names).
func (a *Agent) RPCAddr() string { return "127.0.0.1:" + strconv.Itoa(a.RPCPort) }

// DNSAddr is the DNS server's address.
func (a *Agent) DNSAddr() string { return "127.0.0.1:" + strconv.Itoa(a.DNSPort) }

// LogPath is where the process's output goes (appended across restarts).
func (a *Agent) LogPath() string { return a.DataDir + ".log" }

// Start starts the process (without waiting for it to answer).
func (a *Agent) Start() error {
	args := []string{"run", "-node", a.Name, "-bind", "127.0.0.1",
		"-serf-port", strconv.Itoa(a.SerfPort), "-server-port", strconv.Itoa(a.RPCPort),
		"-http-port", strconv.Itoa(a.HTTPPort), "-dns-port", strconv.Itoa(a.DNSPort),
		"-data-dir", a.DataDir, "-retry-interval", "200ms", "-log-level", "warn"}
	args = append(args, a.Args...)
	if err := os.MkdirAll(filepath.Dir(a.DataDir), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(a.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %s %s\n", a.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(a.Bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a ^C to the benchmark does not reach the agents
	// before it can kill them itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.mu.Lock()
	a.cmd, a.done, a.log = cmd, done, f
	a.mu.Unlock()
	return nil
}

// WaitHTTP waits until the HTTP API answers /v1/agent/self.
func (a *Agent) WaitHTTP(ctx context.Context, timeout time.Duration) error {
	return WaitFor(ctx, timeout, a.Name+" HTTP API", func() error {
		if !a.Running() {
			return fmt.Errorf("exited; see %s", a.LogPath())
		}
		resp, err := http.Get(a.URL() + "/v1/agent/self")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// PID is the process id, 0 if not started.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the exit.
func (a *Agent) Kill() { a.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the exit (SIGKILL after 20s).
func (a *Agent) Stop() { a.signalAndWait(syscall.SIGTERM) }

func (a *Agent) signalAndWait(sig syscall.Signal) {
	a.mu.Lock()
	cmd, done, f := a.cmd, a.done, a.log
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(sig)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if f != nil {
		f.Close()
	}
}

// RSSKiB returns VmRSS and VmHWM of the process, in KiB.
func (a *Agent) RSSKiB() (rss, hwm int, err error) {
	pid := a.PID()
	if pid == 0 {
		return 0, 0, errors.New(a.Name + " not started")
	}
	return ProcRSS(pid)
}

// ProcRSS reads VmRSS and VmHWM of a process, in KiB.
func ProcRSS(pid int) (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	return rss, hwm, nil
}

// CPUTicks returns utime+stime of a process in clock ticks (1/100 s).
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// WaitFor polls cond every 20ms until it returns nil, ctx ends or timeout
// passes; the error then names what and cond's last error.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s: %w", timeout, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// HTTP is the benchmark's HTTP client.
var HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Do sends a request with an optional JSON body; it fails on a non-2xx
// status and decodes a JSON answer into out when out is not nil.
func Do(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// WaitLeader waits until a knows a leader and want Raft peers.
func WaitLeader(ctx context.Context, a *Agent, want int, timeout time.Duration) error {
	return WaitFor(ctx, timeout, a.Name+" to know a leader", func() error {
		var leader string
		if err := Do(ctx, "GET", a.URL()+"/v1/status/leader", nil, &leader); err != nil {
			return err
		}
		var peers []string
		if err := Do(ctx, "GET", a.URL()+"/v1/status/peers", nil, &peers); err != nil {
			return err
		}
		if leader == "" || len(peers) != want {
			return fmt.Errorf("leader %q peers %v", leader, peers)
		}
		return nil
	})
}

// Member is one /v1/agent/members entry.
type Member struct {
	Name   string
	Status int
}

// MemberStatus returns the gossip status of node as a sees it (1 alive,
// 3 left, 4 failed; 0 unknown).
func MemberStatus(ctx context.Context, a *Agent, node string) (int, error) {
	var ms []Member
	if err := Do(ctx, "GET", a.URL()+"/v1/agent/members", nil, &ms); err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.Name == node {
			return m.Status, nil
		}
	}
	return 0, nil
}

// AliveMembers counts the members a sees alive.
func AliveMembers(ctx context.Context, a *Agent) (int, error) {
	var ms []Member
	if err := Do(ctx, "GET", a.URL()+"/v1/agent/members", nil, &ms); err != nil {
		return 0, err
	}
	n := 0
	for _, m := range ms {
		if m.Status == 1 {
			n++
		}
	}
	return n, nil
}

// DNSCount asks the agent's DNS server for qname's SRV records over UDP
// (with EDNS0, 4096 bytes) and returns how many it answered: 0 for
// NXDOMAIN or an empty NOERROR; an error for anything else (SERVFAIL,
// truncation, timeout), so that a failure never reads as "gone".
func DNSCount(c *dns.Client, addr, qname string) (int, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(qname), dns.TypeSRV)
	m.SetEdns0(4096, false)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return 0, err
	}
	if r.Truncated {
		return 0, fmt.Errorf("%s: truncated answer", qname)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		n := 0
		for _, rr := range r.Answer {
			if _, ok := rr.(*dns.SRV); ok {
				n++
			}
		}
		return n, nil
	case dns.RcodeNameError:
		return 0, nil
	default:
		return 0, fmt.Errorf("%s: rcode %s", qname, dns.RcodeToString[r.Rcode])
	}
}

// NewDNSClient returns a UDP client with a short timeout.
func NewDNSClient() *dns.Client { return &dns.Client{Net: "udp", Timeout: 2 * time.Second} }

// Scrape fetches the agent's Prometheus text (/metrics).
func Scrape(ctx context.Context, a *Agent) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.URL()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s /metrics: %s", a.Name, resp.Status)
	}
	m := Metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Metrics maps a sample's name with labels ("name{a=\"b\"}") to its value.
type Metrics map[string]float64

// Sum adds the samples of metric name whose labels contain every one of
// the given substrings (e.g. `route="POST /v1/..."`).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// Percentile returns the p-th percentile (0..100, nearest rank) of xs.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = min(max(rank, 0), len(s)-1)
	return s[rank]
}

// Ms formats a duration in milliseconds with one decimal.
func Ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

// Summary is "p50 / p99 / max ms (n=N)".
func Summary(xs []time.Duration) string {
	if len(xs) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s / p99 %s / max %s ms (n=%d)", Ms(Percentile(xs, 50)), Ms(Percentile(xs, 99)), Ms(Percentile(xs, 100)), len(xs))
}

// Load returns /proc/loadavg's first three fields.
func Load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Cluster is a set of agents started together.
type Cluster struct {
	Servers, Clients []*Agent
}

// All returns the servers then the clients.
func (c *Cluster) All() []*Agent { return append(slices.Clone(c.Servers), c.Clients...) }

// KillAll kills every agent.
func (c *Cluster) KillAll() {
	for _, a := range c.All() {
		a.Kill()
	}
}

// StartServers starts n servers (-bootstrap-expect n), the first being
// the others' join seed, and waits until each knows a leader.
func StartServers(ctx context.Context, bin, dir string, n int) (*Cluster, error) {
	c := &Cluster{}
	var seed string
	for i := 1; i <= n; i++ {
		args := []string{"-server", "-bootstrap-expect", strconv.Itoa(n)}
		if seed != "" {
			args = append(args, "-retry-join", seed)
		}
		a, err := NewAgent(bin, dir, fmt.Sprintf("s%d", i), args...)
		if err != nil {
			return c, err
		}
		if seed == "" {
			seed = a.SerfAddr()
		}
		if err := a.Start(); err != nil {
			return c, err
		}
		c.Servers = append(c.Servers, a)
	}
	for _, a := range c.Servers {
		if err := a.WaitHTTP(ctx, 30*time.Second); err != nil {
			return c, err
		}
	}
	for _, a := range c.Servers {
		if err := WaitLeader(ctx, a, n, 60*time.Second); err != nil {
			return c, err
		}
	}
	return c, nil
}

// StartClients starts client agents named names, joining the first
// server, and waits until their APIs answer and they know a leader.
// At most par start at once.
func (c *Cluster) StartClients(ctx context.Context, bin, dir string, par int, names ...string) ([]*Agent, error) {
	seed := c.Servers[0].SerfAddr()
	var out []*Agent
	for _, n := range names {
		a, err := NewAgent(bin, dir, n, "-retry-join", seed)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	sem := make(chan struct{}, max(par, 1))
	errs := make([]error, len(out))
	var wg sync.WaitGroup
	for i, a := range out {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := a.Start(); err != nil {
				errs[i] = err
				return
			}
			if err := a.WaitHTTP(ctx, 60*time.Second); err != nil {
				errs[i] = err
				return
			}
			errs[i] = WaitLeader(ctx, a, len(c.Servers), 90*time.Second)
		})
	}
	wg.Wait()
	c.Clients = append(c.Clients, out...)
	return out, errors.Join(errs...)
}

// WatchUntil follows base+"/v1/health/service/"+path (path may carry a
// query, e.g. "web?tag=x") with ?stale blocking reads, as a view does,
// from index (ServiceIndex's), until done(entries) holds; it returns
// when the answer that made it hold arrived. It is the servers' own
// notification latency, the floor under any view's.
func WatchUntil(ctx context.Context, base, path string, index uint64, done func(entries int) bool) (time.Time, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for {
		url := fmt.Sprintf("%s/v1/health/service/%s%sstale&wait=60s&index=%d", base, path, sep, index)
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return time.Time{}, err
		}
		resp, err := watchClient.Do(req)
		if err != nil {
			return time.Time{}, err
		}
		var out []json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		now := time.Now()
		if err != nil {
			return now, err
		}
		if resp.StatusCode != 200 {
			return now, fmt.Errorf("%s: %s", url, resp.Status)
		}
		if done(len(out)) {
			return now, nil
		}
		if _, err := fmt.Sscan(resp.Header.Get("X-Consul-Index"), &index); err != nil {
			return now, fmt.Errorf("%s: X-Consul-Index: %v", url, err)
		}
	}
}

var watchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// ServiceIndex returns X-Consul-Index of a ?stale read of
// base+"/v1/health/service/"+path.
func ServiceIndex(ctx context.Context, base, path string) (uint64, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/health/service/"+path+sep+"stale", nil)
	if err != nil {
		return 0, err
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var idx uint64
	if _, err := fmt.Sscan(resp.Header.Get("X-Consul-Index"), &idx); err != nil {
		return 0, fmt.Errorf("X-Consul-Index %q: %v", resp.Header.Get("X-Consul-Index"), err)
	}
	return idx, nil
}
