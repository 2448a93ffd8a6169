package templatetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// TestAgentConfigWatchesAndTemplates runs `agent run -dev` with watches
// and templates in its configuration file.
func TestAgentConfigWatchesAndTemplates(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	bin := testutil.AgentBinary(t)
	dir := t.TempDir()
	handler := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\ncat >> \""+dir+"/watch.out\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "motd.ctmpl")
	if err := os.WriteFile(src, []byte(`motd={{ keyOrDefault "site/motd" "none" }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "motd.txt")
	cfg, _ := json.Marshal(map[string]any{
		"watches":   []any{map[string]any{"type": "key", "key": "site/motd", "args": []string{handler}}},
		"templates": []any{map[string]any{"source": src, "destination": dest, "command": "echo reloaded >> " + dir + "/cmd.out"}},
	})
	cfgFile := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p := testutil.NewProc(t, bin, "cfgagent", "-dev", "-config-file", cfgFile)
	p.Start()
	// Run starts the watches as it starts serving HTTP.
	testutil.WaitFor(t, 20*time.Second, "the agent to start its watches and templates", func() error {
		logs := p.Logs()
		switch {
		case strings.Contains(logs, "watches and templates started"):
			return nil
		case strings.Contains(logs, "watches and templates"):
			t.Fatalf("the agent did not start its watches and templates:\n%s", logs)
		}
		return fmt.Errorf("not yet")
	})
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return string(b)
	}
	testutil.WaitFor(t, 20*time.Second, "the first render", func() error {
		if read("motd.txt") != "motd=none" || read("cmd.out") != "reloaded\n" {
			return fmt.Errorf("motd.txt %q cmd.out %q", read("motd.txt"), read("cmd.out"))
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodPut, "http://"+p.HTTPAddr()+"/v1/kv/site/motd", strings.NewReader("welcome"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, 20*time.Second, "the render and the watch handler after the write", func() error {
		if read("motd.txt") != "motd=welcome" || read("cmd.out") != "reloaded\nreloaded\n" {
			return fmt.Errorf("motd.txt %q cmd.out %q", read("motd.txt"), read("cmd.out"))
		}
		// The watch ran at start (null) and after the write.
		if out := read("watch.out"); !strings.HasPrefix(out, "null") || !strings.Contains(out, `"Key": "site/motd"`) {
			return fmt.Errorf("watch.out %q", out)
		}
		return nil
	})

	// A handler that cannot run: the agent says which and stops.
	bad, _ := json.Marshal(map[string]any{
		"watches": []any{map[string]any{"type": "nodes", "args": []string{src}}},
	})
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	ports := []string{"-http-port", fmt.Sprint(testutil.FreePort(t)), "-dns-port", fmt.Sprint(testutil.FreePort(t)),
		"-serf-port", fmt.Sprint(testutil.FreePort(t)), "-server-port", fmt.Sprint(testutil.FreePort(t))}
	cmd := exec.Command(bin, append([]string{"run", "-dev", "-bind", "127.0.0.1", "-config-file", badFile}, ports...)...)
	done := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); done <- out }()
	select {
	case out := <-done:
		if !strings.Contains(string(out), "watches[0].args") || !strings.Contains(string(out), "not executable") {
			t.Errorf("the agent's log does not name the bad handler:\n%s", out)
		}
		if code := cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("the agent exited 0 with a handler that cannot run; want a failure")
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the agent kept running with a handler that cannot run")
	}
}
