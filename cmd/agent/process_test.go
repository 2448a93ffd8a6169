package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// proc is one agent process started by a test.
type proc struct {
	name     string
	cmd      *exec.Cmd
	httpPort int
	serfPort int
	mu       sync.Mutex
	log      bytes.Buffer
	done     chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) httpAddr() string { return "127.0.0.1:" + strconv.Itoa(p.httpPort) }

// startAgent starts `agent run` for node name on fresh ports, joining join
// (a gossip address) when non-empty.
func startAgent(t *testing.T, bin, name, join string, extra ...string) *proc {
	t.Helper()
	p := &proc{name: name, httpPort: testutil.FreePort(t), serfPort: testutil.FreePort(t), done: make(chan struct{})}
	args := []string{"run", "-node", name, "-bind", "127.0.0.1",
		"-serf-port", strconv.Itoa(p.serfPort), "-server-port", strconv.Itoa(testutil.FreePort(t)),
		"-http-port", strconv.Itoa(p.httpPort), "-dns-port", strconv.Itoa(testutil.FreePort(t)),
		"-data-dir", filepath.Join(t.TempDir(), name), "-retry-interval", "200ms"}
	if join != "" {
		args = append(args, "-retry-join", join)
	}
	args = append(args, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, p.logs())
		}
	})
	testutil.WaitFor(t, 20*time.Second, name+" HTTP API", func() error {
		resp, err := http.Get("http://" + p.httpAddr() + "/v1/agent/self")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p
}

// runCLI runs a client command of the binary and returns its stdout.
func runCLI(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// statuses parses `agent members` output into node → status.
func statuses(out string) map[string]string {
	m := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 {
			continue
		}
		m[f[0]] = f[2]
	}
	return m
}

func waitStatuses(t *testing.T, bin string, p *proc, want map[string]string, timeout time.Duration) {
	t.Helper()
	testutil.WaitFor(t, timeout, fmt.Sprintf("%s to see %v", p.name, want), func() error {
		out, err := runCLI(t, bin, "members", "-http-addr", p.httpAddr())
		if err != nil {
			return err
		}
		got := statuses(out)
		for n, s := range want {
			if got[n] != s {
				return fmt.Errorf("members:\n%s", out)
			}
		}
		return nil
	})
}

func TestProcessClusterFailureAndLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	bin := testutil.AgentBinary(t)
	n1 := startAgent(t, bin, "n1", "")
	seed := "127.0.0.1:" + strconv.Itoa(n1.serfPort)
	n2 := startAgent(t, bin, "n2", seed)
	n3 := startAgent(t, bin, "n3", seed)
	n4 := startAgent(t, bin, "n4", seed)

	all := map[string]string{"n1": "alive", "n2": "alive", "n3": "alive", "n4": "alive"}
	for _, p := range []*proc{n1, n2, n3, n4} {
		waitStatuses(t, bin, p, all, 30*time.Second)
	}
	out, _ := runCLI(t, bin, "members", "-http-addr", n1.httpAddr())
	if !strings.HasPrefix(out, "Node") || !strings.Contains(out, "Protocol") || !strings.Contains(out, "dc1") {
		t.Errorf("members output lacks the Consul columns:\n%s", out)
	}

	// kill -9: the others see it failed.
	start := time.Now()
	if err := n3.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"n1": "alive", "n2": "alive", "n3": "failed", "n4": "alive"}
	waitStatuses(t, bin, n1, want, 45*time.Second)
	waitStatuses(t, bin, n2, want, 45*time.Second)
	t.Logf("kill -9 n3: seen failed after %v", time.Since(start).Round(time.Millisecond))
	testutil.WaitFor(t, 10*time.Second, "n1 to log the failure", func() error {
		if !strings.Contains(n1.logs(), "n3") || !strings.Contains(strings.ToLower(n1.logs()), "fail") {
			return fmt.Errorf("no failure line for n3 in n1's log")
		}
		return nil
	})

	// agent leave: the others see it left and the process exits 0.
	if out, err := runCLI(t, bin, "leave", "-http-addr", n4.httpAddr()); err != nil || !strings.Contains(out, "Graceful leave complete") {
		t.Fatalf("leave: %q %v", out, err)
	}
	select {
	case <-n4.done:
	case <-time.After(20 * time.Second):
		t.Fatal("n4 did not exit after leave")
	}
	if code := n4.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("n4 exit code after leave = %d, want 0", code)
	}
	want["n4"] = "left"
	waitStatuses(t, bin, n1, want, 45*time.Second)

	// SIGTERM: leaves gracefully too (leave_on_terminate defaults to true).
	if err := n2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	want["n2"] = "left"
	waitStatuses(t, bin, n1, want, 45*time.Second)
	<-n2.done
	if code := n2.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("n2 exit code after SIGTERM = %d, want 0", code)
	}

	// The HTTP members JSON carries Consul's status numbers.
	resp, err := http.Get("http://" + n1.httpAddr() + "/v1/agent/members")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var members []struct {
		Name   string
		Status int
		Tags   map[string]string
	}
	if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range members {
		got[m.Name] = m.Status
		if m.Tags["dc"] != "dc1" || m.Tags["role"] != "node" {
			t.Errorf("%s tags = %v", m.Name, m.Tags)
		}
	}
	if got["n1"] != 1 || got["n2"] != 3 || got["n3"] != 4 || got["n4"] != 3 {
		t.Errorf("statuses = %v, want n1:1 n2:3 n3:4 n4:3", got)
	}
}

func TestProcessEncryptionMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	bin := testutil.AgentBinary(t)
	key1, err := runCLI(t, bin, "keygen")
	if err != nil {
		t.Fatal(err)
	}
	key1 = strings.TrimSpace(key1)
	if b, err := base64.StdEncoding.DecodeString(key1); err != nil || len(b) != 32 {
		t.Fatalf("keygen printed %q: %d bytes, %v", key1, len(b), err)
	}
	key2, _ := runCLI(t, bin, "keygen")
	key2 = strings.TrimSpace(key2)

	a := startAgent(t, bin, "enc-a", "", "-encrypt", key1)
	seed := "127.0.0.1:" + strconv.Itoa(a.serfPort)
	b := startAgent(t, bin, "enc-b", seed, "-encrypt", key1)
	waitStatuses(t, bin, a, map[string]string{"enc-a": "alive", "enc-b": "alive"}, 30*time.Second)

	c := startAgent(t, bin, "enc-c", "", "-encrypt", key2)
	out, err := runCLI(t, bin, "join", "-http-addr", c.httpAddr(), seed)
	if err == nil {
		t.Fatalf("join with another key succeeded: %s", out)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "key") {
		t.Errorf("join error does not name the key: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the receiver to log the key mismatch", func() error {
		if !strings.Contains(strings.ToLower(a.logs()), "key") {
			return fmt.Errorf("no key line in enc-a's log")
		}
		return nil
	})
	members, _ := runCLI(t, bin, "members", "-http-addr", a.httpAddr())
	if strings.Contains(members, "enc-c") {
		t.Errorf("enc-c got in with the wrong key:\n%s", members)
	}
	_ = b
}

func TestProcessBadConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	bin := testutil.AgentBinary(t)
	cfgFile := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(cfgFile, []byte(`{"node_nam": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"bad bind", []string{"run", "-dev", "-bind", "not-an-ip"}, []string{"bind", "not-an-ip"}},
		{"bad key", []string{"run", "-dev", "-encrypt", "c2hvcnQ="}, []string{"encrypt"}},
		{"unknown key", []string{"run", "-dev", "-config-file", cfgFile}, []string{"node_nam", "node_name"}},
		{"two problems", []string{"run", "-dev", "-bind", "x", "-client", "y"}, []string{"x", "y"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			out, err := cmd.CombinedOutput()
			if err == nil || cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit = %v, want 1; output:\n%s", err, out)
			}
			if strings.Contains(string(out), "panic") {
				t.Fatalf("panicked:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
