//go:build unix

package health

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestScriptExitCodes(t *testing.T) {
	tests := []struct {
		script, status, output string
	}{
		{"echo fine", StatusPassing, "fine\n"},
		{"echo to-stderr >&2; exit 1", StatusWarning, "to-stderr\n"},
		{"echo out; echo err >&2; exit 2", StatusCritical, "out\nerr\n"},
		{"exit 255", StatusCritical, ""},
		{"kill -9 $$", StatusCritical, ""},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			r := runProbe(t, CheckDefinition{Name: "s", Args: sh(tt.script), Interval: time.Second})
			if r.status != tt.status || r.output != tt.output {
				t.Errorf("got %s %q, want %s %q", r.status, r.output, tt.status, tt.output)
			}
		})
	}
}

func TestScriptArgsNotShell(t *testing.T) {
	// Args run directly: no word splitting or expansion of the arguments.
	r := runProbe(t, CheckDefinition{Name: "s", Args: []string{"/bin/echo", "$HOME", "a  b"}, Interval: time.Second})
	if r.status != StatusPassing || r.output != "$HOME a  b\n" {
		t.Errorf("got %s %q", r.status, r.output)
	}
}

func TestScriptNotFound(t *testing.T) {
	r := runProbe(t, CheckDefinition{Name: "s", Args: []string{"/nonexistent/check"}, Interval: time.Second})
	if r.status != StatusCritical || !strings.Contains(r.output, "no such file") {
		t.Errorf("got %s %q, want critical about the missing file", r.status, r.output)
	}
}

func TestScriptOutputCapped(t *testing.T) {
	// 10000 bytes then a last line: the end is kept.
	r := runProbe(t, CheckDefinition{Name: "s", Interval: time.Second,
		Args: sh(`i=0; while [ $i -lt 100 ]; do echo 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678; i=$((i+1)); done; echo LAST; exit 1`)})
	if r.status != StatusWarning {
		t.Errorf("got %s", r.status)
	}
	if len(r.output) > DefaultOutputMaxSize {
		t.Errorf("got %d bytes of output, want at most %d", len(r.output), DefaultOutputMaxSize)
	}
	if !strings.HasPrefix(r.output, "Captured ") || !strings.Contains(r.output, " of 10005 bytes\n...\n") || !strings.HasSuffix(r.output, "\nLAST\n") {
		t.Errorf("got %q ... %q", r.output[:50], r.output[len(r.output)-20:])
	}
}

// TestScriptTimeoutKillsGroup: on timeout the script and the child it
// started are both killed, and the run ends promptly.
func TestScriptTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	start := time.Now()
	r := runProbe(t, CheckDefinition{Name: "s", Interval: time.Second, Timeout: 300 * time.Millisecond,
		Args: sh(`sleep 60 & echo $! > ` + pidFile + `; echo started; wait`)})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run took %v after a 300ms timeout", took)
	}
	if r.status != StatusCritical || r.output != "Timed out (300ms) running check\n\nstarted\n" {
		t.Errorf("got %s %q", r.status, r.output)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the script's child to be killed", func() bool { return !processAlive(pid) })
}

// processAlive reports whether pid runs (a zombie waiting for its parent
// to reap it does not count).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) state ...; comm may hold spaces, so look after the last ')'.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
