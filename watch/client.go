package watch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody caps what one answer may hold; a catalog bigger than this is a
// misconfiguration, not something to buffer.
const maxBody = 64 << 20

// Client is a small client for the agent's HTTP API that knows blocking
// queries. The zero value is not usable; use NewClient.
type Client struct {
	base *url.URL
	// HTTP sends the requests. If nil, a client without an overall timeout
	// is used (blocking queries outlive any sensible fixed timeout; the
	// context bounds each call).
	HTTP *http.Client
	// Token, if set, is sent as X-Consul-Token.
	Token string
}

// NewClient accepts "host:port", "http://host:port" or "https://host:port".
func NewClient(addr string) (*Client, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return nil, fmt.Errorf("watch: http address is empty")
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("watch: http address %q: want host:port or http://host:port", addr)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("watch: http address %q: scheme %q not supported, use http or https", addr, u.Scheme)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u}, nil
}

// Addr is the base URL the client talks to.
func (c *Client) Addr() string { return c.base.String() }

// Result is one answer of the agent.
type Result struct {
	// Body is the answer's body (empty on 404).
	Body []byte
	// Index is X-Consul-Index (0 when absent).
	Index uint64
	// Found is false when the agent answered 404 (a missing key).
	Found bool
}

// StatusError is an answer other than 2xx or 404.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}

// Get reads path (e.g. "/v1/kv/app") with the query params. With index >
// 0 it is a blocking query that returns when the result's index passes
// index or after wait.
func (c *Client) Get(ctx context.Context, path string, params url.Values, index uint64, wait time.Duration) (Result, error) {
	q := url.Values{}
	for k, v := range params {
		q[k] = append([]string(nil), v...)
	}
	if index > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
		if wait > 0 {
			q.Set("wait", strconv.FormatInt(wait.Milliseconds(), 10)+"ms")
		}
	}
	// Bound the call: the server answers a blocking query within wait
	// plus its jitter (wait/16); a connection that died silently must not
	// hang the watch for ever.
	limit := 60 * time.Second
	if index > 0 {
		w := wait
		if w <= 0 {
			w = 5 * time.Minute
		}
		limit += w + w/16
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{}, err
	}
	if c.Token != "" {
		req.Header.Set("X-Consul-Token", c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("cannot reach the agent at %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Result{}, fmt.Errorf("read answer of %s: %w", path, err)
	}
	if len(body) > maxBody {
		return Result{}, fmt.Errorf("answer of %s is larger than %d bytes", path, maxBody)
	}
	var res Result
	if h := resp.Header.Get("X-Consul-Index"); h != "" {
		n, err := strconv.ParseUint(h, 10, 64)
		if err != nil {
			return Result{}, fmt.Errorf("answer of %s: bad X-Consul-Index %q", path, h)
		}
		res.Index = n
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return res, nil
	case resp.StatusCode/100 != 2:
		return Result{}, &StatusError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(body))}
	}
	res.Body, res.Found = body, true
	return res, nil
}
