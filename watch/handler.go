package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Handler is what a watch runs when its result changes.
type Handler interface {
	// Handle gets the result's JSON and its X-Consul-Index.
	Handle(ctx context.Context, index uint64, data []byte) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, index uint64, data []byte) error

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, index uint64, data []byte) error {
	return f(ctx, index, data)
}

// maxOutput caps the handler output kept for the log.
const maxOutput = 4 << 10

// HandlerError is a handler that ran and failed.
type HandlerError struct {
	// ExitCode is the script's exit status (-1 when killed by a signal),
	// or the HTTP status for an http handler.
	ExitCode int
	// Output is the start of what it printed (stdout and stderr) or
	// answered.
	Output string
	Err    error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("%v (exit code %d): %s", e.Err, e.ExitCode, e.Output)
}

func (e *HandlerError) Unwrap() error { return e.Err }

func asHandlerError(err error, target **HandlerError) bool { return errors.As(err, target) }

// ScriptHandler runs a command with the result on stdin, as Consul's
// "script" handler_type does.
type ScriptHandler struct {
	// Args is the command and its arguments (no shell).
	Args []string
	// Env is added to the process environment, after CONSUL_INDEX.
	Env []string
	// Timeout bounds one run. If zero, the run is bounded only by the
	// watch's context.
	Timeout time.Duration
}

// CheckExecutable reports, before anything runs, that a handler command
// cannot be run: not found on PATH, not a regular file, or not
// executable.
func CheckExecutable(cmd string) error {
	if cmd == "" {
		return fmt.Errorf("empty command")
	}
	path, err := exec.LookPath(cmd)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		if fi, serr := os.Stat(cmd); serr == nil && strings.Contains(cmd, "/") {
			if fi.IsDir() {
				return fmt.Errorf("%q is a directory, not an executable", cmd)
			}
			return fmt.Errorf("%q is not executable (mode %v)", cmd, fi.Mode().Perm())
		}
		return fmt.Errorf("%q: %w", cmd, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%q: %w", cmd, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%q is a directory, not an executable", cmd)
	}
	return nil
}

// Handle implements Handler.
func (s *ScriptHandler) Handle(ctx context.Context, index uint64, data []byte) error {
	if len(s.Args) == 0 {
		return fmt.Errorf("script handler: no command")
	}
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, s.Args[0], s.Args[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	cmd.Env = append(os.Environ(), "CONSUL_INDEX="+strconv.FormatUint(index, 10))
	cmd.Env = append(cmd.Env, s.Env...)
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return &HandlerError{ExitCode: code, Output: strings.TrimSpace(out.String()), Err: fmt.Errorf("handler %s", s.Args[0])}
}

// capped is a writer that keeps the first maxOutput bytes.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOutput - c.Len(); room > 0 {
		if len(p) > room {
			c.Buffer.Write(p[:room])
		} else {
			c.Buffer.Write(p)
		}
	}
	return len(p), nil
}

// HTTPHandler sends the result to a URL, as Consul's "http" handler_type
// does.
type HTTPHandler struct {
	// URL is where to send (http_handler_config.path).
	URL string
	// Method defaults to POST.
	Method string
	// Header is added to each request.
	Header http.Header
	// Timeout bounds one request. If zero, 10s is used.
	Timeout time.Duration
	// Client sends the request. If nil, http.DefaultClient.
	Client *http.Client
}

// Handle implements Handler.
func (h *HTTPHandler) Handle(ctx context.Context, index uint64, data []byte) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := h.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("http handler: %w", err)
	}
	for k, vs := range h.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("http handler %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if resp.StatusCode/100 != 2 {
		return &HandlerError{ExitCode: resp.StatusCode, Output: strings.TrimSpace(string(body)),
			Err: fmt.Errorf("http handler %s answered %s", h.URL, resp.Status)}
	}
	return nil
}

// Interface guards.
var (
	_ Handler = (*ScriptHandler)(nil)
	_ Handler = (*HTTPHandler)(nil)
	_ Handler = HandlerFunc(nil)
)
