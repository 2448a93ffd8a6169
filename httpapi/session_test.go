package httpapi

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

func TestSessionsConsulClient(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	sc := e.client.Session()

	def, _, err := sc.Create(nil, nil)
	if err != nil || def == "" {
		t.Fatalf("Create(nil) = %q, %v", def, err)
	}
	info, qm, err := sc.Info(def, nil)
	if err != nil || info == nil {
		t.Fatalf("Info = %v, %v", info, err)
	}
	if info.ID != def || info.Node != "n1" || info.LockDelay != 15*time.Second || info.Behavior != "release" || info.TTL != "" ||
		!reflect.DeepEqual(info.NodeChecks, []string{"serfHealth"}) || info.CreateIndex == 0 {
		t.Errorf("default session = %+v, want node n1, lock-delay 15s, release, serfHealth", info)
	}
	if qm.LastIndex < info.CreateIndex || !qm.KnownLeader {
		t.Errorf("Info meta = %+v", qm)
	}

	ttl, _, err := sc.Create(&consul.SessionEntry{Name: "ttl", Node: "elsewhere", LockDelay: 5 * time.Second, Behavior: "delete", TTL: "10s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, _, _ = sc.Info(ttl, nil)
	if info.Name != "ttl" || info.Node != "elsewhere" || info.LockDelay != 5*time.Second || info.Behavior != "delete" || info.TTL != "10s" {
		t.Errorf("session = %+v", info)
	}
	bare, _, err := sc.CreateNoChecks(&consul.SessionEntry{Name: "bare"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, _, _ = sc.Info(bare, nil); info == nil || len(info.NodeChecks) != 0 {
		t.Errorf("CreateNoChecks session = %+v, want no node checks", info)
	}

	list, qm, err := sc.List(nil)
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if node, _, _ := sc.Node("n1", nil); len(node) != 2 {
		t.Errorf("Node(n1) has %d sessions, want 2", len(node))
	}
	if node, _, err := sc.Node("nobody", nil); err != nil || len(node) != 0 {
		t.Errorf("Node(nobody) = %v, %v", node, err)
	}

	renewed, _, err := sc.Renew(ttl, nil)
	if err != nil || renewed == nil || renewed.ID != ttl || renewed.TTL != "10s" {
		t.Errorf("Renew = %+v, %v", renewed, err)
	}
	if renewed, _, err := sc.Renew("00000000-0000-0000-0000-000000000000", nil); err != nil || renewed != nil {
		t.Errorf("Renew of an unknown session = %+v, %v; want nil, nil", renewed, err)
	}

	t.Run("blocking list", func(t *testing.T) {
		done := make(chan *consul.QueryMeta, 1)
		go func() {
			_, qm2, err := sc.List(&consul.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: time.Minute})
			if err != nil {
				t.Error(err)
			}
			done <- qm2
		}()
		e.waitBlocked(t, 1)
		if _, _, err := sc.Create(&consul.SessionEntry{Name: "wake"}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case qm2 := <-done:
			if qm2 == nil || qm2.LastIndex <= qm.LastIndex {
				t.Errorf("woken with %+v, want an index above %d", qm2, qm.LastIndex)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocking List not woken by a create")
		}
	})

	t.Run("destroy", func(t *testing.T) {
		ok, _, err := e.client.KV().Acquire(&consul.KVPair{Key: "owned", Value: []byte("v"), Session: ttl}, nil)
		if err != nil || !ok {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		if _, err := sc.Destroy(ttl, nil); err != nil {
			t.Fatal(err)
		}
		if info, _, err := sc.Info(ttl, nil); err != nil || info != nil {
			t.Errorf("Info after Destroy = %+v, %v", info, err)
		}
		if p, _, _ := e.client.KV().Get("owned", nil); p != nil {
			t.Errorf("a behavior=delete session's key survived its destroy: %+v", p)
		}
		if _, err := sc.Destroy(ttl, nil); err != nil {
			t.Errorf("destroying an unknown session: %v, want success as in Consul", err)
		}
	})
}

func TestSessionHTTPShapes(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	create := func(body string) string {
		t.Helper()
		code, resp, _ := call(t, "PUT", e.base+"/v1/session/create", strings.NewReader(body))
		var out struct{ ID string }
		if code != 200 || json.Unmarshal([]byte(resp), &out) != nil || out.ID == "" {
			t.Fatalf("create %s: %d %s", body, code, resp)
		}
		return out.ID
	}
	info := func(id string) map[string]any {
		t.Helper()
		code, body, _ := call(t, "GET", e.base+"/v1/session/info/"+id, nil)
		var out []map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out) != 1 {
			t.Fatalf("info: %d %s", code, body)
		}
		return out[0]
	}

	id := create(`{"Name":"shape","TTL":"30s","ServiceChecks":[{"ID":"web","Namespace":""}]}`)
	got := info(id)
	var fields []string
	for k := range got {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	want := []string{"Behavior", "CreateIndex", "ID", "LockDelay", "ModifyIndex", "Name", "Node", "NodeChecks", "ServiceChecks", "TTL"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %v, want %v", fields, want)
	}
	if got["LockDelay"] != float64(15*time.Second) || got["TTL"] != "30s" {
		t.Errorf("LockDelay %v TTL %v, want 15000000000 and \"30s\"", got["LockDelay"], got["TTL"])
	}

	for _, tc := range []struct {
		body string
		want float64
	}{
		{`{"LockDelay":"20s"}`, float64(20 * time.Second)},
		{`{"LockDelay":15}`, float64(15 * time.Second)}, // below 1000: seconds, as in Consul
		{`{"LockDelay":2000000000}`, float64(2 * time.Second)},
		{`{"LockDelay":"0s"}`, 0},
		{`{"lockdelay":"1s"}`, float64(time.Second)},
	} {
		if got := info(create(tc.body))["LockDelay"]; got != tc.want {
			t.Errorf("%s: LockDelay %v, want %v", tc.body, got, tc.want)
		}
	}
	for _, tc := range []struct {
		body string
		want []any
	}{
		{`{}`, []any{"serfHealth"}},
		{`{"NodeChecks":[]}`, []any{}},
		{`{"Checks":[]}`, []any{}},
		{`{"Checks":["serfHealth"],"NodeChecks":["a"]}`, []any{"a"}},
		{`{"Checks":["b"]}`, []any{"serfHealth", "b"}},
		{`{"Checks":["b"],"NodeChecks":[]}`, []any{}},
	} {
		if got := info(create(tc.body))["NodeChecks"]; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: NodeChecks %v, want %v", tc.body, got, tc.want)
		}
	}

	if code, body, _ := call(t, "GET", e.base+"/v1/session/info/unknown", nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("info of an unknown session: %d %q, want 200 []", code, body)
	}
	if code, body, _ := call(t, "PUT", e.base+"/v1/session/renew/unknown", nil); code != 404 || !strings.Contains(body, "unknown") {
		t.Errorf("renew of an unknown session: %d %q, want 404", code, body)
	}
	if code, body, _ := call(t, "PUT", e.base+"/v1/session/destroy/"+id, nil); code != 200 || body != "true\n" {
		t.Errorf("destroy: %d %q", code, body)
	}
	if code, body, _ := call(t, "GET", e.base+"/v1/session/info/", nil); code != 400 || !strings.Contains(body, "Missing session") {
		t.Errorf("info without an ID: %d %q", code, body)
	}
}

// The node of a session created through another agent is that agent's.
func TestSessionOriginNode(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	req := func(hdr map[string]string) string {
		t.Helper()
		code, body, _ := callWith(t, "PUT", e.base+"/v1/session/create", nil, hdr)
		var out struct{ ID string }
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("create: %d %s", code, body)
		}
		s, _, _ := e.client.Session().Info(out.ID, nil)
		return s.Node
	}
	if node := req(map[string]string{hopsHeader: "1", originNodeHeader: "client-7"}); node != "client-7" {
		t.Errorf("forwarded create: node %q, want the origin client-7", node)
	}
	if node := req(map[string]string{originNodeHeader: "spoofed"}); node != "n1" {
		t.Errorf("direct create: node %q, want this agent's n1", node)
	}
}

func TestMergeChecks(t *testing.T) {
	cases := []struct {
		checks, nodeChecks, want []string
	}{
		{[]string{"serfHealth"}, []string{"serfHealth"}, []string{"serfHealth"}},
		{nil, []string{"serfHealth"}, []string{}},
		{[]string{"a", "serfHealth"}, []string{"serfHealth"}, []string{"serfHealth", "a"}},
		{[]string{"a"}, []string{}, []string{}},
		{[]string{"serfHealth"}, []string{"x", "x"}, []string{"x"}},
	}
	for _, tc := range cases {
		if got := mergeChecks(tc.checks, tc.nodeChecks); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("mergeChecks(%v, %v) = %v, want %v", tc.checks, tc.nodeChecks, got, tc.want)
		}
	}
}
