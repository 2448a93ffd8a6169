package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
