package catalog

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPClientCatalog(t *testing.T) {
	f := newFakeServers(t)
	c := f.client()
	c.Token, c.Datacenter = "tok", "dc1"
	ctx := ctxTimeout(t, 10*time.Second)

	ns, err := c.NodeServices(ctx, "n1")
	if err != nil || ns.Node != nil || len(ns.Services) != 0 {
		t.Fatalf("unknown node: %+v, %v", ns, err)
	}
	s := svc("web", "web", "v1")
	s.Proxy = []byte(`{"x":1}`)
	err = c.Register(ctx, &RegisterRequest{Node: "n1", Address: "10.0.0.1", Service: &s,
		Checks: []HealthCheck{{Node: "n1", CheckID: "c", Name: "c", Status: "passing", ServiceID: "web", Definition: []byte(`{"TTL":"1s"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	token := f.headers.Get("X-Consul-Token")
	f.mu.Unlock()
	if token != "tok" || f.query("/v1/catalog/register") != "dc=dc1" {
		t.Errorf("token %q, query %q", token, f.query("/v1/catalog/register"))
	}
	f.put("n1", "10.0.0.1", Service{}, HealthCheck{CheckID: SerfCheckID, Name: "serf", Status: "passing"})
	ns, err = c.NodeServices(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if ns.Node == nil || ns.Node.Node != "n1" || len(ns.Services) != 1 || ns.Services[0].ID != "web" ||
		string(ns.Services[0].Proxy) != `{"x":1}` || len(ns.Checks) != 2 {
		t.Errorf("node services %+v", ns)
	}
	if strings.Contains(f.query("/v1/catalog/node/n1"), "stale") {
		t.Error("full sync reads must not be stale")
	}
	if err := c.Deregister(ctx, &DeregisterRequest{Node: "n1", ServiceID: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.service("n1", "web"); ok {
		t.Error("not deregistered")
	}
}

func TestHTTPClientErrors(t *testing.T) {
	var code int
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "42")
		w.Header().Set("X-Consul-LastContact", "1500")
		w.Header().Set("X-Consul-KnownLeader", "false")
		http.Error(w, body, code)
	}))
	defer srv.Close()
	ctx := ctxTimeout(t, 10*time.Second)
	c := &HTTPClient{BaseURL: func(bool) (string, error) { return srv.URL + "/", nil }}

	code, body = 500, "No cluster leader"
	err := c.Register(ctx, &RegisterRequest{Node: "n"})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 || se.Body != "No cluster leader" || !transient(err) {
		t.Errorf("500: %v", err)
	}
	if err.Error() != "catalog: PUT /v1/catalog/register: 500 No cluster leader" {
		t.Errorf("message %q", err)
	}
	code, body = 400, "Invalid service address"
	if err := c.Register(ctx, &RegisterRequest{Node: "n"}); transient(err) {
		t.Errorf("400 counted as transient: %v", err)
	}
	code, body = 404, ""
	if ns, err := c.NodeServices(ctx, "n"); err != nil || ns.Node != nil {
		t.Errorf("404 node: %+v, %v", ns, err)
	}

	code, body = 200, `[]`
	entries, meta, err := c.ServiceHealth(ctx, "a b", QueryOptions{Index: 7, Wait: time.Second, Stale: true})
	if err != nil || len(entries) != 0 {
		t.Fatalf("%v %v", entries, err)
	}
	if meta != (QueryMeta{Index: 42, LastContact: 1500 * time.Millisecond, KnownLeader: false}) {
		t.Errorf("meta %+v", meta)
	}

	c.MaxResponseBytes = 10
	code, body = 200, strings.Repeat("x", 100)
	if _, _, err := c.ServiceHealth(ctx, "web", QueryOptions{}); err == nil || !strings.Contains(err.Error(), "larger than 10 bytes") {
		t.Errorf("oversized: %v", err)
	}

	c.BaseURL = func(bool) (string, error) { return "", errors.New("No known Consul servers") }
	if err := c.Register(ctx, &RegisterRequest{}); !errors.Is(err, ErrNoServer) || !transient(err) {
		t.Errorf("no server: %v", err)
	}

	f := newFakeServers(t)
	var failed string
	c = &HTTPClient{BaseURL: func(bool) (string, error) { return "http://" + f.deadAddr, nil },
		Failed: func(base string, err error) { failed = base }}
	if err := c.Register(ctx, &RegisterRequest{}); err == nil || failed != "http://"+f.deadAddr {
		t.Errorf("refused: %v, Failed told %q", err, failed)
	}
	// A cancelled request is not the server's fault.
	failed = ""
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c.Register(cctx, &RegisterRequest{})
	if failed != "" {
		t.Error("Failed called for a cancelled request")
	}
}
