package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/health"
)

// fakeLocal is a LocalAgent over a real LocalState, without running
// checks: TTL updates go straight to the state.
type fakeLocal struct {
	*fakeAgent
	local *catalog.LocalState
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{fakeAgent: testAgent(), local: catalog.NewLocalState()}
}

func (f *fakeLocal) LocalState() *catalog.LocalState { return f.local }

func (f *fakeLocal) RegisterService(def *catalog.ServiceDefinition, replace bool) error {
	if err := def.Validate(); err != nil {
		return err
	}
	_, err := f.local.AddService(def.Service(), def.HealthChecks(), replace)
	return err
}

func (f *fakeLocal) DeregisterService(id string) error {
	_, err := f.local.RemoveService(id)
	return err
}

func (f *fakeLocal) RegisterCheck(def health.CheckDefinition) error {
	if err := def.Validate(); err != nil {
		return err
	}
	return f.local.AddCheck(catalog.HealthCheck{CheckID: def.ID, Name: def.Name, ServiceID: def.ServiceID, Status: def.Status, Type: def.Type()})
}

func (f *fakeLocal) DeregisterCheck(id string) error { return f.local.RemoveCheck(id) }

func (f *fakeLocal) UpdateTTL(id, status, output string) error {
	return f.local.UpdateCheck(id, status, output)
}

func putBody(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLocalEndpointsNeedALocalAgent(t *testing.T) {
	base := startServer(t, testAgent(), fakeStatus{})
	if code, _, _ := do(t, "GET", base+"/v1/agent/services"); code != http.StatusNotFound {
		t.Errorf("GET /v1/agent/services without a LocalAgent: %d, want 404", code)
	}
}

func TestLocalServiceEndpoints(t *testing.T) {
	f := newFakeLocal()
	base := startServer(t, f, fakeStatus{})

	code, body := putBody(t, base+"/v1/agent/service/register",
		`{"Name": "web", "Port": 80, "Tags": ["a"], "Check": {"TTL": "10s", "CheckID": "web-ttl"}}`)
	if code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	code, body, _ = do(t, "GET", base+"/v1/agent/services")
	var svcs map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &svcs); code != 200 || err != nil {
		t.Fatalf("services: %d %s %v", code, body, err)
	}
	if s := svcs["web"]; s["Service"] != "web" || s["Port"] != 80.0 || s["Datacenter"] != "dc1" {
		t.Errorf("services = %v", svcs)
	}

	// Blocking on the content hash: an unchanged state answers at the
	// wait's end with the same hash, a change wakes the query.
	code, _, h := do(t, "GET", base+"/v1/agent/service/web")
	hash := h.Get("X-Consul-ContentHash")
	if code != 200 || hash == "" || h.Get("X-Consul-LastContact") != "0" {
		t.Fatalf("service: %d, headers %v", code, h)
	}
	start := time.Now()
	_, _, h = do(t, "GET", base+"/v1/agent/service/web?hash="+hash+"&wait=200ms")
	if h.Get("X-Consul-ContentHash") != hash || time.Since(start) < 200*time.Millisecond {
		t.Errorf("unchanged: hash %q after %v", h.Get("X-Consul-ContentHash"), time.Since(start))
	}
	woke := make(chan string, 1)
	go func() {
		_, body, _ := do(t, "GET", base+"/v1/agent/service/web?hash="+hash+"&wait=30s")
		woke <- body
	}()
	time.Sleep(50 * time.Millisecond) // let it block; waking early is fine too
	if code, body := putBody(t, base+"/v1/agent/check/update/web-ttl", `{"Status": "passing", "Output": "ok"}`); code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	if code, body := putBody(t, base+"/v1/agent/service/register", `{"Name": "web", "Port": 81}`); code != 200 {
		t.Fatalf("re-register: %d %s", code, body)
	}
	select {
	case body := <-woke:
		if !strings.Contains(body, `"Port":81`) || !strings.Contains(body, `"ContentHash"`) {
			t.Errorf("woke with %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not wake")
	}

	code, body, _ = do(t, "GET", base+"/v1/agent/checks")
	var checks map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &checks); code != 200 || err != nil {
		t.Fatalf("checks: %d %s", code, body)
	}
	if c := checks["web-ttl"]; c["Status"] != "passing" || c["Output"] != "ok" || c["Node"] != "n1" || c["ServiceName"] != "web" {
		t.Errorf("checks = %v", checks)
	}

	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/v1/agent/service/nope", "", 404},
		{"GET", "/v1/agent/services?filter=x", "", 400},
		{"PUT", "/v1/agent/service/register?replace-existing-checks=maybe", `{"Name": "x"}`, 400},
		{"PUT", "/v1/agent/maintenance?enable=sure", "", 400},
		{"PUT", "/v1/agent/maintenance?enable=true&reason=r", "", 200},
		{"PUT", "/v1/agent/service/maintenance/web?enable=true", "", 200},
		{"PUT", "/v1/agent/check/warn/web-ttl?note=slow", "", 200},
		{"PUT", "/v1/agent/check/deregister/web-ttl", "", 200},
		{"PUT", "/v1/agent/service/deregister/web", "", 200},
		{"PUT", "/v1/agent/service/deregister/web", "", 404},
	} {
		var code int
		var body string
		if tc.method == "GET" {
			code, body, _ = do(t, "GET", base+tc.path)
		} else {
			code, body = putBody(t, base+tc.path, tc.body)
		}
		if code != tc.code {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, code, body, tc.code)
		}
	}
	if reason, on := f.local.NodeMaintenance(); !on || reason != "r" {
		t.Errorf("node maintenance = %q, %v", reason, on)
	}
}
