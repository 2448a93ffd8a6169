package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOperatorRaft(t *testing.T) {
	st := newTestStore(t, true)
	e := startKV(t, st, nil)
	op := e.client.Operator()

	cfg, err := op.RaftGetConfiguration(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Index is raft's configuration index; hashicorp/raft v1.7's
	// GetConfiguration leaves it 0 (so does Consul's answer).
	if len(cfg.Servers) != 1 {
		t.Fatalf("configuration = %+v", cfg)
	}
	s := cfg.Servers[0]
	if s.ID != "srv1" || s.Node != "n1" || s.Address != st.Addr() || !s.Leader || !s.Voter || s.ProtocolVersion != "3" {
		t.Errorf("server = %+v, want srv1 on node n1 at %s, leader, voter, protocol 3", s, st.Addr())
	}

	_, body, _ := call(t, "GET", e.base+"/v1/operator/raft/configuration?stale", nil)
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil || raw["Servers"] == nil || raw["Index"] == nil {
		t.Errorf("body %s, want Servers and Index", body)
	}

	t.Run("unknown node name", func(t *testing.T) {
		e := startKV(t, st, func(c *Config) { c.Agent = testAgent() })
		cfg, err := e.client.Operator().RaftGetConfiguration(nil)
		if err != nil || cfg.Servers[0].Node != "(unknown)" {
			t.Errorf("server = %+v, %v; want node (unknown)", cfg.Servers[0], err)
		}
	})

	t.Run("remove peer", func(t *testing.T) {
		if err := op.RaftRemovePeerByID("nope", nil); err == nil || !strings.Contains(err.Error(), `id "nope" was not found`) {
			t.Errorf("remove unknown id: %v", err)
		}
		if err := op.RaftRemovePeerByAddress("10.9.9.9:8300", nil); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("remove unknown address: %v", err)
		}
		for path, want := range map[string]string{
			"/v1/operator/raft/peer":                "Must specify either ?id",
			"/v1/operator/raft/peer?id=a&address=b": "only one of",
			"/v1/operator/raft/peer?id=":            "Missing value for ?id",
		} {
			if code, body, _ := call(t, "DELETE", e.base+path, nil); code != 400 || !strings.Contains(body, want) {
				t.Errorf("DELETE %s: %d %q, want 400 containing %q", path, code, body, want)
			}
		}
		if cfg, _ := op.RaftGetConfiguration(nil); len(cfg.Servers) != 1 {
			t.Errorf("configuration changed: %+v", cfg)
		}
	})
}
