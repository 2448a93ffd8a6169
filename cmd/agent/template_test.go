package main

import (
	"bytes"
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

// TestTemplateBadInput: each mistake is a clear error and exit 1 before
// anything is written or any agent is asked.
func TestTemplateBadInput(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, "good.ctmpl", `{{ key "a" }}`)
	bad := writeFile(t, "bad.ctmpl", "upstream web {\n{{ range service \"web\" }}\n  server {{ .Address }:{{ .Port }};\n{{ end }}}\n")
	unknown := writeFile(t, "unknown.ctmpl", "x\n  {{ servce \"web\" }}\n")
	noexec := writeFile(t, "reload.sh", "#!/bin/sh\n")
	out := filepath.Join(dir, "out.conf")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad syntax", []string{"-template", bad + ":" + out}, []string{bad + ":3:", "unexpected"}},
		{"unknown function", []string{"-template", unknown + ":" + out}, []string{unknown + ":2:6:", `unknown function "servce"`}},
		{"spec without destination", []string{"-template", good}, []string{"-template", "no destination"}},
		{"spec with empty source", []string{"-template", ":" + out}, []string{"-template", "source"}},
		{"spec with empty command", []string{"-template", good + ":" + out + ":"}, []string{"-template", "command"}},
		{"command not executable", []string{"-template", good + ":" + out + ":" + noexec + " -s reload"}, []string{"reload.sh", "not executable"}},
		{"command not found", []string{"-template", good + ":" + out + ":nginx-but-not-here -s reload"}, []string{"nginx-but-not-here"}},
		{"source missing", []string{"-template", filepath.Join(dir, "nope.ctmpl") + ":" + out}, []string{"nope.ctmpl", "no such file"}},
		{"no template", []string{"-once"}, []string{"-template", "missing"}},
		{"bad wait", []string{"-template", good + ":" + out, "-wait", "10s:1s"}, []string{"-wait", "less than min"}},
		{"bad wait duration", []string{"-template", good + ":" + out, "-wait", "soon"}, []string{"-wait", "soon"}},
		{"bad http addr", []string{"-template", good + ":" + out, "-http-addr", "ftp://x"}, []string{"-http-addr", "ftp"}},
		{"stray argument", []string{"-template", good + ":" + out, "extra"}, []string{"unexpected argument"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"template", "-http-addr", "127.0.0.1:1"}, tc.args...)
			code := realMain(args, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s was written", out)
			}
		})
	}
}

func TestTemplateProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	bin := testutil.AgentBinary(t)
	p := startAgent(t, bin, "tmplcli", "", "-dev")
	waitLeader(t, p.httpAddr())
	if _, err := runCLI(t, bin, "kv", "put", "-http-addr", p.httpAddr(), "app/port", "8080"); err != nil {
		t.Fatal(err)
	}
	src := writeFile(t, "app.ctmpl", `listen {{ key "app/port" }};{{ range service "nothing" }}x{{ end }}`)
	dest := filepath.Join(t.TempDir(), "conf", "app.conf")
	marker := filepath.Join(t.TempDir(), "reloaded")

	// -dry prints and writes nothing.
	out, err := runCLI(t, bin, "template", "-http-addr", p.httpAddr(), "-once", "-dry",
		"-template", src+":"+dest+":touch "+marker)
	if err != nil {
		t.Fatal(err)
	}
	if want := "> " + dest + "\nlisten 8080;"; out != want {
		t.Errorf("-dry printed %q, want %q", out, want)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("-dry wrote %s", dest)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("-dry ran the command")
	}

	// -once writes and runs the command.
	if _, err := runCLI(t, bin, "template", "-http-addr", p.httpAddr(), "-once",
		"-template", src+":"+dest+":touch "+marker); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "listen 8080;" {
		t.Errorf("%s holds %q", dest, b)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v", err)
	}

	// A failing command fails -once with its exit code in the log.
	cmd := exec.Command(bin, "template", "-http-addr", p.httpAddr(), "-once",
		"-template", src+":"+filepath.Join(t.TempDir(), "other.conf")+":echo reload-broke; exit 7")
	combined, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(combined), "exit_code=7") ||
		!strings.Contains(string(combined), "reload-broke") {
		t.Errorf("exit %d (%v), output %s; want 1 with the command's exit code and output", code, err, combined)
	}
}

// TestTemplateBurst: 50 K/V writes in a burst under -wait give a few
// renders (and reloads), the last one with the last value.
func TestTemplateBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	bin := testutil.AgentBinary(t)
	p := startAgent(t, bin, "tmplburst", "", "-dev")
	waitLeader(t, p.httpAddr())
	kvPut := func(v string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+p.httpAddr()+"/v1/kv/burst/value", strings.NewReader(v))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	kvPut("initial")
	dir := t.TempDir()
	src := writeFile(t, "burst.ctmpl", `value={{ key "burst/value" }}`)
	dest := filepath.Join(dir, "burst.conf")
	reloads := filepath.Join(dir, "reloads")
	var stderr syncBuffer
	cmd := exec.Command(bin, "template", "-http-addr", p.httpAddr(), "-wait", "300ms:5s",
		"-template", src+":"+dest+":cat "+dest+" >> "+reloads+"; echo >> "+reloads)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent template stderr:\n%s", stderr.String())
		}
	})
	lines := func() []string {
		b, _ := os.ReadFile(reloads)
		return strings.Fields(string(b))
	}
	testutil.WaitFor(t, 20*time.Second, "the first render", func() error {
		if l := lines(); len(l) != 1 || l[0] != "value=initial" {
			return fmt.Errorf("reloads %q", l)
		}
		return nil
	})
	for i := range 50 {
		kvPut(fmt.Sprintf("v%d", i))
	}
	testutil.WaitFor(t, 20*time.Second, "the render of the last value", func() error {
		l := lines()
		if l[len(l)-1] != "value=v49" {
			return fmt.Errorf("reloads %q", l)
		}
		return nil
	})
	l := lines()
	t.Logf("50 writes under -wait 300ms:5s: %d renders after the first", len(l)-1)
	if len(l)-1 > 10 {
		t.Errorf("%d renders for a burst of 50 writes, want a few: %q", len(l)-1, l)
	}
	if b, _ := os.ReadFile(dest); string(b) != "value=v49" {
		t.Errorf("%s holds %q, want value=v49", dest, b)
	}
}
