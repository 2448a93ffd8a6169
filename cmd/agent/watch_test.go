package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// waitLeader waits until the agent at addr reports a Raft leader.
func waitLeader(t *testing.T, addr string) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "a leader", func() error {
		resp, err := http.Get("http://" + addr + "/v1/status/leader")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var leader string
		if json.NewDecoder(resp.Body).Decode(&leader) != nil || leader == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
}

func TestWatchBadInput(t *testing.T) {
	noexec := writeFile(t, "handler.sh", "#!/bin/sh\n")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no type", []string{"-key", "a"}, []string{"-type", "missing"}},
		{"bad type", []string{"-type", "kv"}, []string{"-type", `"kv"`, "keyprefix"}},
		{"key without -key", []string{"-type", "key"}, []string{"-key", "missing"}},
		{"prefix on a key watch", []string{"-type", "key", "-key", "a", "-prefix", "b"}, []string{"-prefix", "not valid"}},
		{"tag on services", []string{"-type", "services", "-tag", "v1"}, []string{"-tag", "not valid"}},
		{"bad state", []string{"-type", "checks", "-state", "down"}, []string{"-state", `"down"`}},
		{"handler not executable", []string{"-type", "key", "-key", "a", "--", noexec}, []string{"handler", "not executable"}},
		{"handler not found", []string{"-type", "nodes", "--", "no-such-handler-here"}, []string{"handler", "no-such-handler-here"}},
		{"agent unreachable", []string{"-type", "nodes"}, []string{"cannot reach the agent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"watch", "-http-addr", "127.0.0.1:1"}, tc.args...)
			if code := realMain(args, &stdout, &stderr); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestWatchProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	bin := testutil.AgentBinary(t)
	p := startAgent(t, bin, "watchcli", "", "-dev")
	waitLeader(t, p.httpAddr())
	kvPut := func(k, v string) {
		t.Helper()
		if _, err := runCLI(t, bin, "kv", "put", "-http-addr", p.httpAddr(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	kvPut("app/config", "first")

	// Without a handler: the result once, then exit.
	out, err := runCLI(t, bin, "watch", "-http-addr", p.httpAddr(), "-type", "key", "-key", "app/config")
	if err != nil {
		t.Fatal(err)
	}
	var kv struct {
		Key   string
		Value []byte
	}
	if err := json.Unmarshal([]byte(out), &kv); err != nil || kv.Key != "app/config" || string(kv.Value) != "first" {
		t.Fatalf("printed %q (%v), want the key's JSON", out, err)
	}

	// With a handler: at start and on each change, the JSON on stdin.
	dir := t.TempDir()
	handler := writeFile(t, "handler.sh", "#!/bin/sh\nn=$(ls \"$1\" | wc -l)\ncat > \"$1/run-$((n+1))\"\n[ $((n+1)) -eq 3 ] && { echo handler-says-no; exit 4; }\nexit 0\n")
	if err := os.Chmod(handler, 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd := exec.Command(bin, "watch", "-http-addr", p.httpAddr(), "-type", "keyprefix", "-prefix", "app/", "--", handler, dir)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent watch stderr:\n%s", stderr.String())
		}
	})
	runs := func(n int, want string) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("handler run %d", n), func() error {
			ents, _ := os.ReadDir(dir)
			if len(ents) > n {
				t.Fatalf("%d runs, want %d", len(ents), n)
			}
			if len(ents) < n {
				return fmt.Errorf("%d runs", len(ents))
			}
			b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("run-%d", n)))
			var pairs []struct {
				Key   string
				Value []byte
			}
			if err := json.Unmarshal(b, &pairs); err != nil {
				return fmt.Errorf("run %d got %q: %v", n, b, err)
			}
			var got []string
			for _, p := range pairs {
				got = append(got, p.Key+"="+string(p.Value))
			}
			if strings.Join(got, ",") != want {
				return fmt.Errorf("run %d got %v, want %s", n, got, want)
			}
			return nil
		})
	}
	runs(1, "app/config=first")
	kvPut("app/config", "second")
	runs(2, "app/config=second")
	kvPut("other/key", "x")     // outside the prefix: no run
	kvPut("app/extra", "third") // the handler fails its third run
	runs(3, "app/config=second,app/extra=third")
	testutil.WaitFor(t, 20*time.Second, "the handler failure in the log", func() error {
		s := stderr.String()
		if !strings.Contains(s, "handler failed") || !strings.Contains(s, "exit_code=4") || !strings.Contains(s, "handler-says-no") {
			return fmt.Errorf("stderr: %s", s)
		}
		return nil
	})
	// A failed handler does not stop the watch.
	kvPut("app/extra", "fine")
	runs(4, "app/config=second,app/extra=fine")

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent watch exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent watch did not stop on SIGTERM")
	}
}
