package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeMaint keeps maintenance state the way the agent does, behind the
// endpoints `agent maint` uses, and records the requests.
type fakeMaint struct {
	srv *httptest.Server

	mu       sync.Mutex
	node     string            // node maintenance reason, "" when off
	services map[string]string // service ID -> reason
	queries  []string
}

func newFakeMaint(t *testing.T) *fakeMaint {
	f := &fakeMaint{services: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/self", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		writeTestJSON(w, map[string]any{"Config": map[string]any{"NodeName": "n1", "Datacenter": "dc1"}})
	})
	mux.HandleFunc("GET /v1/agent/checks", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		checks := map[string]map[string]any{
			"web-http": {"Node": "n1", "CheckID": "web-http", "Name": "HTTP", "Status": "passing", "ServiceID": "web", "Notes": ""},
		}
		if f.node != "" {
			// No Node field: the command falls back to /v1/agent/self.
			checks["_node_maintenance"] = map[string]any{"CheckID": "_node_maintenance", "Name": "Node Maintenance Mode",
				"Status": "critical", "Notes": f.node}
		}
		for id, reason := range f.services {
			cid := "_service_maintenance:" + id
			checks[cid] = map[string]any{"Node": "n1", "CheckID": cid, "Name": "Service Maintenance Mode",
				"Status": "critical", "Notes": reason, "ServiceID": id, "ServiceName": id}
		}
		writeTestJSON(w, checks)
	})
	mux.HandleFunc("PUT /v1/agent/maintenance", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Query().Get("enable") {
		case "true":
			if f.node == "" {
				f.node = r.URL.Query().Get("reason")
				if f.node == "" {
					f.node = "default reason"
				}
			}
		case "false":
			f.node = ""
		default:
			http.Error(w, "Missing value for enable", 400)
		}
	})
	mux.HandleFunc("PUT /v1/agent/service/maintenance/{id...}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		id := r.PathValue("id")
		if id != "web" && id != "db" {
			http.Error(w, "Unknown service ID \""+id+"\"", 404)
			return
		}
		switch r.URL.Query().Get("enable") {
		case "true":
			if _, on := f.services[id]; !on {
				f.services[id] = r.URL.Query().Get("reason")
			}
		case "false":
			delete(f.services, id)
		default:
			http.Error(w, "Missing value for enable", 400)
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMaint) record(r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
}

func (f *fakeMaint) lastQuery() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return ""
	}
	return f.queries[len(f.queries)-1]
}

func (f *fakeMaint) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"maint", "-http-addr", strings.TrimPrefix(f.srv.URL, "http://")}, args...)
	code := realMain(full, &out, &errb)
	return code, out.String(), errb.String()
}

func TestMaintEnableDisableList(t *testing.T) {
	f := newFakeMaint(t)

	code, out, errs := f.run(t)
	if code != 0 || out != "" {
		t.Fatalf("list with nothing in maintenance: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	for _, tc := range []struct {
		args  []string
		out   string
		query string
	}{
		{[]string{"-enable", "-reason", "kernel upgrade"}, "Node entered maintenance mode\n",
			"PUT /v1/agent/maintenance?enable=true&reason=kernel+upgrade"},
		{[]string{"-enable", "-service", "web", "-reason", "deploy v2"}, "Service entered maintenance mode: web\n",
			"PUT /v1/agent/service/maintenance/web?enable=true&reason=deploy+v2"},
		{[]string{"-enable", "-service", "db"}, "Service entered maintenance mode: db\n",
			"PUT /v1/agent/service/maintenance/db?enable=true"},
	} {
		code, out, errs := f.run(t, tc.args...)
		if code != 0 || out != tc.out || f.lastQuery() != tc.query {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, sent %q; want %q, %q", tc.args, code, out, errs, f.lastQuery(), tc.out, tc.query)
		}
	}

	code, out, errs = f.run(t)
	want := "" +
		"Node:\n  Name:   n1\n  Reason: kernel upgrade\n\n" +
		"Service:\n  ID:     db\n  Reason: \n\n" +
		"Service:\n  ID:     web\n  Reason: deploy v2\n\n"
	if code != 0 || out != want {
		t.Errorf("list: exit %d (stderr %q), got\n%q\nwant\n%q", code, errs, out, want)
	}

	for _, tc := range []struct {
		args  []string
		out   string
		query string
	}{
		{[]string{"-disable"}, "Node left maintenance mode\n", "PUT /v1/agent/maintenance?enable=false"},
		{[]string{"-disable", "-service", "web"}, "Service left maintenance mode: web\n",
			"PUT /v1/agent/service/maintenance/web?enable=false"},
	} {
		code, out, errs := f.run(t, tc.args...)
		if code != 0 || out != tc.out || f.lastQuery() != tc.query {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, sent %q; want %q, %q", tc.args, code, out, errs, f.lastQuery(), tc.out, tc.query)
		}
	}
	code, out, _ = f.run(t)
	if want := "Service:\n  ID:     db\n  Reason: \n\n"; code != 0 || out != want {
		t.Errorf("list after disabling: exit %d, got %q, want %q", code, out, want)
	}
}

func TestMaintErrors(t *testing.T) {
	f := newFakeMaint(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-enable", "-disable"}, "Only one of -enable or -disable"},
		{[]string{"-reason", "x"}, "Reason may only be provided with -enable"},
		{[]string{"-disable", "-reason", "x"}, "Reason may only be provided with -enable"},
		{[]string{"-service", "web"}, "Service requires either -enable or -disable"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"-enable", "-service", "absent"}, `Error enabling service maintenance: agent answered 404 Not Found: Unknown service ID "absent"`},
		{[]string{"-disable", "-service", "absent"}, "Error disabling service maintenance"},
		{[]string{"-bogus"}, "flag provided but not defined"},
	} {
		code, out, errs := f.run(t, tc.args...)
		if code != 1 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q, want exit 1 and %q", tc.args, code, out, errs, tc.want)
		}
		if tc.args[0] != "-bogus" && !strings.HasPrefix(errs, "agent maint: ") {
			t.Errorf("%q: stderr %q, want the agent maint: prefix", tc.args, errs)
		}
	}

	// An agent that is not there.
	f.srv.Close()
	code, _, errs := f.run(t)
	if code != 1 || !strings.HasPrefix(errs, "agent maint: Error getting checks: cannot reach the agent") {
		t.Errorf("no agent: exit %d, stderr %q", code, errs)
	}
}

func TestMaintHelp(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"maint", "-h"}, &out, &errb)
	if code != 0 || !strings.Contains(errb.String(), "Usage: agent maint [options]") ||
		!strings.Contains(errb.String(), "agent maint -enable -service web") || !strings.Contains(errb.String(), "-http-addr") {
		t.Errorf("-h: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	realMain([]string{"-h"}, &out, &errb)
	if !strings.Contains(out.String(), "maint ") {
		t.Errorf("agent -h does not list maint:\n%s", out.String())
	}
}
