package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/gossip"
)

type fakeAgent struct {
	mu      sync.Mutex
	members []gossip.Member
	joined  []string
	joinErr error
	left    bool
}

func (f *fakeAgent) Members() []gossip.Member   { return f.members }
func (f *fakeAgent) LocalMember() gossip.Member { return f.members[0] }
func (f *fakeAgent) Self() Self {
	return Self{Datacenter: "dc1", NodeName: "n1", NodeID: "id-1", Server: true, Version: "0.1.0"}
}
func (f *fakeAgent) Leave(context.Context) error {
	f.mu.Lock()
	f.left = true
	f.mu.Unlock()
	return nil
}
func (f *fakeAgent) Join(_ context.Context, addrs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.joinErr != nil {
		return 0, f.joinErr
	}
	f.joined = append(f.joined, addrs...)
	return len(addrs), nil
}

type fakeStatus struct{}

func (fakeStatus) Leader() string  { return "127.0.0.1:8300" }
func (fakeStatus) Peers() []string { return []string{"127.0.0.1:8300", "127.0.0.2:8300"} }

func startServer(t *testing.T, a Agent, st Status) string {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0", Agent: a, Status: st, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + s.Addr().String()
}

func do(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func testAgent() *fakeAgent {
	return &fakeAgent{members: []gossip.Member{
		{Name: "n1", Addr: net.ParseIP("127.0.0.1"), Port: 8301, Status: gossip.StatusAlive,
			Tags: map[string]string{"role": "consul", "dc": "dc1"}, ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2},
		{Name: "n2", Addr: net.ParseIP("127.0.0.2"), Port: 8301, Status: gossip.StatusFailed, Tags: map[string]string{"role": "node"}},
	}}
}

func TestMembersShape(t *testing.T) {
	base := startServer(t, testAgent(), nil)
	code, body, hdr := do(t, "GET", base+"/v1/agent/members")
	if code != 200 {
		t.Fatalf("code %d body %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d members, want 2", len(got))
	}
	for _, k := range []string{"Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("member lacks %q: %v", k, got[0])
		}
	}
	if got[0]["Addr"] != "127.0.0.1" || got[0]["Port"] != float64(8301) || got[1]["Status"] != float64(4) {
		t.Errorf("members = %v", got)
	}
	if code, body, _ := do(t, "GET", base+"/v1/agent/members?wan=1"); code != 400 || !strings.Contains(body, "WAN") {
		t.Errorf("wan: got %d %q, want 400 naming WAN", code, body)
	}
}

func TestSelf(t *testing.T) {
	base := startServer(t, testAgent(), nil)
	_, body, _ := do(t, "GET", base+"/v1/agent/self")
	var got struct {
		Config struct {
			Datacenter, NodeName, NodeID string
			Server                       bool
		}
		Member struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Config.Datacenter != "dc1" || got.Config.NodeName != "n1" || !got.Config.Server || got.Member.Name != "n1" {
		t.Errorf("self = %+v", got)
	}
}

func TestJoinLeave(t *testing.T) {
	fa := testAgent()
	base := startServer(t, fa, nil)
	if code, body, _ := do(t, "PUT", base+"/v1/agent/join/127.0.0.9:8301"); code != 200 {
		t.Fatalf("join: %d %s", code, body)
	}
	if len(fa.joined) != 1 || fa.joined[0] != "127.0.0.9:8301" {
		t.Errorf("joined = %v", fa.joined)
	}
	if code, _, _ := do(t, "GET", base+"/v1/agent/join/x"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET join: got %d, want 405", code)
	}
	fa.joinErr = errors.New("no route")
	if code, body, _ := do(t, "PUT", base+"/v1/agent/join/127.0.0.9"); code != 500 || !strings.Contains(body, "no route") {
		t.Errorf("failed join: %d %q", code, body)
	}
	if code, _, _ := do(t, "PUT", base+"/v1/agent/leave"); code != 200 || !fa.left {
		t.Errorf("leave: code %d left %v", code, fa.left)
	}
}

func TestStatus(t *testing.T) {
	base := startServer(t, testAgent(), nil)
	if _, body, _ := do(t, "GET", base+"/v1/status/leader"); strings.TrimSpace(body) != `""` {
		t.Errorf("leader without raft = %s, want \"\"", body)
	}
	if _, body, _ := do(t, "GET", base+"/v1/status/peers"); strings.TrimSpace(body) != `[]` {
		t.Errorf("peers without raft = %s, want []", body)
	}
	base = startServer(t, testAgent(), fakeStatus{})
	if _, body, _ := do(t, "GET", base+"/v1/status/leader"); strings.TrimSpace(body) != `"127.0.0.1:8300"` {
		t.Errorf("leader = %s", body)
	}
}

func TestMetrics(t *testing.T) {
	base := startServer(t, testAgent(), nil)
	do(t, "GET", base+"/v1/agent/members")
	code, body, _ := do(t, "GET", base+"/v1/agent/metrics?format=prometheus")
	if code != 200 || !strings.Contains(body, `outrigger_http_requests_total{code="200",method="GET",route="GET /v1/agent/members"} 1`) {
		t.Errorf("prometheus metrics: %d\n%s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/metrics"); code != 200 || !strings.Contains(body, "outrigger_http_requests_total") {
		t.Errorf("/metrics: %d", code)
	}
	code, body, _ = do(t, "GET", base+"/v1/agent/metrics")
	var js struct{ Counters []struct{ Name string } }
	if code != 200 || json.Unmarshal([]byte(body), &js) != nil || len(js.Counters) == 0 {
		t.Errorf("json metrics: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/v1/agent/metrics?format=xml"); code != 400 || !strings.Contains(body, "xml") {
		t.Errorf("bad format: %d %q", code, body)
	}
}

func TestUnknownRoute(t *testing.T) {
	base := startServer(t, testAgent(), nil)
	if code, _, _ := do(t, "GET", base+"/v1/nope"); code != 404 {
		t.Errorf("got %d, want 404", code)
	}
}
