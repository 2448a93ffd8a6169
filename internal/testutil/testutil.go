// Package testutil holds helpers shared by the process and compose tests:
// building the agent binary once, free ports, waiting on conditions with
// deadlines. It is imported only from tests.
package testutil

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// AgentBinary returns the path of a static agent binary: $OUTRIGGER_AGENT_BIN
// when set (make test builds it first), else one built once per test
// process into a temporary directory.
func AgentBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OUTRIGGER_AGENT_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outrigger-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "agent")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/outrigger/outrigger/cmd/agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// FreePort returns a port free for both TCP and UDP on 127.0.0.1 at the
// time of the call, never the same one twice in a test binary. Ports come
// from 20000-32767, below Linux's ephemeral range, so that neither the
// kernel (for outgoing connections and :0 listeners) nor another test
// binary asking it for a free port hands the same one out meanwhile.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 500 {
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
		return port
	}
	t.Fatal("no free port found")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// WaitFor polls cond until it returns nil or the deadline passes, then
// fails the test with cond's last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
		runtime.Gosched()
	}
}
