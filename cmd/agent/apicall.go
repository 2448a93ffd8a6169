package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiResponse is one answer of the agent's HTTP API, read whole. The K/V,
// lock and operator commands need more than clientFlags.do gives: the
// status (404 means "no such key", not failure), X-Consul-Index for
// blocking reads, and bodies that are not JSON documents (`true`/`false`).
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request. Only transport failures are errors: every HTTP
// status comes back in the response for the caller to judge. path is
// unescaped ("/v1/kv/" + key); query may be nil.
func (c *clientFlags) send(ctx context.Context, method, path string, query url.Values, body []byte) (*apiResponse, error) {
	base, err := c.baseURL()
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the agent at %s: %w", base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read answer from %s: %w", base.Host, err)
	}
	return &apiResponse{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func (r *apiResponse) ok() bool { return r.status/100 == 2 }

// err describes an answer the caller did not expect, with the agent's
// message.
func (r *apiResponse) err() error {
	msg := strings.TrimSpace(string(r.body))
	if msg == "" {
		return fmt.Errorf("agent answered %d %s", r.status, http.StatusText(r.status))
	}
	return fmt.Errorf("agent answered %d %s: %s", r.status, http.StatusText(r.status), msg)
}

// index is X-Consul-Index, or 0 when missing or malformed.
func (r *apiResponse) index() uint64 {
	n, _ := strconv.ParseUint(r.header.Get("X-Consul-Index"), 10, 64)
	return n
}

// decode unmarshals a JSON body.
func (r *apiResponse) decode(out any) error {
	if err := json.Unmarshal(r.body, out); err != nil {
		return fmt.Errorf("decode the agent's answer: %w", err)
	}
	return nil
}

// boolean reads the `true`/`false` body of K/V and session writes.
func (r *apiResponse) boolean() (bool, error) {
	switch strings.TrimSpace(string(r.body)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("agent answered %q, want true or false", truncate(string(r.body), 80))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// waitParam formats a duration for ?wait=: whole seconds when possible,
// which every Consul-style server parses.
func waitParam(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
