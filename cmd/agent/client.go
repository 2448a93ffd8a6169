package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// clientFlags are the options every client command shares: where the
// agent's HTTP API is.
type clientFlags struct {
	httpAddr string
}

// defaultHTTPAddr follows the habits users already have: OUTRIGGER_HTTP_ADDR,
// then CONSUL_HTTP_ADDR, then 127.0.0.1:8500.
func defaultHTTPAddr(env func(string) string) string {
	for _, k := range []string{"OUTRIGGER_HTTP_ADDR", "CONSUL_HTTP_ADDR"} {
		if v := env(k); v != "" {
			return v
		}
	}
	return "127.0.0.1:8500"
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.httpAddr, "http-addr", defaultHTTPAddr(os.Getenv),
		"Address of the agent's HTTP API (also from OUTRIGGER_HTTP_ADDR or CONSUL_HTTP_ADDR)")
}

// baseURL turns "host:port", "http://host:port" or "unix://..." forms into
// a base URL. Only http(s) is supported.
func (c *clientFlags) baseURL() (*url.URL, error) {
	addr := c.httpAddr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-http-addr %q: want host:port or http://host:port", c.httpAddr)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("-http-addr %q: scheme %q not supported, use http or https", c.httpAddr, u.Scheme)
	}
	return u, nil
}

// do sends one request and decodes a JSON answer into out (when non-nil).
// A non-2xx answer becomes an error carrying the agent's message.
func (c *clientFlags) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	base, err := c.baseURL()
	if err != nil {
		return err
	}
	ref, err := url.Parse(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base.ResolveReference(ref).String(), body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer from %s%s: %w", base.Host, path, err)
		}
	}
	return nil
}

func clientContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}
