package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// encodings reads outrigger_health_watch_encodings_total.
func (e *kvEnv) encodings(t testing.TB) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outrigger_health_watch_encodings_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no outrigger_health_watch_encodings_total metric")
	return 0
}

// rawWatch POSTs a health-watch with the given Accept-Encoding (none: a
// transport that asks for no compression) and returns the status, the
// Content-Encoding and the body as sent (not decoded).
func (e *kvEnv) rawWatch(t testing.TB, query, acceptEncoding string, body any) (int, string, []byte) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.base+HealthWatchPath+query, bytes.NewReader(raw))
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Encoding"), b
}

// canonical re-encodes a JSON document (map keys sorted, no spaces).
func canonical(t testing.TB, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, trim(string(b)))
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// Plain, gzip (members read as one stream by Go's reader) and ?pretty
// answers carry the same document, which holds the entries of
// /v1/health/service; a client refusing gzip (q=0) gets plain JSON.
func TestHealthWatchEncodings(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	body := map[string]any{"Services": map[string]uint64{"web": 0, "api": 0, "ghost": 0}}

	code, ce, plain := e.rawWatch(t, "?stale", "", body)
	if code != 200 || ce != "" {
		t.Fatalf("plain: %d, Content-Encoding %q", code, ce)
	}
	want := canonical(t, plain)
	var doc healthWatchResponse
	if err := json.Unmarshal(plain, &doc); err != nil || len(doc.Services) != 3 || len(doc.Services["web"].Entries) != 2 {
		t.Fatalf("plain answer %s: %v", trim(string(plain)), err)
	}
	_, hs, _ := call(t, "GET", e.base+"/v1/health/service/web?stale", nil)
	if got, _ := json.Marshal(doc.Services["web"].Entries); canonical(t, got) != canonical(t, []byte(hs)) {
		t.Fatalf("health-watch entries differ from /v1/health/service/web:\n%s\n%s", got, hs)
	}

	code, ce, zipped := e.rawWatch(t, "?stale", "deflate, gzip;q=0.8", body)
	if code != 200 || ce != "gzip" {
		t.Fatalf("gzip: %d, Content-Encoding %q", code, ce)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip stream: %v", err)
	}
	if got := canonical(t, unzipped); got != want {
		t.Fatalf("gzip answer differs from the plain one:\n%s\n%s", got, want)
	}

	if code, ce, b := e.rawWatch(t, "?stale", "gzip;q=0", body); code != 200 || ce != "" || canonical(t, b) != want {
		t.Fatalf("gzip;q=0: %d, Content-Encoding %q, %s", code, ce, trim(string(b)))
	}
	code, _, pretty := e.rawWatch(t, "?stale&pretty", "", body)
	if code != 200 || !strings.Contains(string(pretty), "\n    ") || canonical(t, pretty) != want {
		t.Fatalf("?pretty: %d %s", code, trim(string(pretty)))
	}
	// Nothing changed: an empty object, in both encodings.
	st := e.store.State()
	none := map[string]any{"Services": map[string]uint64{"web": st.ServiceIndex("web")}, "Wait": "50ms"}
	if code, _, b := e.rawWatch(t, "?stale", "", none); code != 200 || canonical(t, b) != `{"Services":{}}` {
		t.Fatalf("no change, plain: %d %s", code, b)
	}
	code, _, b := e.rawWatch(t, "?stale", "gzip", none)
	zr, err = gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := io.ReadAll(zr); code != 200 || canonical(t, u) != `{"Services":{}}` {
		t.Fatalf("no change, gzip: %d %s", code, u)
	}
}

// One change to a service followed by many agents is encoded once: every
// answer at that index shares it, and each is the full, correct document.
func TestHealthWatchEncodesOncePerChange(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	st := e.store.State()
	const watchers = 40
	before := e.encodings(t)
	var results []*blockingGet
	for range watchers {
		results = append(results, e.startWatch(context.Background(), "?stale",
			map[string]any{"Services": map[string]uint64{"web": st.ServiceIndex("web"), "api": st.ServiceIndex("api")}, "Wait": "1m"}))
	}
	e.waitBlocked(t, watchers)
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Service: &consul.AgentService{ID: "web-new", Service: "web", Port: 7777}})
	var bodies sync.Map
	for i, b := range results {
		r := b.result(t, 20*time.Second)
		got := decodeWatch(t, r)
		web, ok := got.Services["web"]
		if len(got.Services) != 1 || !ok || len(web.Entries) != 3 || web.Index != st.ServiceIndex("web") {
			t.Fatalf("watcher %d: %s; want web only, 3 entries, index %d", i, trim(r.body), st.ServiceIndex("web"))
		}
		bodies.Store(r.body, true)
	}
	n := 0
	bodies.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d different answers to %d watchers of one change", n, watchers)
	}
	if d := e.encodings(t) - before; d != 1 {
		t.Fatalf("one change to web answered to %d watchers: %v encodings, want 1", watchers, d)
	}
	// The next change is encoded again.
	e.register(t, &consul.CatalogRegistration{Node: "n1", SkipNodeUpdate: true,
		Service: &consul.AgentService{ID: "web-new", Service: "web", Port: 7778}})
	r := e.startWatch(context.Background(), "?stale", map[string]any{"Services": map[string]uint64{"web": 0}}).result(t, 10*time.Second)
	if got := decodeWatch(t, r); !strings.Contains(fmt.Sprint(got.Services["web"].Entries), "7778") {
		t.Fatalf("after the second change: %s", trim(r.body))
	}
	if d := e.encodings(t) - before; d != 2 {
		t.Fatalf("two changes: %v encodings, want 2", d)
	}
}
