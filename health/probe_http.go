package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// userAgent is what Consul's HTTP checks send; applications filter it out
// of access logs, so a drop-in replacement sends the same.
const userAgent = "Consul Health Check"

type httpProbe struct {
	def    *CheckDefinition
	client *http.Client
	limit  int
}

func newHTTPProbe(d *CheckDefinition, limit int) *httpProbe {
	c := &http.Client{Transport: newTransport(d)}
	if d.DisableRedirects {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &httpProbe{def: d, client: c, limit: limit}
}

func (p *httpProbe) probe(ctx context.Context) result {
	method := p.def.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if p.def.Body != "" {
		body = strings.NewReader(p.def.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.def.HTTP, body)
	if err != nil {
		return result{StatusCritical, err.Error()}
	}
	for name, vals := range p.def.Header {
		for _, v := range vals {
			req.Header.Add(name, v)
		}
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}

	resp, err := p.client.Do(req)
	if err != nil {
		return result{StatusCritical, err.Error()}
	}
	defer resp.Body.Close()
	// Read one byte past the cap so that capHead knows to mark the cut.
	// A read error (the timeout hitting mid-body) keeps what was read: the
	// status code has already answered.
	out, _ := io.ReadAll(io.LimitReader(resp.Body, int64(p.limit)+1))
	output := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, p.def.HTTP, resp.Status, out)

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return result{StatusPassing, output}
	case resp.StatusCode == http.StatusTooManyRequests:
		return result{StatusWarning, output}
	default:
		return result{StatusCritical, output}
	}
}
