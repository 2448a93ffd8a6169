package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// cli runs a client command of the binary against p and returns its
// stdout.
func cli(t *testing.T, p *testutil.Proc, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(testutil.AgentBinary(t), append(args[:2:2], append([]string{"-http-addr", p.HTTPAddr()}, args[2:]...)...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// TestServiceFromFlagsOnClient runs a client the one-container way, its
// service and HTTP check given as flags, and finds it through the
// servers: the catalog CLI, /v1/health/service, the Consul Go client.
func TestServiceFromFlagsOnClient(t *testing.T) {
	c := startCluster(t, 0)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer app.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(app.URL, "http://"), ":")

	bin := testutil.AgentBinary(t)
	c1 := testutil.NewProc(t, bin, "c1", "-retry-join", c.servers[0].SerfAddr(),
		"-service", "web", "-service-port", port, "-service-tag", "v1",
		"-check-http", "http://127.0.0.1:"+port+"/health", "-check-interval", "1s")
	c1.Start()
	c.clients = append(c.clients, c1)
	srv := c.servers[1]

	testutil.WaitFor(t, 60*time.Second, "web passing through a server", func() error {
		entries, _, err := client(t, srv).Health().Service("web", "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 1 || entries[0].Node.Node != "c1" || strconv.Itoa(entries[0].Service.Port) != port {
			return fmt.Errorf("entries %+v", entries)
		}
		// The leader adds the node's serfHealth check on its own schedule,
		// possibly after anti-entropy registered the service.
		if len(entries[0].Checks) != 2 {
			return fmt.Errorf("checks %+v, want the service's and serfHealth", entries[0].Checks)
		}
		return nil
	})
	// The raw endpoint, as consul-template calls it.
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/v1/health/service/web?passing")
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		Node    struct{ Node string }
		Service struct{ Service string }
		Checks  []struct{ CheckID, Status string }
	}
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if err != nil || len(raw) != 1 || raw[0].Service.Service != "web" || len(raw[0].Checks) != 2 {
		t.Errorf("/v1/health/service/web?passing = %+v, %v", raw, err)
	}

	// The servers' own "consul" service is listed too, as in Consul.
	out, err := cli(t, srv, "catalog", "services")
	if err != nil || out != "consul\nweb\n" {
		t.Errorf("catalog services = %q, %v", out, err)
	}
	out, err = cli(t, srv, "catalog", "services", "-tags")
	if err != nil || strings.Join(strings.Fields(out), " ") != "consul web v1" {
		t.Errorf("catalog services -tags = %q, %v", out, err)
	}
	out, err = cli(t, c1, "catalog", "nodes", "-service", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "Node ID Address DC" {
		t.Fatalf("catalog nodes -service web = %q, %v", out, err)
	}
	if f := strings.Fields(lines[1]); len(f) != 4 || f[0] != "c1" || len(f[1]) != 8 || f[2] != "127.0.0.1" || f[3] != "dc1" {
		t.Errorf("catalog nodes -service web row = %q", lines[1])
	}

	// A second service, registered through the CLI from a file, and gone
	// again after deregistration.
	file := filepath.Join(t.TempDir(), "db.json")
	if err := os.WriteFile(file, []byte(`{"Service": {"Name": "db", "Port": 5432, "Check": {"TTL": "1m", "Status": "passing"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, c1, "services", "register", file); err != nil || out != "Registered service: db\n" {
		t.Fatalf("services register = %q, %v", out, err)
	}
	testutil.WaitFor(t, 30*time.Second, "db in the catalog", func() error {
		out, err := cli(t, srv, "catalog", "services")
		if err != nil || out != "consul\ndb\nweb\n" {
			return fmt.Errorf("catalog services = %q, %v", out, err)
		}
		return nil
	})
	if out, err := cli(t, c1, "services", "deregister", "-id", "db"); err != nil || out != "Deregistered service: db\n" {
		t.Fatalf("services deregister = %q, %v", out, err)
	}
	testutil.WaitFor(t, 30*time.Second, "db gone", func() error {
		svcs, _, err := client(t, srv).Catalog().Services(nil)
		if err != nil {
			return err
		}
		if _, ok := svcs["db"]; ok {
			return fmt.Errorf("services %v", svcs)
		}
		return nil
	})
	if svcs, err := client(t, c1).Agent().Services(); err != nil || len(svcs) != 1 || svcs["web"] == nil {
		t.Errorf("c1's services = %v, %v", svcs, err)
	}
}
