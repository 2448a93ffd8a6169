package testutil

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is one `agent run` process with fixed ports and data directory, so
// it can be killed and started again as the same node.
type Proc struct {
	Name     string
	Bin      string
	HTTPPort int
	SerfPort int
	RPCPort  int
	DNSPort  int
	DataDir  string
	Args     []string // extra flags

	t    testing.TB
	mu   sync.Mutex
	log  bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// NewProc allocates ports and a data directory for node name.
func NewProc(t testing.TB, bin, name string, args ...string) *Proc {
	return &Proc{Name: name, Bin: bin, t: t,
		HTTPPort: FreePort(t), SerfPort: FreePort(t), RPCPort: FreePort(t), DNSPort: FreePort(t),
		DataDir: filepath.Join(t.TempDir(), name), Args: args}
}

func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

// Logs returns everything the process printed, across restarts.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// HTTPAddr is "127.0.0.1:port" of the HTTP API.
func (p *Proc) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(p.HTTPPort) }

// SerfAddr is the gossip address to join.
func (p *Proc) SerfAddr() string { return "127.0.0.1:" + strconv.Itoa(p.SerfPort) }

// RPCAddr is the server port address (what /v1/status/leader reports).
func (p *Proc) RPCAddr() string { return "127.0.0.1:" + strconv.Itoa(p.RPCPort) }

// Start starts the process and waits until its HTTP API answers.
func (p *Proc) Start() {
	p.t.Helper()
	args := []string{"run", "-node", p.Name, "-bind", "127.0.0.1",
		"-serf-port", strconv.Itoa(p.SerfPort), "-server-port", strconv.Itoa(p.RPCPort),
		"-http-port", strconv.Itoa(p.HTTPPort), "-dns-port", strconv.Itoa(p.DNSPort),
		"-data-dir", p.DataDir, "-retry-interval", "200ms"}
	args = append(args, p.Args...)
	cmd := exec.Command(p.Bin, args...)
	cmd.Stdout, cmd.Stderr = p, p
	p.mu.Lock()
	fmt.Fprintf(&p.log, "=== start %s\n", p.Name)
	p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	p.t.Cleanup(func() { p.Kill() })
	WaitFor(p.t, 30*time.Second, p.Name+" HTTP API", func() error {
		select {
		case <-done:
			return fmt.Errorf("exited: %s", p.Logs())
		default:
		}
		resp, err := http.Get("http://" + p.HTTPAddr() + "/v1/agent/self")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() { p.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful leave) and waits for the process to exit.
func (p *Proc) Stop() { p.signalAndWait(syscall.SIGTERM) }

func (p *Proc) signalAndWait(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}
