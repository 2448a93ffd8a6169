package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// fastLock shortens every lock timing so tests take milliseconds.
var fastLock = lockConfig{
	SessionTTL:       400 * time.Millisecond,
	RetryWait:        50 * time.Millisecond,
	MonitorRetryWait: 20 * time.Millisecond,
	KillGrace:        2 * time.Second,
	BlockWait:        2 * time.Second,
	CleanupTimeout:   5 * time.Second,
}

// lockRun is one `agent lock` running in the background.
type lockRun struct {
	stdout, stderr syncBuffer
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
}

func startLock(t *testing.T, f *fakeConsul, cfg lockConfig, args ...string) *lockRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &lockRun{cancel: cancel, done: make(chan struct{})}
	full := append([]string{"-http-addr", f.addr()}, args...)
	go func() {
		defer close(r.done)
		r.code = lockMain(ctx, full, strings.NewReader("from stdin"), &r.stdout, &r.stderr, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// wait returns the exit code, failing the test if the command runs longer
// than timeout.
func (r *lockRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(timeout):
		t.Fatalf("agent lock still running after %v; stderr %q", timeout, r.stderr.String())
		return 0
	}
}

func runLock(t *testing.T, f *fakeConsul, args ...string) (int, string, string) {
	t.Helper()
	r := startLock(t, f, fastLock, args...)
	code := r.wait(t, 20*time.Second)
	return code, r.stdout.String(), r.stderr.String()
}

// assertReleased checks the command left no session and no held lock.
func assertReleased(t *testing.T, f *fakeConsul, key string) {
	t.Helper()
	if n := f.sessionCount(); n != 0 {
		t.Errorf("%d sessions left, want 0", n)
	}
	if p, ok := f.get(key); ok {
		t.Errorf("lock key left behind: %+v", p)
	}
}

func TestLockRunsChildAndReleases(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	r := startLock(t, f, fastLock, "-shell=false", "svc/web", "--", "sh", "-c", "echo hello; echo oops >&2; sleep 0.6; exit 3")
	testutil.WaitFor(t, 10*time.Second, "the lock to be held", func() error {
		if f.lockHolder("svc/web/.lock") == "" {
			return errors.New("not held")
		}
		return nil
	})
	if p, _ := f.get("svc/web/.lock"); p.Flags != lockFlagValue || p.LockIndex != 1 {
		t.Errorf("lock entry = %+v, want Consul's lock flags and LockIndex 1", p)
	}
	if code := r.wait(t, 10*time.Second); code != 3 {
		t.Errorf("exit %d, want the child's 3; stderr %q", code, r.stderr.String())
	}
	if got := r.stdout.String(); got != "hello\n" {
		t.Errorf("stdout = %q, want the child's hello", got)
	}
	if got := r.stderr.String(); got != "oops\n" {
		t.Errorf("stderr = %q, want only the child's oops", got)
	}
	if n := f.counter(&f.renewals); n < 1 {
		t.Errorf("%d session renewals while the child ran 0.6s with a 400ms TTL, want at least 1", n)
	}
	assertReleased(t, f, "svc/web/.lock")
}

func TestLockShell(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	// The default, like consul lock: the words are joined and run by a shell.
	code, out, errs := runLock(t, f, "jobs/a", "echo", "$((1+2))", "&&", "exit", "0")
	if code != 0 || out != "3\n" {
		t.Errorf("shell: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// -shell=false: arguments go to the program as given.
	code, out, errs = runLock(t, f, "-shell=false", "jobs/a", "--", "printf", "%s|", "a b", "$HOME")
	if code != 0 || out != "a b|$HOME|" {
		t.Errorf("-shell=false: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// stdin reaches the child only with -pass-stdin.
	code, out, _ = runLock(t, f, "-shell=false", "jobs/a", "cat")
	if code != 0 || out != "" {
		t.Errorf("without -pass-stdin: exit %d, stdout %q", code, out)
	}
	code, out, _ = runLock(t, f, "-shell=false", "-pass-stdin", "jobs/a", "cat")
	if code != 0 || out != "from stdin" {
		t.Errorf("-pass-stdin: exit %d, stdout %q", code, out)
	}
	assertReleased(t, f, "jobs/a/.lock")
}

func TestLockWaitsForHolder(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	other := f.newSession()
	if !f.acquire("jobs/b/.lock", other, lockFlagValue) {
		t.Fatal("setup: acquire failed")
	}
	r := startLock(t, f, fastLock, "-shell=false", "jobs/b", "echo", "ran")
	testutil.WaitFor(t, 10*time.Second, "a blocking read of the held lock", func() error {
		if f.counter(&f.blocked) == 0 {
			return errors.New("no blocking read yet")
		}
		return nil
	})
	if out := r.stdout.String(); out != "" {
		t.Fatalf("the child ran while another session held the lock: %q", out)
	}
	f.invalidate(other)
	if code := r.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, r.stderr.String())
	}
	if out := r.stdout.String(); out != "ran\n" {
		t.Errorf("stdout = %q, want ran", out)
	}
	assertReleased(t, f, "jobs/b/.lock")
}

func TestLockRetriesDuringLockDelay(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.refuse = 2
	code, out, errs := runLock(t, f, "-shell=false", "jobs/c", "echo", "ran")
	if code != 0 || out != "ran\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := f.counter(&f.acquires); n != 3 {
		t.Errorf("%d acquire attempts, want 3 (two refused)", n)
	}
	assertReleased(t, f, "jobs/c/.lock")
}

func TestLockTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	other := f.newSession()
	f.acquire("jobs/d/.lock", other, lockFlagValue)
	start := time.Now()
	code, out, errs := runLock(t, f, "-timeout", "300ms", "-shell=false", "jobs/d", "echo", "ran")
	if code != 1 || out != "" || !strings.Contains(errs, "agent lock: Error! Timed out after 300ms waiting for the lock on jobs/d/.lock") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to time out after 300ms", d)
	}
	if n := f.sessionCount(); n != 1 {
		t.Errorf("%d sessions, want only the holder's", n)
	}
	if h := f.lockHolder("jobs/d/.lock"); h != other {
		t.Errorf("holder = %q, want %q", h, other)
	}
}

func TestLockLostStopsChild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lose func(f *fakeConsul, key string)
		want string
	}{
		{"session invalidated", func(f *fakeConsul, key string) { f.invalidate(f.lockHolder(key)) }, "lock lost on jobs/e/.lock"},
		{"key deleted", func(f *fakeConsul, key string) { f.del(key) }, "the key was deleted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeConsul(t)
			const key = "jobs/e/.lock"
			r := startLock(t, f, fastLock, "-shell=false", "jobs/e", "sleep", "30")
			testutil.WaitFor(t, 10*time.Second, "the lock to be held", func() error {
				if f.lockHolder(key) == "" {
					return errors.New("not held")
				}
				return nil
			})
			start := time.Now()
			tc.lose(f, key)
			if code := r.wait(t, 10*time.Second); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if d := time.Since(start); d > fastLock.KillGrace {
				t.Errorf("child stopped %v after the loss; SIGTERM should have ended sleep at once", d)
			}
			if errs := r.stderr.String(); !strings.Contains(errs, tc.want) || !strings.Contains(errs, "stopped sleep 30") {
				t.Errorf("stderr = %q, want %q and stopped sleep 30", errs, tc.want)
			}
			assertReleased(t, f, key)
		})
	}
}

func TestLockKillsChildIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	cfg := fastLock
	cfg.KillGrace = 300 * time.Millisecond
	r := startLock(t, f, cfg, "-shell=false", "jobs/f", "--", "sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	testutil.WaitFor(t, 10*time.Second, "the child to start", func() error {
		if r.stdout.String() != "ready\n" {
			return errors.New("not started")
		}
		return nil
	})
	start := time.Now()
	f.invalidate(f.lockHolder("jobs/f/.lock"))
	if code := r.wait(t, 10*time.Second); code != 1 {
		t.Errorf("exit %d, want 1; stderr %q", code, r.stderr.String())
	}
	if d := time.Since(start); d < cfg.KillGrace {
		t.Errorf("child gone after %v, before the %v grace", d, cfg.KillGrace)
	}
}

func TestLockInterrupted(t *testing.T) {
	t.Parallel()
	t.Run("while running", func(t *testing.T) {
		t.Parallel()
		f := newFakeConsul(t)
		r := startLock(t, f, fastLock, "-shell=false", "jobs/g", "sleep", "30")
		testutil.WaitFor(t, 10*time.Second, "the lock to be held", func() error {
			if f.lockHolder("jobs/g/.lock") == "" {
				return errors.New("not held")
			}
			return nil
		})
		r.cancel()
		if code := r.wait(t, 10*time.Second); code != 128+15 {
			t.Errorf("exit %d, want 143 (the child's SIGTERM); stderr %q", code, r.stderr.String())
		}
		assertReleased(t, f, "jobs/g/.lock")
	})
	t.Run("while waiting", func(t *testing.T) {
		t.Parallel()
		f := newFakeConsul(t)
		f.acquire("jobs/h/.lock", f.newSession(), lockFlagValue)
		r := startLock(t, f, fastLock, "-shell=false", "jobs/h", "echo", "ran")
		testutil.WaitFor(t, 10*time.Second, "a blocking read", func() error {
			if f.counter(&f.blocked) == 0 {
				return errors.New("no blocking read yet")
			}
			return nil
		})
		r.cancel()
		if code := r.wait(t, 10*time.Second); code != 1 || !strings.Contains(r.stderr.String(), "Interrupted while waiting for the lock on jobs/h/.lock") {
			t.Errorf("exit %d, stderr %q", code, r.stderr.String())
		}
		if n := f.sessionCount(); n != 1 {
			t.Errorf("%d sessions, want only the holder's", n)
		}
	})
}

func TestLockVerbose(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	code, _, errs := runLock(t, f, "-verbose", "-shell=false", "jobs/i", "true")
	for _, want := range []string{"created session", "acquiring jobs/i/.lock", "holding jobs/i/.lock", "true exited with code 0", "released jobs/i/.lock", "destroyed session"} {
		if !strings.Contains(errs, want) {
			t.Errorf("verbose stderr lacks %q:\n%s", want, errs)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestLockBadInputs(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.set("plain/.lock", "not a lock", 0)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"semaphore", []string{"-n", "3", "p", "true"}, "agent lock: -n 3: semaphores (-n above 1) are not supported"},
		{"zero holders", []string{"-n", "0", "p", "true"}, "-n 0: must be 1"},
		{"negative timeout", []string{"-timeout", "-1s", "p", "true"}, "-timeout -1s: must not be negative"},
		{"bad timeout", []string{"-timeout", "soon", "p", "true"}, `invalid value "soon" for flag -timeout`},
		{"nothing", nil, "Missing PREFIX and COMMAND"},
		{"prefix only", []string{"p"}, "Missing COMMAND"},
		{"prefix and dashes", []string{"p", "--"}, "Missing COMMAND"},
		{"root prefix", []string{"/", "true"}, `PREFIX "/" is empty`},
		{"no such program", []string{"-shell=false", "p", "no-such-program-xyz"}, "Cannot run no-such-program-xyz"},
		{"not a lock", []string{"-shell=false", "plain", "true"}, "is not a lock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runLock(t, f, tc.args...)
			if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, tc.want)
			}
		})
	}
	if n := f.sessionCount(); n != 0 {
		t.Errorf("%d sessions left after bad inputs", n)
	}
	if p, _ := f.get("plain/.lock"); string(p.Value) != "not a lock" {
		t.Errorf("a non-lock key was changed: %+v", p)
	}
}

func TestLockHelp(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := realMain([]string{"lock", "-h"}, &out, &errb); code != 0 {
		t.Errorf("lock -h: exit %d", code)
	}
	for _, want := range []string{"PREFIX/.lock", "semaphores (-n > 1) are not", "-timeout", "-shell", "-pass-stdin"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, errb.String())
		}
	}
}
