package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/kvstore"
)

func TestKVConsulClient(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	kv := e.client.KV()
	put := func(key, value string, flags uint64) {
		t.Helper()
		if _, err := kv.Put(&consul.KVPair{Key: key, Value: []byte(value), Flags: flags}, nil); err != nil {
			t.Fatalf("Put %s: %v", key, err)
		}
	}
	get := func(key string) *consul.KVPair {
		t.Helper()
		p, _, err := kv.Get(key, nil)
		if err != nil {
			t.Fatalf("Get %s: %v", key, err)
		}
		return p
	}

	t.Run("put get", func(t *testing.T) {
		put("web/foo", "bar", 42)
		p, qm, err := kv.Get("web/foo", nil)
		if err != nil || p == nil {
			t.Fatalf("Get = %v, %v", p, err)
		}
		if string(p.Value) != "bar" || p.Flags != 42 || p.CreateIndex == 0 || p.ModifyIndex != p.CreateIndex || p.Session != "" {
			t.Errorf("Get = %+v", p)
		}
		if qm.LastIndex != p.ModifyIndex || !qm.KnownLeader || qm.LastContact != 0 {
			t.Errorf("meta = %+v, want index %d, known leader, no last contact", qm, p.ModifyIndex)
		}
		p, qm, err = kv.Get("web/nope", nil)
		if err != nil || p != nil || qm.LastIndex < 1 {
			t.Errorf("missing key: %v %+v %v", p, qm, err)
		}
		put("empty", "", 0)
		if p := get("empty"); p == nil || p.Value != nil {
			t.Errorf("empty value = %+v, want a pair with a nil Value", p)
		}
	})

	t.Run("list keys", func(t *testing.T) {
		put("web/bar", "1", 0)
		put("web/sub/x", "2", 0)
		put("webx", "3", 0)
		pairs, qm, err := kv.List("web/", nil)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var maxIdx uint64
		for _, p := range pairs {
			keys = append(keys, p.Key)
			maxIdx = max(maxIdx, p.ModifyIndex)
		}
		if want := []string{"web/bar", "web/foo", "web/sub/x"}; !reflect.DeepEqual(keys, want) {
			t.Errorf("List = %v, want %v", keys, want)
		}
		if qm.LastIndex != maxIdx {
			t.Errorf("List index = %d, want the highest ModifyIndex %d", qm.LastIndex, maxIdx)
		}
		got, _, err := kv.Keys("web/", "/", nil)
		if want := []string{"web/bar", "web/foo", "web/sub/"}; err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Keys(web/, /) = %v, %v; want %v", got, err, want)
		}
		got, _, _ = kv.Keys("web/", "", nil)
		if want := []string{"web/bar", "web/foo", "web/sub/x"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Keys(web/) = %v, want %v", got, want)
		}
		if pairs, _, err := kv.List("nothing/", nil); err != nil || pairs != nil {
			t.Errorf("List of an empty prefix = %v, %v", pairs, err)
		}
	})

	t.Run("cas", func(t *testing.T) {
		p := get("web/foo")
		ok, _, err := kv.CAS(&consul.KVPair{Key: "web/foo", Value: []byte("x"), ModifyIndex: p.ModifyIndex + 100}, nil)
		if err != nil || ok {
			t.Errorf("CAS at a wrong index = %v, %v; want false", ok, err)
		}
		ok, _, _ = kv.CAS(&consul.KVPair{Key: "web/foo", Value: []byte("x"), ModifyIndex: 0}, nil)
		if ok {
			t.Error("CAS 0 on an existing key succeeded")
		}
		ok, _, _ = kv.CAS(&consul.KVPair{Key: "web/foo", Value: []byte("new"), ModifyIndex: p.ModifyIndex}, nil)
		if !ok || string(get("web/foo").Value) != "new" {
			t.Error("CAS at the right index failed")
		}
		ok, _, _ = kv.CAS(&consul.KVPair{Key: "fresh", Value: []byte("1"), ModifyIndex: 0}, nil)
		if !ok || get("fresh") == nil {
			t.Error("CAS 0 on an absent key failed")
		}
	})

	t.Run("delete", func(t *testing.T) {
		p := get("fresh")
		if ok, _, err := kv.DeleteCAS(&consul.KVPair{Key: "fresh", ModifyIndex: p.ModifyIndex + 1}, nil); err != nil || ok {
			t.Errorf("DeleteCAS at a wrong index = %v, %v", ok, err)
		}
		if ok, _, _ := kv.DeleteCAS(&consul.KVPair{Key: "fresh", ModifyIndex: p.ModifyIndex}, nil); !ok || get("fresh") != nil {
			t.Error("DeleteCAS at the right index did not delete")
		}
		if _, err := kv.Delete("web/bar", nil); err != nil || get("web/bar") != nil {
			t.Errorf("Delete: %v", err)
		}
		if _, err := kv.DeleteTree("web/", nil); err != nil {
			t.Fatal(err)
		}
		if pairs, _, _ := kv.List("web/", nil); pairs != nil || get("webx") == nil {
			t.Errorf("after DeleteTree(web/): web/ has %v, webx %v", pairs, get("webx"))
		}
	})

	t.Run("locks", func(t *testing.T) {
		s1, _, err := e.client.Session().Create(&consul.SessionEntry{Name: "one", LockDelay: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s2, _, _ := e.client.Session().Create(nil, nil)
		acquire := func(sess, value string) bool {
			t.Helper()
			ok, _, err := kv.Acquire(&consul.KVPair{Key: "lock", Value: []byte(value), Session: sess}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !acquire(s1, "a") {
			t.Fatal("first acquire failed")
		}
		if p := get("lock"); p.LockIndex != 1 || p.Session != s1 {
			t.Errorf("after acquire: %+v", p)
		}
		if !acquire(s1, "b") {
			t.Error("the holder could not re-acquire")
		}
		if p := get("lock"); p.LockIndex != 1 || string(p.Value) != "b" {
			t.Errorf("after re-acquire: %+v, want LockIndex 1 and the new value", p)
		}
		if acquire(s2, "c") {
			t.Error("another session acquired a held lock")
		}
		put("lock", "plain", 0)
		if p := get("lock"); string(p.Value) != "plain" || p.Session != s1 {
			t.Errorf("after a plain PUT on a locked key: %+v, want the value written and the lock kept", p)
		}
		if ok, _, _ := kv.Release(&consul.KVPair{Key: "lock", Session: s2}, nil); ok {
			t.Error("a non-holder released the lock")
		}
		if ok, _, _ := kv.Release(&consul.KVPair{Key: "lock", Session: s1}, nil); !ok {
			t.Error("the holder could not release")
		}
		if p := get("lock"); p.Session != "" || p.LockIndex != 1 {
			t.Errorf("after release: %+v", p)
		}
		if !acquire(s2, "d") || get("lock").LockIndex != 2 {
			t.Errorf("second holder: %+v, want LockIndex 2", get("lock"))
		}
		if _, _, err := kv.Acquire(&consul.KVPair{Key: "lock2", Session: "no-such-session"}, nil); err == nil || !strings.Contains(err.Error(), "invalid session") {
			t.Errorf("acquire with an unknown session: %v, want an invalid session error", err)
		}
	})
}

func TestKVHTTPShapes(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)

	// The root of an empty store lists as [], unlike any other prefix.
	if code, body, _ := call(t, "GET", e.base+"/v1/kv/?keys", nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("keys of an empty root: %d %q, want 200 []", code, body)
	}
	if code, body, _ := call(t, "GET", e.base+"/v1/kv/?recurse", nil); code != 404 || body != "" {
		t.Errorf("recurse on an empty root: %d %q, want 404", code, body)
	}

	code, body, _ := call(t, "PUT", e.base+"/v1/kv/shape?flags=7", strings.NewReader("hello"))
	if code != 200 || body != "true\n" {
		t.Fatalf("PUT: %d %q, want true", code, body)
	}
	code, body, hdr := call(t, "GET", e.base+"/v1/kv/shape", nil)
	var got []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got) != 1 {
		t.Fatalf("GET: %d %q", code, body)
	}
	var fields []string
	for k := range got[0] {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	if want := []string{"CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Value"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("entry fields = %v, want %v (no Session when unlocked)", fields, want)
	}
	if got[0]["Value"] != "aGVsbG8=" || got[0]["Flags"] != float64(7) || got[0]["Key"] != "shape" {
		t.Errorf("entry = %v", got[0])
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if idx := hdr.Get("X-Consul-Index"); idx != jsonNumber(got[0]["ModifyIndex"]) {
		t.Errorf("X-Consul-Index = %s, want the ModifyIndex %v", idx, got[0]["ModifyIndex"])
	}

	t.Run("leading slash", func(t *testing.T) {
		if code, body, _ := call(t, "GET", e.base+"/v1/kv/%2Fshape?raw", nil); code != 200 || body != "hello" {
			t.Errorf("GET /v1/kv/%%2Fshape: %d %q, want the key shape", code, body)
		}
	})

	t.Run("empty value is null", func(t *testing.T) {
		call(t, "PUT", e.base+"/v1/kv/nothing", nil)
		_, body, _ := call(t, "GET", e.base+"/v1/kv/nothing", nil)
		if !strings.Contains(body, `"Value":null`) {
			t.Errorf("body = %s, want Value null", body)
		}
	})

	t.Run("raw", func(t *testing.T) {
		code, body, hdr := call(t, "GET", e.base+"/v1/kv/shape?raw", nil)
		if code != 200 || body != "hello" || hdr.Get("Content-Type") != "text/plain; charset=utf-8" || hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("raw text: %d %q %v", code, body, hdr)
		}
		call(t, "PUT", e.base+"/v1/kv/bin", strings.NewReader("\x00\x01\xff"))
		code, body, hdr = call(t, "GET", e.base+"/v1/kv/bin?raw", nil)
		if code != 200 || body != "\x00\x01\xff" || hdr.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("raw binary: %d %q %v", code, body, hdr)
		}
		call(t, "PUT", e.base+"/v1/kv/html", strings.NewReader("<script>alert(1)</script>"))
		if _, _, hdr := call(t, "GET", e.base+"/v1/kv/html?raw", nil); hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("raw HTML served as %q, want text/plain", hdr.Get("Content-Type"))
		}
	})

	t.Run("missing", func(t *testing.T) {
		for _, path := range []string{"/v1/kv/missing", "/v1/kv/missing/?recurse", "/v1/kv/missing/?keys", "/v1/kv/missing?raw"} {
			code, body, hdr := call(t, "GET", e.base+path, nil)
			if code != 404 || body != "" || hdr.Get("X-Consul-Index") == "" || hdr.Get("X-Consul-LastContact") != "0" {
				t.Errorf("GET %s: %d %q %v, want 404, empty body, read headers", path, code, body, hdr)
			}
		}
	})

	t.Run("delete answers true", func(t *testing.T) {
		for _, path := range []string{"/v1/kv/shape", "/v1/kv/never", "/v1/kv/none/?recurse", "/v1/kv/?recurse"} {
			if code, body, _ := call(t, "DELETE", e.base+path, nil); code != 200 || body != "true\n" {
				t.Errorf("DELETE %s: %d %q", path, code, body)
			}
		}
		if code, body, _ := call(t, "DELETE", e.base+"/v1/kv/x?cas=5", nil); code != 200 || body != "true\n" {
			t.Errorf("delete-cas of an absent key: %d %q, want true as in Consul", code, body)
		}
	})

	t.Run("pretty", func(t *testing.T) {
		call(t, "PUT", e.base+"/v1/kv/p", strings.NewReader("v"))
		if _, body, _ := call(t, "GET", e.base+"/v1/kv/p?pretty", nil); !strings.Contains(body, "\n    ") {
			t.Errorf("?pretty body not indented: %q", body)
		}
	})

	t.Run("other datacenter", func(t *testing.T) {
		if code, body, _ := call(t, "GET", e.base+"/v1/kv/p?dc=dc9", nil); code != 500 || !strings.Contains(body, "No path to datacenter") {
			t.Errorf("dc=dc9: %d %q", code, body)
		}
		if code, _, _ := call(t, "GET", e.base+"/v1/kv/p?dc=dc1", nil); code != 200 {
			t.Errorf("dc=dc1: %d", code)
		}
	})

	t.Run("method not allowed", func(t *testing.T) {
		if code, _, _ := call(t, "POST", e.base+"/v1/kv/p", nil); code != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d, want 405", code)
		}
	})
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestParseKVRequest(t *testing.T) {
	cases := []struct {
		method, key, query string
		want               kvstore.KVOp
		wantErr            string
	}{
		{"PUT", "k", "", kvstore.KVOp{Verb: kvstore.VerbSet, Key: "k"}, ""},
		{"PUT", "/k", "flags=9", kvstore.KVOp{Verb: kvstore.VerbSet, Key: "k", Flags: 9}, ""},
		{"PUT", "k", "flags=", kvstore.KVOp{Verb: kvstore.VerbSet, Key: "k"}, ""},
		{"PUT", "k", "cas=0", kvstore.KVOp{Verb: kvstore.VerbCAS, Key: "k"}, ""},
		{"PUT", "k", "cas=12&flags=1", kvstore.KVOp{Verb: kvstore.VerbCAS, Key: "k", Index: 12, Flags: 1}, ""},
		{"PUT", "k", "acquire=s1", kvstore.KVOp{Verb: kvstore.VerbLock, Key: "k", Session: "s1"}, ""},
		{"PUT", "k", "release=s1", kvstore.KVOp{Verb: kvstore.VerbUnlock, Key: "k", Session: "s1"}, ""},
		{"DELETE", "k", "", kvstore.KVOp{Verb: kvstore.VerbDelete, Key: "k"}, ""},
		{"DELETE", "", "recurse", kvstore.KVOp{Verb: kvstore.VerbDeleteTree}, ""},
		{"DELETE", "k", "cas=3", kvstore.KVOp{Verb: kvstore.VerbDeleteCAS, Key: "k", Index: 3}, ""},
		{"PUT", "", "", kvstore.KVOp{}, "Missing key name"},
		{"DELETE", "", "", kvstore.KVOp{}, "Missing key name"},
		{"PUT", "k", "cas=1&acquire=s", kvstore.KVOp{}, "Conflicting flags"},
		{"PUT", "k", "acquire=s&release=s", kvstore.KVOp{}, "Conflicting flags"},
		{"DELETE", "k", "recurse&cas=1", kvstore.KVOp{}, "Conflicting flags"},
		{"PUT", "k", "acquire=", kvstore.KVOp{}, "Missing session ID"},
		{"PUT", "k", "flags=-1", kvstore.KVOp{}, `Invalid flags "-1"`},
		{"PUT", "k", "cas=x", kvstore.KVOp{}, `Invalid cas "x"`},
		{"PUT", "k", "cas", kvstore.KVOp{}, `Invalid cas ""`},
		{"PUT", "a\xffb", "", kvstore.KVOp{}, "not valid UTF-8"},
		{"PUT", "a\nb", "", kvstore.KVOp{}, "control character"},
		{"PUT", strings.Repeat("k", kvstore.MaxKeySize+1), "", kvstore.KVOp{}, "Key too large"},
		{"PATCH", "k", "", kvstore.KVOp{}, "not allowed"},
	}
	for _, tc := range cases {
		q, _ := url.ParseQuery(tc.query)
		kr, err := parseKVRequest(tc.method, tc.key, q)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.msg, tc.wantErr) {
				t.Errorf("%s %q ?%s: error %v, want one containing %q", tc.method, tc.key, tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(kr.op, tc.want) {
			t.Errorf("%s %q ?%s = %+v, %v; want %+v", tc.method, tc.key, tc.query, kr.op, err, tc.want)
		}
	}

	gets := []struct {
		query   string
		recurse bool
		keys    bool
		sep     string
	}{
		{"recurse", true, false, ""},
		{"keys", true, true, ""},
		{"keys&separator=/", true, true, "/"},
		{"keys&seperator=/", true, true, "/"},
		{"keys&seperator=-&separator=/", true, true, "/"},
	}
	for _, g := range gets {
		q, _ := url.ParseQuery(g.query)
		kr, err := parseKVRequest("GET", "p/", q)
		if err != nil || kr.recurse != g.recurse || kr.keys != g.keys || kr.separator != g.sep {
			t.Errorf("GET ?%s = %+v, %v", g.query, kr, err)
		}
	}
	if _, err := parseKVRequest("GET", "", url.Values{}); err == nil || err.msg != "Missing key name" {
		t.Errorf("GET of the empty key without recurse: %v, want Missing key name", err)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, seed := range []struct{ method, key, query string }{
		{"GET", "a", "index=5&wait=10s"},
		{"GET", "a/", "recurse&stale&index=18446744073709551615&wait=999h"},
		{"GET", "", "keys&separator=/&consistent"},
		{"GET", "x", "stale&consistent"},
		{"GET", "x", "wait=-5s&index=%zz"},
		{"PUT", "k", "cas=0&flags=1"},
		{"PUT", "/k", "acquire=abc&flags=18446744073709551615"},
		{"PUT", "k", "release=&cas=1"},
		{"DELETE", "", "recurse&cas=0"},
		{"DELETE", "k\xff", "cas=-1"},
		{"HEAD", "k", "raw&index=1"},
	} {
		f.Add(seed.method, seed.key, seed.query)
	}
	f.Fuzz(func(t *testing.T, method, key, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery)
		kr, err := parseKVRequest(method, key, q)
		if err != nil {
			if err.msg == "" || (err.code != http.StatusBadRequest && err.code != http.StatusMethodNotAllowed) {
				t.Fatalf("error %d %q: want 400 or 405 with a message", err.code, err.msg)
			}
			return
		}
		if strings.HasPrefix(kr.key, "/") || len(kr.key) > kvstore.MaxKeySize {
			t.Fatalf("key %q accepted", kr.key)
		}
		switch method {
		case http.MethodGet, http.MethodHead:
			if kr.read.wait <= 0 || kr.read.wait > maxWait {
				t.Fatalf("wait %s outside (0, %s]", kr.read.wait, maxWait)
			}
			if kr.key == "" && !kr.recurse {
				t.Fatal("empty key accepted without recurse")
			}
		default:
			if !kr.op.Verb.IsWrite() || kr.op.Key != kr.key {
				t.Fatalf("op %+v for key %q", kr.op, kr.key)
			}
			// What parsing accepts, the store accepts (less the value).
			if err := (&kvstore.Command{Type: kvstore.CmdKV, KV: kr.op}).Validate(); err != nil {
				t.Fatalf("parsed op %+v fails validation: %v", kr.op, err)
			}
		}
	})
}
