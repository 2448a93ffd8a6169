package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/kvstore"
)

func TestTxnConsulClient(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	txn := e.client.Txn()

	ok, resp, _, err := txn.Txn(consul.TxnOps{
		{KV: &consul.KVTxnOp{Verb: consul.KVSet, Key: "t/a", Value: []byte("1"), Flags: 5}},
		{KV: &consul.KVTxnOp{Verb: consul.KVSet, Key: "t/b", Value: []byte("2")}},
		{KV: &consul.KVTxnOp{Verb: consul.KVGet, Key: "t/a"}},
	}, nil)
	if err != nil || !ok || len(resp.Errors) != 0 || len(resp.Results) != 3 {
		t.Fatalf("write txn = %v %+v %v", ok, resp, err)
	}
	if r := resp.Results[0].KV; r.Key != "t/a" || r.Value != nil || r.Flags != 5 || r.ModifyIndex == 0 {
		t.Errorf("set result = %+v, want the entry without its value", r)
	}
	if r := resp.Results[2].KV; string(r.Value) != "1" {
		t.Errorf("get result = %+v, want the value", r)
	}
	a, _, _ := e.client.KV().Get("t/a", nil)

	t.Run("rollback", func(t *testing.T) {
		before := contents(t, e.store)
		ok, resp, _, err := txn.Txn(consul.TxnOps{
			{KV: &consul.KVTxnOp{Verb: consul.KVSet, Key: "t/c", Value: []byte("3")}},
			{KV: &consul.KVTxnOp{Verb: consul.KVCheckIndex, Key: "t/a", Index: a.ModifyIndex + 1}},
			{KV: &consul.KVTxnOp{Verb: consul.KVCAS, Key: "t/b", Index: 1}},
		}, nil)
		if err != nil || ok || resp.Results != nil || len(resp.Errors) != 2 {
			t.Fatalf("failing txn = %v %+v %v, want rolled back with two errors", ok, resp, err)
		}
		if resp.Errors[0].OpIndex != 1 || resp.Errors[1].OpIndex != 2 || resp.Errors[0].What == "" {
			t.Errorf("errors = %+v %+v", resp.Errors[0], resp.Errors[1])
		}
		if after := contents(t, e.store); after != before {
			t.Errorf("a rolled-back transaction changed the store")
		}
	})

	t.Run("read only and stale", func(t *testing.T) {
		ok, resp, qm, err := txn.Txn(consul.TxnOps{
			{KV: &consul.KVTxnOp{Verb: consul.KVGetTree, Key: "t/"}},
			{KV: &consul.KVTxnOp{Verb: consul.KVCheckIndex, Key: "t/a", Index: a.ModifyIndex}},
			{KV: &consul.KVTxnOp{Verb: consul.KVCheckNotExists, Key: "t/zzz"}},
		}, &consul.QueryOptions{AllowStale: true})
		if err != nil || !ok || len(resp.Results) != 3 || !qm.KnownLeader {
			t.Fatalf("read txn = %v %+v %+v %v", ok, resp, qm, err)
		}
		if string(resp.Results[0].KV.Value) != "1" || resp.Results[1].KV.Key != "t/b" {
			t.Errorf("get-tree results = %+v %+v", resp.Results[0].KV, resp.Results[1].KV)
		}
	})

	t.Run("locks", func(t *testing.T) {
		id, _, err := e.client.Session().Create(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ok, resp, _, err := e.client.KV().Txn(consul.KVTxnOps{
			{Verb: consul.KVLock, Key: "t/lock", Value: []byte("held"), Session: id},
			{Verb: consul.KVCheckSession, Key: "t/lock", Session: id},
		}, nil)
		if err != nil || !ok || resp.Results[0].Session != id || resp.Results[0].LockIndex != 1 {
			t.Fatalf("lock txn = %v %+v %v", ok, resp, err)
		}
		ok, resp, _, _ = e.client.KV().Txn(consul.KVTxnOps{{Verb: consul.KVLock, Key: "t/lock2", Session: "bogus"}}, nil)
		if ok || len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].What, "invalid session") {
			t.Errorf("lock with a bogus session = %v %+v, want a rollback naming the session", ok, resp)
		}
	})
}

func TestTxnHTTPShapes(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	code, body, hdr := call(t, "PUT", e.base+"/v1/txn", strings.NewReader(`[{"KV":{"Verb":"set","Key":"k","Value":"dmFs"}},{"kv":{"verb":"get","key":"k"}}]`))
	if code != 200 {
		t.Fatalf("txn: %d %s", code, body)
	}
	var ok struct {
		Results []map[string]map[string]any
		Errors  any
	}
	if err := json.Unmarshal([]byte(body), &ok); err != nil || ok.Errors != nil || len(ok.Results) != 2 || !strings.Contains(body, `"Errors":null`) {
		t.Fatalf("txn body %s, want Results and Errors null", body)
	}
	if kv := ok.Results[1]["KV"]; kv["Value"] != "dmFs" || kv["Key"] != "k" || kv["LockIndex"] != float64(0) {
		t.Errorf("get result = %v", kv)
	}
	if ok.Results[0]["KV"]["Value"] != nil {
		t.Errorf("set result carries a value: %v", ok.Results[0]["KV"])
	}
	if hdr.Get("X-Consul-Index") == "" || hdr.Get("X-Consul-LastContact") != "0" {
		t.Errorf("headers %v", hdr)
	}

	code, body, _ = call(t, "PUT", e.base+"/v1/txn", strings.NewReader(`[{"KV":{"Verb":"get","Key":"missing"}}]`))
	if code != http.StatusConflict || !strings.Contains(body, `"Results":null`) || !strings.Contains(body, `"OpIndex":0`) || !strings.Contains(body, "missing") {
		t.Errorf("failing read txn: %d %s, want 409 with Results null and the error", code, body)
	}

	code, body, hdr = call(t, "PUT", e.base+"/v1/txn?stale", strings.NewReader(`[]`))
	if code != 200 || hdr.Get("X-Consul-Effective-Consistency") != "stale" || !strings.Contains(body, `"Results":[]`) {
		t.Errorf("empty stale txn: %d %s %v", code, body, hdr)
	}
}

func TestDecodeTxn(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(make([]byte, kvstore.MaxValueSize+1))
	half := base64.StdEncoding.EncodeToString(make([]byte, kvstore.MaxValueSize/2+1))
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"get","Key":"k"}},`, kvstore.MaxTxnOps+1), ",") + "]"
	maxOps := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"get","Key":"k"}},`, kvstore.MaxTxnOps), ",") + "]"
	cases := []struct {
		name, body string
		code       int
		msg        string
	}{
		{"ok", `[{"KV":{"Verb":"cas","Key":"k","Value":null,"Flags":1,"Index":2}}]`, 0, ""},
		{"max ops", maxOps, 0, ""},
		{"namespace default", `[{"KV":{"Verb":"get","Key":"k","Namespace":"default"}}]`, 0, ""},
		{"empty body", ``, 400, "empty body"},
		{"bad json", `[{"KV":`, 400, "Failed to parse body"},
		{"not an array", `{"KV":{"Verb":"get","Key":"k"}}`, 400, "JSON array"},
		{"trailing data", `[] []`, 400, "Failed to parse body"},
		{"bad base64", `[{"KV":{"Verb":"set","Key":"k","Value":"!!!"}}]`, 400, "base64"},
		{"value not a string", `[{"KV":{"Verb":"set","Key":"k","Value":5}}]`, 400, "operation 0"},
		{"unknown verb", `[{"KV":{"Verb":"get","Key":"k"}},{"KV":{"Verb":"frobnicate","Key":"k"}}]`, 400, `Operation 1: unknown KV verb "frobnicate"`},
		{"get-or-empty", `[{"KV":{"Verb":"get-or-empty","Key":"k"}}]`, 400, `"get-or-empty"`},
		{"too many ops", many, 413, "too many operations (129 > 128)"},
		{"node op", `[{"Node":{"Verb":"get","Node":{"Node":"n1"}}}]`, 400, "Node operations are not supported"},
		{"service op", `[{"KV":null,"Service":{"Verb":"get"}}]`, 400, "Service operations are not supported"},
		{"no op", `[{}]`, 400, "missing KV operation"},
		{"missing key", `[{"KV":{"Verb":"set","Value":"dg=="}}]`, 400, "needs a key"},
		{"lock without session", `[{"KV":{"Verb":"lock","Key":"k"}}]`, 400, "needs a session"},
		{"partition", `[{"KV":{"Verb":"get","Key":"k","Partition":"p1"}}]`, 400, "Partition"},
		{"value too large", `[{"KV":{"Verb":"set","Key":"k","Value":"` + big + `"}}]`, 413, "too large"},
		{"values too large together", `[{"KV":{"Verb":"set","Key":"k","Value":"` + half + `"}},{"KV":{"Verb":"set","Key":"j","Value":"` + half + `"}}]`, 413, "Cumulative size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := decodeTxn([]byte(tc.body))
			if tc.code == 0 {
				if err != nil || len(ops) == 0 {
					t.Fatalf("decodeTxn = %v, %v", ops, err)
				}
				return
			}
			if err == nil || err.code != tc.code || !strings.Contains(err.msg, tc.msg) {
				t.Fatalf("error %v, want %d containing %q", err, tc.code, tc.msg)
			}
		})
	}
	ops, _ := decodeTxn([]byte(`[{"KV":{"Verb":"cas","Key":"k","Value":"dg==","Flags":1,"Index":2,"Session":"s"}}]`))
	if want := (kvstore.KVOp{Verb: kvstore.VerbCAS, Key: "k", Value: []byte("v"), Flags: 1, Index: 2, Session: "s"}); fmt.Sprint(ops) != fmt.Sprint([]kvstore.KVOp{want}) {
		t.Errorf("ops = %+v, want %+v", ops, want)
	}
}

func FuzzDecodeTxn(f *testing.F) {
	for _, seed := range []string{
		`[{"KV":{"Verb":"set","Key":"k","Value":"dmFs"}}]`,
		`[{"KV":{"Verb":"get-tree","Key":""}},{"KV":{"Verb":"check-index","Key":"a","Index":3}}]`,
		`[{"KV":{"Verb":"lock","Key":"k","Session":"s","Flags":18446744073709551615}}]`,
		`[{"Node":{}},{"KV":null}]`,
		`[{"KV":{"Verb":"set","Key":"k","Value":"!"}}]`,
		`[{"kv":{"verb":"delete-cas","key":"x","index":-1}}]`,
		`null`, `[]`, `{}`, `[`, ``, `[1,2,3]`, `[{"KV":[]}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := decodeTxn(body)
		if err != nil {
			if err.msg == "" || (err.code != http.StatusBadRequest && err.code != http.StatusRequestEntityTooLarge) {
				t.Fatalf("error %d %q: want 400 or 413 with a message", err.code, err.msg)
			}
			return
		}
		if len(ops) > kvstore.MaxTxnOps {
			t.Fatalf("%d ops accepted", len(ops))
		}
		// What decodes, the store accepts.
		if err := (&kvstore.Command{Type: kvstore.CmdTxn, Ops: ops}).Validate(); err != nil {
			t.Fatalf("decoded ops fail validation: %v", err)
		}
	})
}
