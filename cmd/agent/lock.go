package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// lockFlagValue marks a K/V entry as a lock. It is the value Consul's
// api.Lock writes, so `consul lock` and `agent lock` on the same prefix
// exclude each other, and neither mistakes a plain key for a lock.
const lockFlagValue uint64 = 0x2ddccbc058a50c18

// lockKeyName is the key under the prefix that the lock lives at
// (Consul's DefaultSemaphoreKey: a lock and a semaphore on one prefix
// conflict instead of both being granted).
const lockKeyName = ".lock"

var (
	// errLockLost is the cause of the lock context's cancellation when the
	// session or the lock went away under us.
	errLockLost = errors.New("lock lost")
	// errLockConflict: the key exists but was not written as a lock.
	errLockConflict = errors.New("the key exists and is not a lock (its flags are not a lock's); is something else using it?")
)

// lockConfig holds the lock command's timings. Tests shorten them.
type lockConfig struct {
	// SessionTTL is the lock session's TTL; it is renewed every TTL/2.
	// If zero, 15s is used (Consul's lock default).
	SessionTTL time.Duration
	// RetryWait is the pause after the agent refused to grant a free key,
	// which happens during a previous holder's lock-delay. If zero, 5s is used.
	RetryWait time.Duration
	// MonitorRetries is how many failed reads of the held key in a row are
	// tolerated before the lock counts as lost. If zero, 3 is used.
	MonitorRetries int
	// MonitorRetryWait is the pause between failed reads. If zero, 1s is used.
	MonitorRetryWait time.Duration
	// KillGrace is how long the child has between SIGTERM and SIGKILL.
	// If zero, 5s is used.
	KillGrace time.Duration
	// BlockWait is the ?wait= of blocking reads. If zero, 1m is used.
	BlockWait time.Duration
	// CleanupTimeout bounds releasing the lock and destroying the session
	// at exit. If zero, 10s is used.
	CleanupTimeout time.Duration
}

func (c lockConfig) withDefaults() lockConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.SessionTTL, 15*time.Second)
	def(&c.RetryWait, 5*time.Second)
	def(&c.MonitorRetryWait, time.Second)
	def(&c.KillGrace, 5*time.Second)
	def(&c.BlockWait, time.Minute)
	def(&c.CleanupTimeout, 10*time.Second)
	if c.MonitorRetries == 0 {
		c.MonitorRetries = 3
	}
	return c
}

func lockCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return lockMain(ctx, args, os.Stdin, stdout, stderr, lockConfig{})
}

// lockMain runs `agent lock`. Cancelling ctx (SIGINT or SIGTERM) gives up
// waiting, or stops the child, and then releases everything.
func lockMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, cfg lockConfig) int {
	const name = "lock"
	fs, cf := newCommandFlags(name, stderr, helpText("agent lock [options] PREFIX [--] COMMAND [ARGS...]",
		"Runs COMMAND while holding a lock, like `consul lock`: the lock is the key\n"+
			"PREFIX/.lock, held by a session that the agent renews while COMMAND runs.\n"+
			"Waits (with blocking queries) while another holder has it, up to -timeout.\n"+
			"If the lock is lost (the session invalidated, the key deleted), COMMAND is\n"+
			"sent SIGTERM, then SIGKILL after 5s, and the exit code is 1. Otherwise the\n"+
			"exit code is COMMAND's (128+N if it died of signal N). On exit the lock is\n"+
			"released and the session destroyed. Interoperates with `consul lock`.\n\n"+
			"As in Consul, COMMAND and ARGS are joined with spaces and run by $SHELL -c\n"+
			"(default /bin/sh); -shell=false runs COMMAND directly with ARGS as given.\n"+
			"COMMAND's stdout and stderr are the agent's; stdin only with -pass-stdin.\n"+
			"Only -n 1 (a lock) is supported; semaphores (-n > 1) are not.",
		"agent lock service/backup/leader ./backup.sh",
		"agent lock -timeout 30s locks/migrate \"make migrate && make seed\"",
		"agent lock -shell=false locks/report -- /usr/bin/report --out \"/tmp/a b\""))
	limit := fs.Int("n", 1, "Number of holders allowed at once; only 1 is supported")
	sessionName := fs.String("name", "", "Name of the lock's session (default: built from COMMAND and PREFIX)")
	timeout := fs.Duration("timeout", 0, "Give up if the lock is not acquired within this long (0: wait forever)")
	shell := fs.Bool("shell", true, "Run COMMAND through $SHELL -c (default /bin/sh)")
	passStdin := fs.Bool("pass-stdin", false, "Connect COMMAND's stdin to this process's stdin")
	verbose := fs.Bool("verbose", false, "Report each step on stderr")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	switch {
	case *limit > 1:
		return failf(stderr, name, "-n %d: semaphores (-n above 1) are not supported; only -n 1, a lock", *limit)
	case *limit < 1:
		return failf(stderr, name, "-n %d: must be 1", *limit)
	case *timeout < 0:
		return failf(stderr, name, "-timeout %v: must not be negative", *timeout)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return failf(stderr, name, "Error! Missing PREFIX and COMMAND (usage: agent lock [options] PREFIX [--] COMMAND [ARGS...])")
	}
	prefix := strings.Trim(rest[0], "/")
	if prefix == "" {
		return failf(stderr, name, "Error! PREFIX %q is empty", rest[0])
	}
	argv := rest[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return failf(stderr, name, "Error! Missing COMMAND to run while holding the lock")
	}
	key := path.Join(prefix, lockKeyName)
	cfg = cfg.withDefaults()
	if *sessionName == "" {
		*sessionName = fmt.Sprintf("agent lock for '%s' at '%s'", strings.Join(argv, " "), prefix)
	}
	logf := func(format string, a ...any) {
		if *verbose {
			fmt.Fprintf(stderr, "agent lock: "+format+"\n", a...)
		}
	}

	// lockCtx ends when we are interrupted or the lock is lost
	// (cause errLockLost); the child runs under it.
	lockCtx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	child := childCommand(lockCtx, argv, *shell)
	if child.Err != nil {
		return failf(stderr, name, "Error! Cannot run %s: %v", argv[0], child.Err)
	}
	if *passStdin {
		child.Stdin = stdin
	}
	child.Stdout, child.Stderr = stdout, stderr
	var stopped atomic.Bool
	child.Cancel = func() error {
		stopped.Store(true)
		return child.Process.Signal(syscall.SIGTERM)
	}
	child.WaitDelay = cfg.KillGrace

	l := &sessionLock{cf: cf, key: key, cfg: cfg, lose: lose}
	if err := l.createSession(ctx, *sessionName); err != nil {
		return failf(stderr, name, "Error! Cannot create the lock's session: %v", err)
	}
	logf("created session %s", l.session)

	// Renewal and monitoring outlive an interruption: the session must
	// stay valid while the child is being stopped.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Go(func() { l.renew(bgCtx) })
	held := false
	defer func() {
		stopBackground()
		background.Wait()
		cctx, cancel := context.WithTimeout(context.Background(), cfg.CleanupTimeout)
		defer cancel()
		if held {
			if err := l.release(cctx); err == nil {
				logf("released %s", key)
			} else if !errors.Is(context.Cause(lockCtx), errLockLost) {
				fmt.Fprintf(stderr, "agent lock: warning: release %s: %v\n", key, err)
			}
			l.cleanup(cctx)
		}
		if err := l.destroySession(cctx); err != nil {
			fmt.Fprintf(stderr, "agent lock: warning: destroy session %s: %v\n", l.session, err)
		} else {
			logf("destroyed session %s", l.session)
		}
	}()

	acqCtx := lockCtx
	if *timeout > 0 {
		var cancel context.CancelFunc
		acqCtx, cancel = context.WithTimeout(lockCtx, *timeout)
		defer cancel()
	}
	logf("acquiring %s", key)
	if err := l.acquire(acqCtx); err != nil {
		switch cause := context.Cause(lockCtx); {
		case errors.Is(cause, errLockLost):
			return failf(stderr, name, "Error! %v (while waiting for the lock on %s)", cause, key)
		case ctx.Err() != nil:
			return failf(stderr, name, "Interrupted while waiting for the lock on %s", key)
		case errors.Is(err, context.DeadlineExceeded) && acqCtx.Err() != nil:
			return failf(stderr, name, "Error! Timed out after %v waiting for the lock on %s", *timeout, key)
		default:
			return failf(stderr, name, "Error! Cannot acquire the lock on %s: %v", key, err)
		}
	}
	held = true
	background.Go(func() { l.monitor(bgCtx) })
	logf("holding %s; running %s", key, strings.Join(argv, " "))

	err := child.Run()
	what := truncate(strings.Join(argv, " "), 40)
	if child.ProcessState == nil {
		if ctx.Err() != nil {
			return failf(stderr, name, "Interrupted before starting %s", what)
		}
		return failf(stderr, name, "Error! Cannot run %s: %v", what, err)
	}
	if cause := context.Cause(lockCtx); stopped.Load() && errors.Is(cause, errLockLost) {
		return failf(stderr, name, "Error! %v; stopped %s", cause, what)
	}
	code := childExitCode(child.ProcessState)
	logf("%s exited with code %d", what, code)
	return code
}

// childCommand builds the command run under the lock, through the shell
// the way `consul lock` does unless shell is false.
func childCommand(ctx context.Context, argv []string, shell bool) *exec.Cmd {
	if !shell {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	sh := os.Getenv("SHELL")
	if sh == "" {
		sh = "/bin/sh"
	}
	return exec.CommandContext(ctx, sh, "-c", strings.Join(argv, " "))
}

// childExitCode is the child's exit status as a shell reports it.
func childExitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// sessionLock is a lock on one K/V key held through a session, the way
// Consul's api.Lock does it: the key is acquired with ?acquire=<session>,
// the session is kept alive by renewal, and the lock is lost when the
// key no longer names the session.
type sessionLock struct {
	cf      *clientFlags
	key     string
	cfg     lockConfig
	session string
	// lose cancels the lock context with a cause wrapping errLockLost.
	lose context.CancelCauseFunc
}

func (l *sessionLock) markLost(format string, a ...any) {
	l.lose(fmt.Errorf("%w on %s: %s", errLockLost, l.key, fmt.Sprintf(format, a...)))
}

func (l *sessionLock) createSession(ctx context.Context, name string) error {
	body, err := json.Marshal(map[string]string{
		"Name":     name,
		"TTL":      waitParam(l.cfg.SessionTTL),
		"Behavior": "release",
	})
	if err != nil {
		return err
	}
	resp, err := l.cf.send(ctx, "PUT", "/v1/session/create", nil, body)
	if err != nil {
		return err
	}
	if !resp.ok() {
		return resp.err()
	}
	var out struct{ ID string }
	if err := resp.decode(&out); err != nil {
		return err
	}
	if out.ID == "" {
		return errors.New("the agent answered without a session ID")
	}
	l.session = out.ID
	return nil
}

// renew renews the session every TTL/2 until ctx ends. The lock is lost
// when the agent no longer knows the session, or when no renewal has
// succeeded for a whole TTL.
func (l *sessionLock) renew(ctx context.Context) {
	ttl := l.cfg.SessionTTL
	lastOK := time.Now()
	wait := ttl / 2
	for {
		if sleepCtx(ctx, wait) != nil {
			return
		}
		resp, err := l.cf.send(ctx, "PUT", "/v1/session/renew/"+url.PathEscape(l.session), nil, nil)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && resp.status == 404:
			l.markLost("session %s no longer exists", l.session)
			return
		case err == nil && resp.ok():
			lastOK = time.Now()
			var entries []struct{ TTL string }
			if resp.decode(&entries) == nil && len(entries) > 0 {
				// The agent may hand back a longer TTL; follow it.
				if d, err := time.ParseDuration(entries[0].TTL); err == nil && d > 0 {
					ttl = d
				}
			}
			wait = ttl / 2
		default:
			if err == nil {
				err = resp.err()
			}
			if time.Since(lastOK) >= ttl {
				l.markLost("session %s not renewed for its TTL of %v: %v", l.session, ttl, err)
				return
			}
			wait = min(l.cfg.MonitorRetryWait, ttl/4)
		}
	}
}

// acquire waits until the session holds the key. While another session
// holds it, it blocks on the key's index rather than polling.
func (l *sessionLock) acquire(ctx context.Context) error {
	var index uint64
	for {
		q := url.Values{}
		if index > 0 {
			q.Set("index", strconv.FormatUint(index, 10))
			q.Set("wait", waitParam(l.cfg.BlockWait))
		}
		resp, err := l.cf.send(ctx, "GET", kvPath(l.key), q, nil)
		if err != nil {
			return err
		}
		if resp.status != 404 {
			if !resp.ok() {
				return resp.err()
			}
			var pairs []kvPair
			if err := resp.decode(&pairs); err != nil {
				return err
			}
			if len(pairs) > 0 {
				switch p := pairs[0]; {
				case p.Flags != lockFlagValue:
					return errLockConflict
				case p.Session == l.session:
					return nil
				case p.Session != "":
					// Held by someone else: block until the key changes.
					index = resp.index()
					if index == 0 {
						if err := sleepCtx(ctx, l.cfg.MonitorRetryWait); err != nil {
							return err
						}
					}
					continue
				}
			}
		}
		q = url.Values{"acquire": {l.session}, "flags": {strconv.FormatUint(lockFlagValue, 10)}}
		resp, err = l.cf.send(ctx, "PUT", kvPath(l.key), q, []byte{})
		if err != nil {
			return err
		}
		if !resp.ok() {
			return resp.err()
		}
		ok, err := resp.boolean()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		// Free but refused: a previous holder's lock-delay, or another
		// waiter won. Look again after a pause.
		if err := sleepCtx(ctx, l.cfg.RetryWait); err != nil {
			return err
		}
		index = 0
	}
}

// monitor watches the held key with blocking reads and marks the lock
// lost when the key no longer names the session, or cannot be read
// MonitorRetries+1 times in a row.
func (l *sessionLock) monitor(ctx context.Context) {
	var index uint64
	failures := 0
	for {
		q := url.Values{}
		if index > 0 {
			q.Set("index", strconv.FormatUint(index, 10))
			q.Set("wait", waitParam(l.cfg.BlockWait))
		}
		resp, err := l.cf.send(ctx, "GET", kvPath(l.key), q, nil)
		if ctx.Err() != nil {
			return
		}
		var pairs []kvPair
		if err == nil && resp.status != 404 {
			if !resp.ok() {
				err = resp.err()
			} else {
				err = resp.decode(&pairs)
			}
		}
		if err != nil {
			failures++
			if failures > l.cfg.MonitorRetries {
				l.markLost("cannot read the key: %v", err)
				return
			}
			if sleepCtx(ctx, l.cfg.MonitorRetryWait) != nil {
				return
			}
			continue
		}
		failures = 0
		switch {
		case len(pairs) == 0:
			l.markLost("the key was deleted")
			return
		case pairs[0].Session != l.session:
			l.markLost("the key is no longer held by session %s (session invalidated?)", l.session)
			return
		}
		index = resp.index()
		if index == 0 && sleepCtx(ctx, l.cfg.MonitorRetryWait) != nil {
			return
		}
	}
}

func (l *sessionLock) release(ctx context.Context) error {
	q := url.Values{"release": {l.session}, "flags": {strconv.FormatUint(lockFlagValue, 10)}}
	resp, err := l.cf.send(ctx, "PUT", kvPath(l.key), q, []byte{})
	if err != nil {
		return err
	}
	if !resp.ok() {
		return resp.err()
	}
	ok, err := resp.boolean()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the agent refused: the session no longer holds the key")
	}
	return nil
}

// cleanup deletes the lock key if nobody holds it, as Consul's lock does
// on exit, so that finished locks do not pile up. A CAS delete leaves a
// key someone acquired in the meantime alone; failures are harmless.
func (l *sessionLock) cleanup(ctx context.Context) {
	var pairs []kvPair
	found, err := kvRead(ctx, l.cf, l.key, nil, &pairs)
	if err != nil || !found || len(pairs) == 0 {
		return
	}
	if p := pairs[0]; p.Flags == lockFlagValue && p.Session == "" {
		q := url.Values{"cas": {strconv.FormatUint(p.ModifyIndex, 10)}}
		_, _ = l.cf.send(ctx, "DELETE", kvPath(l.key), q, nil)
	}
}

func (l *sessionLock) destroySession(ctx context.Context) error {
	resp, err := l.cf.send(ctx, "PUT", "/v1/session/destroy/"+url.PathEscape(l.session), nil, nil)
	if err != nil {
		return err
	}
	if !resp.ok() {
		return resp.err()
	}
	return nil
}

// sleepCtx sleeps for d or until ctx ends, returning ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
