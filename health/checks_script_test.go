//go:build unix

package health

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestChecksRemoveDuringRun: Remove cancels a run under way (killing the
// script) and no state of the check is reported after it returns.
func TestChecksRemoveDuringRun(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EnableScriptChecks = true })
	pidFile := filepath.Join(t.TempDir(), "pid")
	h.mustAdd(t, CheckDefinition{Name: "slow", Interval: time.Second, Timeout: time.Minute,
		Args: sh("echo $$ > " + pidFile + "; exec sleep 60")})
	h.clock.waitTimers(t, 1)
	h.clock.Advance(time.Second)
	var pid int
	waitFor(t, "the script to start", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	start := time.Now()
	if err := h.Remove("slow"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Remove took %v", took)
	}
	if processAlive(pid) {
		t.Error("script still running after Remove")
	}
	if got := h.updates.statuses("slow"); len(got) > 1 {
		t.Errorf("states reported: %v, want only the initial one", got)
	}
}

func TestChecksScriptEnabled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EnableScriptChecks = true })
	h.mustAdd(t, CheckDefinition{Name: "s", Interval: time.Second, Args: sh("echo warm; exit 1")})
	h.clock.waitTimers(t, 1)
	h.clock.Advance(time.Second)
	if st := h.waitStatus(t, "s", StatusWarning); st.Output != "warm\n" {
		t.Errorf("got output %q", st.Output)
	}
}
