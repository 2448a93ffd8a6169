package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is what anti-entropy needs from the servers' catalog. HTTPClient
// implements it over Consul's HTTP API; tests use in-memory fakes.
type Client interface {
	// Register is PUT /v1/catalog/register.
	Register(ctx context.Context, req *RegisterRequest) error
	// Deregister is PUT /v1/catalog/deregister.
	Deregister(ctx context.Context, req *DeregisterRequest) error
	// NodeServices returns what the servers hold for a node: the node,
	// its services and all its checks (serfHealth included). Node is nil
	// when the servers do not know the node.
	NodeServices(ctx context.Context, node string) (*NodeServices, error)
}

// HealthClient is what the View needs from the servers: blocking reads of
// /v1/health/service/:name.
type HealthClient interface {
	ServiceHealth(ctx context.Context, service string, q QueryOptions) ([]ServiceEntry, QueryMeta, error)
}

// QueryOptions are a read's consistency and blocking parameters.
type QueryOptions struct {
	// Index, if non-zero, makes the read block until the result's index
	// passes it, or Wait passes.
	Index uint64
	// Wait bounds a blocking read; the servers use 5 minutes if zero.
	Wait time.Duration
	// Stale lets any server answer from its own state (?stale).
	Stale bool
}

// QueryMeta is what a read's headers say about its answer.
type QueryMeta struct {
	// Index is X-Consul-Index: pass it back as QueryOptions.Index.
	Index uint64
	// LastContact is X-Consul-LastContact: how long since the answering
	// server heard from the leader (0 on the leader).
	LastContact time.Duration
	// KnownLeader is X-Consul-KnownLeader.
	KnownLeader bool
}

// DefaultMaxResponseBytes bounds a response body HTTPClient reads: a
// /v1/health/service answer for a service with many thousands of
// instances fits.
const DefaultMaxResponseBytes = 64 << 20

// HTTPClient implements Client and HealthClient with Consul's HTTP API.
// Requests go to the base URL BaseURL picks, through Transport: give it
// the agent's server-forwarding transport and a picker of live servers,
// or simply the agent's own HTTP address, whose handlers forward.
type HTTPClient struct {
	// Transport carries the requests. If nil, http.DefaultTransport.
	Transport http.RoundTripper
	// BaseURL returns the base URL ("http://10.0.0.5:8500") to send the
	// next request to. stale says the request may be answered by any
	// server; otherwise it wants the leader (or a server that forwards to
	// it). Required.
	BaseURL func(stale bool) (string, error)
	// Failed, if set, is told about a base URL a request could not reach
	// (no HTTP answer), so that the picker can steer away from it.
	Failed func(baseURL string, err error)
	// Datacenter is sent as ?dc= when set.
	Datacenter string
	// Token is sent as X-Consul-Token when set.
	Token string
	// MaxResponseBytes bounds a response body. If zero,
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Register implements Client.
func (c *HTTPClient) Register(ctx context.Context, req *RegisterRequest) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/catalog/register", nil, req, false, nil)
	return err
}

// Deregister implements Client.
func (c *HTTPClient) Deregister(ctx context.Context, req *DeregisterRequest) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/catalog/deregister", nil, req, false, nil)
	return err
}

// NodeServices implements Client with GET /v1/catalog/node/:node and GET
// /v1/health/node/:node (default consistency: the leader answers).
func (c *HTTPClient) NodeServices(ctx context.Context, node string) (*NodeServices, error) {
	var cat *struct {
		Node     *Node
		Services map[string]Service
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/catalog/node/"+url.PathEscape(node), nil, nil, false, &cat)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return &NodeServices{}, nil
	}
	if err != nil {
		return nil, err
	}
	if cat == nil || cat.Node == nil {
		return &NodeServices{}, nil
	}
	out := &NodeServices{Node: cat.Node}
	for id, s := range cat.Services {
		if s.ID == "" {
			s.ID = id
		}
		out.Services = append(out.Services, s)
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/health/node/"+url.PathEscape(node), nil, nil, false, &out.Checks); err != nil {
		return nil, err
	}
	return out, nil
}

// ServiceHealth implements HealthClient with GET /v1/health/service/:name.
func (c *HTTPClient) ServiceHealth(ctx context.Context, service string, q QueryOptions) ([]ServiceEntry, QueryMeta, error) {
	v := url.Values{}
	if q.Index > 0 {
		v.Set("index", strconv.FormatUint(q.Index, 10))
	}
	if q.Wait > 0 {
		v.Set("wait", strconv.FormatInt(q.Wait.Milliseconds(), 10)+"ms")
	}
	var entries []ServiceEntry
	h, err := c.do(ctx, http.MethodGet, "/v1/health/service/"+url.PathEscape(service), v, nil, q.Stale, &entries)
	if err != nil {
		return nil, QueryMeta{}, err
	}
	return entries, parseQueryMeta(h), nil
}

func parseQueryMeta(h http.Header) QueryMeta {
	var m QueryMeta
	m.Index, _ = strconv.ParseUint(h.Get("X-Consul-Index"), 10, 64)
	if ms, err := strconv.ParseUint(h.Get("X-Consul-LastContact"), 10, 64); err == nil {
		m.LastContact = time.Duration(ms) * time.Millisecond
	}
	m.KnownLeader = h.Get("X-Consul-KnownLeader") == "true"
	return m
}

func (c *HTTPClient) do(ctx context.Context, method, path string, query url.Values, body any, stale bool, out any) (http.Header, error) {
	fail := func(err error) error { return fmt.Errorf("catalog: %s %s: %w", method, path, err) }
	if c.BaseURL == nil {
		return nil, fail(fmt.Errorf("%w: HTTPClient.BaseURL is nil", ErrNoServer))
	}
	base, err := c.BaseURL(stale)
	if err != nil {
		return nil, fail(fmt.Errorf("%w: %v", ErrNoServer, err))
	}
	if c.Datacenter != "" {
		if query == nil {
			query = url.Values{}
		}
		query.Set("dc", c.Datacenter)
	}
	u := strings.TrimRight(base, "/") + path
	qs := query.Encode()
	if stale && method == http.MethodGet {
		// A flag, sent without "=" as Consul's clients do.
		qs = strings.TrimPrefix(qs+"&stale", "&")
	}
	if qs != "" {
		u += "?" + qs
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fail(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fail(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("X-Consul-Token", c.Token)
	}
	tr := c.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if c.Failed != nil && ctx.Err() == nil {
			c.Failed(base, err)
		}
		return nil, fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("catalog: %w", &StatusError{Method: method, Path: path, Code: resp.StatusCode, Body: strings.TrimSpace(string(msg))})
	}
	limit := c.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fail(fmt.Errorf("read response: %w", err))
	}
	if int64(len(b)) > limit {
		return nil, fail(fmt.Errorf("response larger than %d bytes", limit))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fail(fmt.Errorf("decode response: %w", err))
		}
	}
	return resp.Header, nil
}

var (
	_ Client       = (*HTTPClient)(nil)
	_ HealthClient = (*HTTPClient)(nil)
)
