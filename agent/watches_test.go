package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

func TestWatchesAndTemplatesFromConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process agent: skipped with -short")
	}
	ta := startAgent(t, "wt1", true, 1)
	testutil.WaitFor(t, 30*time.Second, "a leader", func() error {
		var leader string
		if err := getJSON(ta.url("/v1/status/leader"), &leader); err != nil || leader == "" {
			return fmt.Errorf("leader %q (%v)", leader, err)
		}
		return nil
	})
	put := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, ta.url(path), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %s", path, resp.Status)
		}
	}
	put("/v1/kv/cfg/greeting", "hello")

	dir := t.TempDir()
	handler := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(handler, []byte("#!/bin/sh\ncat >> \""+dir+"/watch.out\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "in.ctmpl")
	if err := os.WriteFile(src, []byte(`{{ key "cfg/greeting" }} {{ range service "web" }}{{ .Port }} {{ end }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "out.conf")
	extra := decodeExtra(t, fmt.Sprintf(`{
		"watches": [{"type": "key", "key": "cfg/greeting", "args": [%q]}],
		"templates": [{"source": %q, "destination": %q, "command": "echo ran >> %s/cmd.out", "wait": {"min": "50ms", "max": "1s"}}]
	}`, handler, src, dest, dir))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := ta.startWatchesAndTemplates(ctx, extra); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return string(b)
	}
	testutil.WaitFor(t, 20*time.Second, "the watch handler and the first render", func() error {
		if !strings.Contains(read("watch.out"), `"Key": "cfg/greeting"`) {
			return fmt.Errorf("watch.out: %q", read("watch.out"))
		}
		if read("out.conf") != "hello " || read("cmd.out") != "ran\n" {
			return fmt.Errorf("out.conf %q cmd.out %q", read("out.conf"), read("cmd.out"))
		}
		return nil
	})
	put("/v1/agent/service/register", `{"ID": "web1", "Name": "web", "Port": 9001}`)
	testutil.WaitFor(t, 20*time.Second, "the render with web1", func() error {
		if read("out.conf") != "hello 9001 " || read("cmd.out") != "ran\nran\n" {
			return fmt.Errorf("out.conf %q cmd.out %q", read("out.conf"), read("cmd.out"))
		}
		return nil
	})

	// Bad sections: an error naming the field, and nothing starts. The
	// destinations are in the test's own directory: a fixed /tmp path
	// could be anything on the machine (a directory once made this test
	// fail with the wrong error).
	scratch := t.TempDir()
	for _, tc := range []struct{ name, in, want string }{
		{"bad watch", `{"watches": [{"type": "key", "args": ["/bin/true"]}]}`, "watches[0].key"},
		{"handler not executable", fmt.Sprintf(`{"watches": [{"type": "nodes", "args": [%q]}]}`, src), "not executable"},
		{"template without destination", fmt.Sprintf(`{"templates": [{"source": %q}]}`, src), "templates[0].destination"},
		{"template syntax", `{"templates": [{"source": "` + writeTempTemplate(t, "{{ if }}") + `", "destination": "` + filepath.Join(scratch, "x") + `"}]}`, ":1:1:"},
		{"bad wait", fmt.Sprintf(`{"templates": [{"source": %q, "destination": %q, "wait": "5s:1s"}]}`, src, filepath.Join(scratch, "y")), "templates[0].wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ta.startWatchesAndTemplates(ctx, decodeExtra(t, tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func decodeExtra(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeTempTemplate(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.ctmpl")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
