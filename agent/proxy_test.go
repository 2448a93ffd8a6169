package agent

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testutil"
)

// A sidecar that cannot start fails its registration with a 400 naming
// the problem, and nothing is registered; a good one listens at once.
func TestSidecarRegistrationErrors(t *testing.T) {
	a := startAgent(t, "n1", true, 1)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	free := testutil.FreePort(t)

	put := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, a.url("/v1/agent/service/register"), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"upstream port in use",
			`{"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": ` + strconv.Itoa(free) + `, "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": ` + strconv.Itoa(busyPort) + `}]}}}}`,
			strconv.Itoa(busyPort)},
		{"unknown upstream field",
			`{"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": ` + strconv.Itoa(free) + `, "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": 9, "Bogus": 1}]}}}}`,
			"Bogus"},
		{"upstream without a destination",
			`{"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": ` + strconv.Itoa(free) + `, "Proxy": {"Upstreams": [{"LocalBindPort": 9}]}}}}`,
			"destination_name"},
	} {
		code, body := put(tc.body)
		if code != http.StatusBadRequest || !strings.Contains(strings.ToLower(body), strings.ToLower(tc.want)) {
			t.Errorf("%s: %d %q, want 400 naming %q", tc.name, code, body, tc.want)
		}
		if svcs := a.LocalState().Services(); len(svcs) != 0 {
			t.Errorf("%s: registered anyway: %v", tc.name, svcs)
		}
	}

	// A good one: the upstream listens as soon as the registration returns.
	up := testutil.FreePort(t)
	code, body := put(`{"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": ` + strconv.Itoa(free) +
		`, "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": ` + strconv.Itoa(up) + `}]}}}}`)
	if code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	for _, port := range []int{free, up} {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Errorf("port %d not listening after the registration: %v", port, err)
			continue
		}
		c.Close()
	}
	// Deregistering the service closes its sidecar's listeners.
	req, _ := http.NewRequest(http.MethodPut, a.url("/v1/agent/service/deregister/web"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("deregister: %d", resp.StatusCode)
	}
	testutil.WaitFor(t, 10*time.Second, "the upstream listener closed", func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(up))
		if err == nil {
			c.Close()
			return fmt.Errorf("still listening")
		}
		return nil
	})
}

// Proxy problems in the configuration stop the agent from starting, with
// an error naming them.
func TestProxyConfigStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name   string
		adjust func(c *config.Config)
		want   string
	}{
		{"sidecar port in use", func(c *config.Config) {
			c.Extra = map[string]any{"service": []any{map[string]any{"name": "web", "port": 8080,
				"connect": map[string]any{"sidecar_service": map[string]any{"port": busyPort}}}}}
		}, strconv.Itoa(busyPort)},
		{"ingress without a name", func(c *config.Config) {
			c.Extra = map[string]any{"ingress": map[string]any{"listeners": []any{}}}
		}, "ingress_name"},
		{"ingress port in use", func(c *config.Config) {
			c.IngressName = "edge"
			c.Extra = map[string]any{"ingress": map[string]any{"listeners": []any{
				map[string]any{"port": busyPort, "protocol": "tcp", "service": "db"}}}}
		}, strconv.Itoa(busyPort)},
		{"ingress route without a service", func(c *config.Config) {
			c.IngressName = "edge"
			c.Extra = map[string]any{"ingress": map[string]any{"listeners": []any{
				map[string]any{"port": testutil.FreePort(t), "routes": []any{map[string]any{"path_prefix": "/"}}}}}}
		}, "service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.DefaultConfig()
			cfg.NodeName = "n1"
			cfg.DataDir = t.TempDir()
			cfg.BindAddr, cfg.ClientAddr = "127.0.0.1", "127.0.0.1"
			cfg.Ports = config.Ports{HTTP: testutil.FreePort(t), DNS: testutil.FreePort(t), SerfLAN: testutil.FreePort(t), Server: testutil.FreePort(t)}
			tc.adjust(&cfg)
			a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				a.shutdown()
				t.Fatalf("New succeeded, want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want it to name %q", err, tc.want)
			}
			// Nothing is left listening: the same ports start again.
			cfg.Extra, cfg.IngressName = nil, ""
			a, err = New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatalf("New after a failed start: %v", err)
			}
			a.shutdown()
		})
	}
}
