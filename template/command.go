package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/watch"
)

// shellBuiltins are first words that need no executable.
var shellBuiltins = map[string]bool{
	"exec": true, "cd": true, ".": true, "source": true, "eval": true, "export": true, "set": true,
	"trap": true, "wait": true, "command": true, "test": true, "[": true, "kill": true, "true": true,
	"false": true, "echo": true, "printf": true, ":": true, "if": true, "for": true, "while": true,
	"case": true, "{": true, "(": true, "!": true,
}

// checkCommand reports a command whose program cannot run: the first word
// of a plain command line must be an executable (on PATH or by path).
// Lines the check cannot judge without a shell (variables, quotes,
// redirections, assignments, builtins) pass; the shell reports those
// when they run.
func checkCommand(cmd string) error {
	fields := strings.Fields(cmd)
	if len(fields) == 0 {
		return fmt.Errorf("empty command")
	}
	first := fields[0]
	if shellBuiltins[first] || strings.ContainsAny(first, "$`'\"\\|&;<>(){}*?[]~=") {
		return nil
	}
	return watch.CheckExecutable(first)
}

// maxCommandOutput caps the command output kept for the log.
const maxCommandOutput = 4 << 10

// CommandError is a command that ran and failed.
type CommandError struct {
	Command  string
	ExitCode int
	Output   string
	Err      error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("command %q failed (exit code %d): %v: %s", e.Command, e.ExitCode, e.Err, e.Output)
}

func (e *CommandError) Unwrap() error { return e.Err }

// runCommand runs cmd with /bin/sh -c, logging its outcome. The command
// gets its own process group, so a timeout kills what it started too.
func (r *Runner) runCommand(ctx context.Context, cmd string) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CommandTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	w := &cappedWriter{b: &out}
	c.Stdout, c.Stderr = w, w
	start := time.Now()
	err := c.Run()
	if err == nil {
		r.log.Info("template: command ran", "command", cmd, "took", time.Since(start).Round(time.Millisecond).String(),
			"output", strings.TrimSpace(out.String()))
		return nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %v", r.cfg.CommandTimeout)
	}
	ce := &CommandError{Command: cmd, ExitCode: code, Output: strings.TrimSpace(out.String()), Err: err}
	r.log.Error("template: command failed", "command", cmd, "exit_code", code, "err", err, "output", ce.Output)
	return ce
}

type cappedWriter struct{ b *bytes.Buffer }

func (c *cappedWriter) Write(p []byte) (int, error) {
	if room := maxCommandOutput - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over path, so readers see the old or
// the new content, never a part. An existing file's mode (and, as root,
// owner) is kept; a new file gets 0644. Missing parent directories are
// created.
func writeAtomic(path string, data []byte) (err error) {
	mode := os.FileMode(0o644)
	uid, gid := -1, -1
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err = f.Chown(uid, gid); err != nil {
			f.Close()
			return err
		}
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
