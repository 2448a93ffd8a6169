package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/internal/testutil"
)

// startSmallCluster starts one server (-bootstrap-expect 1) and the given
// client agents, each with its extra flags: enough for the proxy, whose
// behaviour does not depend on Raft's quorum.
func startSmallCluster(t *testing.T, clients map[string][]string) (*testutil.Proc, map[string]*testutil.Proc) {
	t.Helper()
	if testing.Short() {
		t.Skip("process cluster test: skipped in -short mode")
	}
	bin := testutil.AgentBinary(t)
	s := testutil.NewProc(t, bin, "s1", "-server", "-bootstrap-expect", "1")
	s.Start()
	out := map[string]*testutil.Proc{}
	for name, args := range clients {
		p := testutil.NewProc(t, bin, name, append([]string{"-retry-join", s.SerfAddr()}, args...)...)
		out[name] = p
	}
	for _, p := range out {
		p.Start()
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*testutil.Proc{s}, mapValues(out)...) {
				t.Logf("--- %s log (tail):\n%s", p.Name, tail(p.Logs(), 40))
			}
		}
	})
	cl := client(t, s)
	testutil.WaitFor(t, 60*time.Second, "a leader", func() error {
		l, err := cl.Status().Leader()
		if err != nil || l == "" {
			return fmt.Errorf("leader %q, %v", l, err)
		}
		return nil
	})
	return s, out
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// backend is one instance of a test service: it answers its name.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func startBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			b.hits.Add(1)
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) port() int { return b.srv.Listener.Addr().(*net.TCPAddr).Port }

// register adds the backend as an instance of service on agent p, with an
// HTTP check every 500 ms.
func (b *backend) register(t *testing.T, p *testutil.Proc, service string) {
	t.Helper()
	err := client(t, p).Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: b.name, Name: service, Port: b.port(), Address: "127.0.0.1",
		Check: &consul.AgentServiceCheck{HTTP: b.srv.URL + "/health", Interval: "500ms", Timeout: "1s"},
	})
	if err != nil {
		t.Fatalf("register %s: %v", b.name, err)
	}
}

// TestSidecarFollowsInstances runs the sidecar as users do: agent "web"
// started with -service web -upstream api:PORT, agent "apis" owning three
// api instances. A steady client loop through the upstream sees every
// instance; killing one fails at most the requests in flight, and then
// none; a new instance gets traffic quickly.
func TestSidecarFollowsInstances(t *testing.T) {
	upPort := testutil.FreePort(t)
	app := startBackend(t, "web-app")
	_, agents := startSmallCluster(t, map[string][]string{
		"web":  {"-service", "web", "-service-port", strconv.Itoa(app.port()), "-upstream", "api:" + strconv.Itoa(upPort)},
		"apis": nil,
	})
	web, apis := agents["web"], agents["apis"]
	backends := []*backend{startBackend(t, "api-1"), startBackend(t, "api-2"), startBackend(t, "api-3")}
	for _, b := range backends {
		b.register(t, apis, "api")
	}
	testutil.WaitFor(t, 30*time.Second, "three api instances passing", func() error {
		entries, _, err := client(t, web).Health().Service("api", "", true, nil)
		if err != nil || len(entries) != 3 {
			return fmt.Errorf("%d passing, %v", len(entries), err)
		}
		return nil
	})

	// The client loop: a new connection per request, so every request is
	// balanced on its own.
	tr := &http.Transport{DisableKeepAlives: true}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "http://127.0.0.1:" + strconv.Itoa(upPort) + "/"
	var mu sync.Mutex
	var failures []string
	var okCount atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const workers = 4
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := hc.Get(url)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					mu.Unlock()
					continue
				}
				okCount.Add(1)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	failuresNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), failures...)
	}

	testutil.WaitFor(t, 20*time.Second, "every instance served through the upstream", func() error {
		for _, b := range backends {
			if b.hits.Load() == 0 {
				return fmt.Errorf("%s has no traffic yet", b.name)
			}
		}
		return nil
	})
	if f := failuresNow(); len(f) > 0 {
		t.Fatalf("requests failed before any change: %v", f)
	}

	// Kill api-2: its listener and connections go at once.
	killed := backends[1]
	killedAt := time.Now()
	killed.srv.CloseClientConnections()
	killed.srv.Listener.Close()
	okAtKill := okCount.Load()
	testutil.WaitFor(t, 30*time.Second, "api-2 out of the passing set", func() error {
		entries, _, err := client(t, web).Health().Service("api", "", true, nil)
		if err != nil || len(entries) != 2 {
			return fmt.Errorf("%d passing, %v", len(entries), err)
		}
		return nil
	})
	failedAtKill := len(failuresNow())
	// From here the proxy must not send to api-2 any more.
	settle := time.Now()
	testutil.WaitFor(t, 30*time.Second, "2 s of requests after the change", func() error {
		if time.Since(settle) < 2*time.Second {
			return fmt.Errorf("waiting")
		}
		return nil
	})
	after := failuresNow()[failedAtKill:]
	t.Logf("FIGURE sidecar: api-2 killed: %d requests failed around the kill (%d workers in flight), %d after it left the passing set; %d requests ok meanwhile; detected after %v",
		failedAtKill, workers, len(after), okCount.Load()-okAtKill, time.Since(killedAt).Round(time.Millisecond))
	if failedAtKill > workers {
		t.Errorf("%d requests failed around the kill, more than the %d in flight: %v", failedAtKill, workers, failuresNow())
	}
	if len(after) > 0 {
		t.Errorf("requests failed after api-2 left the passing set: %v", after)
	}

	// Add api-4: traffic reaches it.
	added := startBackend(t, "api-4")
	addedAt := time.Now()
	added.register(t, apis, "api")
	testutil.WaitFor(t, 30*time.Second, "api-4 gets traffic", func() error {
		if added.hits.Load() == 0 {
			return fmt.Errorf("no traffic yet")
		}
		return nil
	})
	t.Logf("FIGURE sidecar: a new instance got traffic %v after its registration (its first check at 500 ms intervals included)", time.Since(addedAt).Round(time.Millisecond))
	if f := failuresNow()[failedAtKill:]; len(f) > 0 {
		t.Errorf("requests failed after the kill settled: %v", f)
	}

	// The sidecar's own port answers for web (the mesh address in the
	// catalog): -upstream gave web a sidecar service.
	entries, _, err := client(t, web).Health().Service("web-sidecar-proxy", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("web-sidecar-proxy instances: %v, %v", entries, err)
	}
	inbound := "http://127.0.0.1:" + strconv.Itoa(entries[0].Service.Port) + "/"
	resp, err := hc.Get(inbound)
	if err != nil {
		t.Fatalf("GET the sidecar's inbound port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "web-app" {
		t.Errorf("inbound answered %q, want the app's web-app", body)
	}
}

// TestIngressFollowsAPI runs an ingress agent (-ingress edge) and changes
// its routes through PUT /v1/outrigger/ingress/edge: the change takes
// effect without a restart; a bad configuration is a 400 and changes
// nothing.
func TestIngressFollowsAPI(t *testing.T) {
	port := testutil.FreePort(t)
	_, agents := startSmallCluster(t, map[string][]string{"edge": {"-ingress", "edge"}, "apps": nil})
	edge, apps := agents["edge"], agents["apps"]
	blue, green := startBackend(t, "blue-1"), startBackend(t, "green-1")
	blue.register(t, apps, "blue")
	green.register(t, apps, "green")
	for _, svc := range []string{"blue", "green"} {
		testutil.WaitFor(t, 30*time.Second, svc+" passing", func() error {
			entries, _, err := client(t, edge).Health().Service(svc, "", true, nil)
			if err != nil || len(entries) != 1 {
				return fmt.Errorf("%d passing, %v", len(entries), err)
			}
			return nil
		})
	}

	put := func(cfg string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+edge.HTTPAddr()+"/v1/outrigger/ingress/edge", strings.NewReader(cfg))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(bytes.TrimSpace(b))
	}
	get := func(host, path string) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return string(b), nil
	}

	cfg1 := fmt.Sprintf(`{"listeners": [{"port": %d, "protocol": "http", "routes": [
		{"hosts": ["green.example"], "service": "green"},
		{"path_prefix": "/", "service": "blue"}]}]}`, port)
	if code, body := put(cfg1); code != 200 || body != "true" {
		t.Fatalf("PUT ingress: %d %s", code, body)
	}
	testutil.WaitFor(t, 20*time.Second, "the ingress routes by host", func() error {
		if got, err := get("green.example", "/"); err != nil || got != "green-1" {
			return fmt.Errorf("green.example: %q, %v", got, err)
		}
		if got, err := get("other.example", "/x"); err != nil || got != "blue-1" {
			return fmt.Errorf("other.example: %q, %v", got, err)
		}
		return nil
	})

	// A bad configuration: 400 naming the problem, and the routes stay.
	if code, body := put(`{"listeners": [{"port": 1, "protocol": "http", "routes": [{"path_prefix": "/"}]}]}`); code != 400 || !strings.Contains(body, "service") {
		t.Errorf("PUT a route without a service: %d %q, want 400 naming the service", code, body)
	}
	if code, body := put(`{"listeners": [], "bogus": 1}`); code != 400 || !strings.Contains(body, "bogus") {
		t.Errorf("PUT an unknown field: %d %q, want 400 naming it", code, body)
	}

	// Swap: everything to green. No restart.
	changedAt := time.Now()
	cfg2 := fmt.Sprintf(`{"listeners": [{"port": %d, "protocol": "http", "routes": [{"path_prefix": "/", "service": "green"}]}]}`, port)
	if code, body := put(cfg2); code != 200 {
		t.Fatalf("PUT ingress: %d %s", code, body)
	}
	testutil.WaitFor(t, 20*time.Second, "the new route serving", func() error {
		if got, err := get("other.example", "/"); err != nil || got != "green-1" {
			return fmt.Errorf("other.example: %q, %v", got, err)
		}
		return nil
	})
	t.Logf("FIGURE ingress: a route change through the API served after %v", time.Since(changedAt).Round(time.Millisecond))

	// An invalid configuration written to K/V directly (the API would
	// refuse it) is counted, and the last good one keeps serving.
	metric := func() (float64, error) {
		resp, err := http.Get("http://" + edge.HTTPAddr() + "/v1/agent/metrics?format=prometheus")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "outrigger_ingress_config_errors_total "); ok {
				return strconv.ParseFloat(v, 64)
			}
		}
		return 0, fmt.Errorf("no outrigger_ingress_config_errors_total")
	}
	before, err := metric()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, edge).KV().Put(&consul.KVPair{Key: "outrigger/ingress/edge", Value: []byte(`{"listeners": "nope"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the invalid configuration counted", func() error {
		if n, err := metric(); err != nil || n <= before {
			return fmt.Errorf("errors %v (before %v), %v", n, before, err)
		}
		return nil
	})
	if got, err := get("other.example", "/"); err != nil || got != "green-1" {
		t.Errorf("after an invalid configuration in K/V: %q, %v; want the last good routes serving", got, err)
	}

	// DELETE removes the configuration: the ingress closes its listeners.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+edge.HTTPAddr()+"/v1/outrigger/ingress/edge", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE ingress: %d", resp.StatusCode)
	}
	testutil.WaitFor(t, 20*time.Second, "the ingress listener closed", func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("port %d still accepts connections", port)
		}
		return nil
	})
	if !edge.Running() {
		t.Fatal("the ingress agent stopped")
	}
}
