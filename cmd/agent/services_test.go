package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeCatalog answers the catalog reads and agent service writes the
// services and catalog commands make, recording the writes.
type fakeCatalog struct {
	srv *httptest.Server

	mu           sync.Mutex
	registered   []map[string]any
	deregistered []string
	queries      []string
	refuse       string // answer registrations with 400 and this text
}

func newFakeCatalog(t *testing.T) *fakeCatalog {
	f := &fakeCatalog{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/catalog/services", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeTestJSON(w, map[string][]string{"web": {"v2", "v1"}, "consul": {}, "db": {"primary"}, "billing-api": {"beta"}})
	})
	mux.HandleFunc("GET /v1/catalog/nodes", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeTestJSON(w, []map[string]any{
			{"ID": "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5", "Node": "worker-01", "Address": "10.4.5.31", "Datacenter": "dc1",
				"TaggedAddresses": map[string]string{"wan": "10.4.5.31", "lan": "10.4.5.31"}, "Meta": map[string]string{}},
			{"ID": "ef0e8d22-75a4-9e24-10e1-4a3b2a79c8b5", "Node": "s1", "Address": "10.4.5.2", "Datacenter": "dc1",
				"TaggedAddresses": map[string]string{"lan": "10.4.5.2"}, "Meta": map[string]string{"rack": "r1", "az": "a"}},
		})
	})
	mux.HandleFunc("GET /v1/catalog/service/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		if r.PathValue("name") != "web" {
			writeTestJSON(w, []any{})
			return
		}
		writeTestJSON(w, []map[string]any{
			{"ID": "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5", "Node": "worker-01", "Address": "10.4.5.31", "Datacenter": "dc1",
				"ServiceID": "web", "ServiceName": "web"},
		})
	})
	mux.HandleFunc("GET /v1/catalog/node/{node}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeTestJSON(w, map[string]any{"Node": map[string]any{"Node": r.PathValue("node")},
			"Services": map[string]any{"web-1": map[string]any{"Service": "web", "Tags": []string{"b"}},
				"web-2": map[string]any{"Service": "web", "Tags": []string{"a", "b"}}}})
	})
	mux.HandleFunc("PUT /v1/agent/service/register", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.refuse != "" {
			http.Error(w, f.refuse, 400)
			return
		}
		f.registered = append(f.registered, body)
	})
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id...}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		if r.PathValue("id") == "absent" {
			http.Error(w, "Unknown service ID \"absent\"", 404)
			return
		}
		f.mu.Lock()
		f.deregistered = append(f.deregistered, r.PathValue("id"))
		f.mu.Unlock()
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCatalog) record(r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeCatalog) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{args[0], args[1], "-http-addr", strings.TrimPrefix(f.srv.URL, "http://")}, args[2:]...)
	code := realMain(full, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCatalogServicesOutput(t *testing.T) {
	f := newFakeCatalog(t)
	code, out, errs := f.run(t, "catalog", "services")
	if want := "billing-api\nconsul\ndb\nweb\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q (stderr %q), want %q", code, out, errs, want)
	}
	code, out, _ = f.run(t, "catalog", "services", "-tags")
	want := "" +
		"billing-api      beta\n" +
		"consul           \n" +
		"db               primary\n" +
		"web              v1,v2\n"
	if code != 0 || out != want {
		t.Errorf("-tags: exit %d, got\n%q\nwant\n%q", code, out, want)
	}
	code, out, _ = f.run(t, "catalog", "services", "-node", "n1", "-tags")
	if want := "web      a,b\n"; code != 0 || out != want {
		t.Errorf("-node: exit %d, got %q, want %q", code, out, want)
	}
	f.run(t, "catalog", "services", "-node-meta", "rack=r1", "-stale")
	f.mu.Lock()
	last := f.queries[len(f.queries)-1]
	f.mu.Unlock()
	if last != "GET /v1/catalog/services?node-meta=rack%3Ar1&stale=" {
		t.Errorf("-node-meta -stale sent %q", last)
	}
}

func TestCatalogNodesOutput(t *testing.T) {
	f := newFakeCatalog(t)
	code, out, errs := f.run(t, "catalog", "nodes")
	want := "" +
		"Node       ID        Address    DC\n" +
		"worker-01  1b662d97  10.4.5.31  dc1\n" +
		"s1         ef0e8d22  10.4.5.2   dc1\n"
	if code != 0 || out != want {
		t.Errorf("exit %d (stderr %q), got\n%s\nwant\n%s", code, errs, out, want)
	}
	code, out, _ = f.run(t, "catalog", "nodes", "-detailed")
	want = "" +
		"Node       ID                                    Address    DC   TaggedAddresses               Meta\n" +
		"worker-01  1b662d97-8b5c-3cc2-0ac0-96f55ad423b5  10.4.5.31  dc1  lan=10.4.5.31, wan=10.4.5.31  \n" +
		"s1         ef0e8d22-75a4-9e24-10e1-4a3b2a79c8b5  10.4.5.2   dc1  lan=10.4.5.2                  az=a, rack=r1\n"
	if code != 0 || out != want {
		t.Errorf("-detailed: got\n%q\nwant\n%q", out, want)
	}
	code, out, _ = f.run(t, "catalog", "nodes", "-service", "web")
	want = "" +
		"Node       ID        Address    DC\n" +
		"worker-01  1b662d97  10.4.5.31  dc1\n"
	if code != 0 || out != want {
		t.Errorf("-service web: got\n%s\nwant\n%s", out, want)
	}
	code, out, errs = f.run(t, "catalog", "nodes", "-service", "none")
	if code != 0 || out != "" || !strings.Contains(errs, "No nodes match") {
		t.Errorf("-service none: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServicesRegister(t *testing.T) {
	f := newFakeCatalog(t)
	// Consul's documentation writes "Service" capitalised in JSON.
	js := writeFile(t, "web.json", `{"Service": {"Name": "web", "Port": 8080, "Tags": ["v1"],
		"Check": {"HTTP": "http://127.0.0.1:8080/health", "Interval": "10s"}}}`)
	hcl := writeFile(t, "db.hcl", `services = [{ name = "db", port = 5432 }, { name = "cache", id = "cache-1" }]`)
	code, out, errs := f.run(t, "services", "register", js, hcl)
	if want := "Registered service: web\nRegistered service: db\nRegistered service: cache\n"; code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	f.mu.Lock()
	got := f.registered
	f.mu.Unlock()
	if len(got) != 3 || got[0]["Name"] != "web" || got[0]["Port"] != 8080.0 || got[2]["ID"] != "cache-1" {
		t.Fatalf("registered %v", got)
	}
	checks, _ := got[0]["Checks"].([]any)
	if len(checks) != 1 || checks[0].(map[string]any)["HTTP"] != "http://127.0.0.1:8080/health" {
		t.Errorf("web's check: %v", got[0])
	}

	code, out, _ = f.run(t, "services", "register", "-name", "api", "-port", "9090", "-tag", "a", "-tag", "b", "-meta", "team=x")
	if code != 0 || out != "Registered service: api\n" {
		t.Fatalf("from flags: exit %d, %q", code, out)
	}
	f.mu.Lock()
	api := f.registered[len(f.registered)-1]
	f.mu.Unlock()
	if api["ID"] != "api" || api["Port"] != 9090.0 || len(api["Tags"].([]any)) != 2 || api["Meta"].(map[string]any)["team"] != "x" {
		t.Errorf("from flags: %v", api)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "requires at least one argument or flags"},
		{[]string{"-name", "x", js}, "arguments or -name, not both"},
		{[]string{writeFile(t, "empty.json", `{"node_name": "n"}`)}, "no service definitions"},
		{[]string{writeFile(t, "bad.json", `{"service": {"name": "x", "port": "http"}}`)}, "port"},
	} {
		code, _, errs := f.run(t, append([]string{"services", "register"}, tc.args...)...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want it to contain %q", tc.args, code, errs, tc.want)
		}
	}
	f.mu.Lock()
	f.refuse = "catalog: service \"web\": Port: 70000 is out of range 0-65535"
	f.mu.Unlock()
	code, _, errs = f.run(t, "services", "register", "-name", "web")
	if code != 1 || !strings.Contains(errs, "Port: 70000") {
		t.Errorf("refused: exit %d, stderr %q", code, errs)
	}
}

func TestServicesDeregister(t *testing.T) {
	f := newFakeCatalog(t)
	js := writeFile(t, "web.json", `{"services": [{"name": "web"}, {"name": "db", "id": "db-2"}]}`)
	for _, tc := range []struct {
		args []string
		out  string
		ids  []string
	}{
		{[]string{"-id", "web"}, "Deregistered service: web\n", []string{"web"}},
		{[]string{"api"}, "Deregistered service: api\n", []string{"api"}},
		{[]string{js}, "Deregistered service: web\nDeregistered service: db-2\n", []string{"web", "db-2"}},
	} {
		f.mu.Lock()
		f.deregistered = nil
		f.mu.Unlock()
		code, out, errs := f.run(t, append([]string{"services", "deregister"}, tc.args...)...)
		f.mu.Lock()
		ids := f.deregistered
		f.mu.Unlock()
		if code != 0 || out != tc.out || strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, deregistered %v", tc.args, code, out, errs, ids)
		}
	}
	code, _, errs := f.run(t, "services", "deregister", "absent")
	if code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("unknown ID: exit %d, stderr %q", code, errs)
	}
	code, _, errs = f.run(t, "services", "deregister")
	if code != 1 || !strings.Contains(errs, "requires at least one argument or -id") {
		t.Errorf("no ID: exit %d, stderr %q", code, errs)
	}
}
