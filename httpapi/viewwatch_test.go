package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// startWatch POSTs a health-watch body in the background.
func (e *kvEnv) startWatch(ctx context.Context, query string, body any) *blockingGet {
	b := &blockingGet{start: time.Now(), done: make(chan blockingResult, 1)}
	raw, _ := json.Marshal(body)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.base+HealthWatchPath+query, strings.NewReader(string(raw)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.done <- blockingResult{err: err, elapsed: time.Since(b.start)}
			return
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
		b.done <- blockingResult{code: resp.StatusCode, body: string(out), index: idx, elapsed: time.Since(b.start), err: err}
	}()
	return b
}

func decodeWatch(t *testing.T, r blockingResult) healthWatchResponse {
	t.Helper()
	if r.code != 200 {
		t.Fatalf("health-watch: %d %s", r.code, trim(r.body))
	}
	var out healthWatchResponse
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("health-watch body %s: %v", trim(r.body), err)
	}
	if out.Services == nil {
		t.Fatalf("health-watch body %s: Services is null", trim(r.body))
	}
	return out
}

// The first call (indexes 0) returns every listed service at once, with
// the entries of /v1/health/service; a blocking call returns only the
// service that changed; an unknown service is index 1 with no entries.
func TestHealthWatch(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	e.seedCatalog(t)
	st := e.store.State()

	r := e.startWatch(context.Background(), "?stale", map[string]any{"Services": map[string]uint64{"web": 0, "api": 0, "ghost": 0}}).result(t, 10*time.Second)
	got := decodeWatch(t, r)
	if len(got.Services) != 3 || len(got.Services["web"].Entries) != 2 || len(got.Services["api"].Entries) != 1 ||
		len(got.Services["ghost"].Entries) != 0 || got.Services["ghost"].Index != 1 {
		t.Fatalf("first health-watch = %s; want web ×2, api ×1, ghost empty at index 1", trim(r.body))
	}
	if got.Services["web"].Index != st.ServiceIndex("web") || r.index < got.Services["web"].Index || r.index < got.Services["api"].Index {
		t.Fatalf("indexes: web %d (store %d), header %d", got.Services["web"].Index, st.ServiceIndex("web"), r.index)
	}
	// The same entries as /v1/health/service/web.
	code, body, _ := call(t, "GET", e.base+"/v1/health/service/web?stale", nil)
	want, _ := json.Marshal(got.Services["web"].Entries)
	var again []serviceEntryJSON
	if err := json.Unmarshal([]byte(body), &again); code != 200 || err != nil {
		t.Fatalf("GET /v1/health/service/web: %d %v", code, err)
	}
	if b, _ := json.Marshal(again); string(b) != string(want) {
		t.Fatalf("health-watch entries differ from /v1/health/service:\n%s\n%s", want, b)
	}

	for _, n := range []int{0, 40} { // few services: per-service waits; many: the catalog tables
		t.Run(fmt.Sprintf("extra=%d", n), func(t *testing.T) {
			idx := map[string]uint64{"web": st.ServiceIndex("web"), "api": st.ServiceIndex("api")}
			for i := range n {
				idx[fmt.Sprintf("ghost-%d", i)] = 1
			}
			// Writes to other services and to the K/V store do not wake it.
			const wait = 400 * time.Millisecond
			b := e.startWatch(context.Background(), "?stale", map[string]any{"Services": idx, "Wait": wait.String()})
			e.waitBlocked(t, 1)
			e.register(t, &consul.CatalogRegistration{Node: "n9", Address: "10.0.0.9", Service: &consul.AgentService{Service: "other"}})
			e.put(t, "web", "x")
			r := b.result(t, 10*time.Second)
			if got := decodeWatch(t, r); len(got.Services) != 0 || r.elapsed < wait {
				t.Fatalf("after writes to others: %s after %s; want no service after the full wait", trim(r.body), r.elapsed)
			}

			b = e.startWatch(context.Background(), "", map[string]any{"Services": idx, "Wait": "1m"})
			e.waitBlocked(t, 1)
			e.register(t, &consul.CatalogRegistration{Node: "n2", SkipNodeUpdate: true,
				Service: &consul.AgentService{Service: "api", Port: 9000 + n}})
			r = b.result(t, 10*time.Second)
			got := decodeWatch(t, r)
			api, ok := got.Services["api"]
			if len(got.Services) != 1 || !ok || api.Index <= idx["api"] || len(api.Entries) != 1 || api.Entries[0].Service.Port != 9000+n {
				t.Fatalf("after a change to api: %s; want only api, at a new index, port %d", trim(r.body), 9000+n)
			}
			if r.index != max(api.Index, st.ServiceIndex("web")) {
				t.Fatalf("X-Consul-Index %d, want the highest listed index", r.index)
			}
		})
	}

	// A client going away ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	b := e.startWatch(ctx, "?stale", map[string]any{"Services": map[string]uint64{"web": st.ServiceIndex("web")}})
	e.waitBlocked(t, 1)
	cancel()
	<-b.done
	e.waitBlocked(t, 0)
}

func TestHealthWatchBadInput(t *testing.T) {
	t.Parallel()
	e := startKV(t, newTestStore(t, true), nil)
	for _, tc := range []struct {
		query, body string
		code        int
		want        string
	}{
		{"", ``, 400, "Invalid health-watch body"},
		{"", `[]`, 400, "Invalid health-watch body"},
		{"", `{}`, 400, "Services: missing or empty"},
		{"", `{"Services": {}}`, 400, "Services: missing or empty"},
		{"", `{"Services": {"web": -1}}`, 400, `Services["web"]: index -1`},
		{"", `{"Services": {"web": "1"}}`, 400, `Services["web"]: index "1"`},
		{"", `{"Services": ["web"]}`, 400, "Services: want an object"},
		{"", `{"Services": {"": 1}}`, 400, "empty service name"},
		{"", `{"Services": {"web": 1}, "Wait": "soon"}`, 400, "Wait: \"soon\""},
		{"", `{"Services": {"web": 1}, "Wait": 60}`, 400, "Wait: want a duration string"},
		{"", `{"Services": {"web": 1}, "Index": 3}`, 400, `unknown field "Index"`},
		{"", `{"Services": {"web": 1}} {}`, 400, "data after the JSON object"},
		{"", `{"Services": {"` + strings.Repeat("x", maxServiceNameLen+1) + `": 1}}`, 400, "at most 512"},
		{"?stale&consistent", `{"Services": {"web": 1}}`, 400, "Cannot specify ?stale with ?consistent"},
		{"?dc=elsewhere", `{"Services": {"web": 1}}`, 500, "No path to datacenter"},
	} {
		code, body, _ := call(t, "POST", e.base+HealthWatchPath+tc.query, strings.NewReader(tc.body))
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s %.60s = %d %q; want %d containing %q", tc.query, tc.body, code, trim(body), tc.code, tc.want)
		}
	}
	big := `{"Services": {"web": 1}, "Wait": "` + strings.Repeat(" ", maxHealthWatchBody) + `"}`
	if code, body, _ := call(t, "POST", e.base+HealthWatchPath, strings.NewReader(big)); code != 413 {
		t.Errorf("POST of %d bytes = %d %q; want 413", len(big), code, trim(body))
	}
	if code, _, _ := call(t, "GET", e.base+HealthWatchPath, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d; want 405", HealthWatchPath, code)
	}
}

func FuzzParseHealthWatch(f *testing.F) {
	for _, s := range []string{
		`{"Services": {"web": 0, "api": 12}, "Wait": "60s"}`,
		`{"Services": {"web": 18446744073709551615}}`,
		`{"Services": {"web": 1}, "Wait": "-1s"}`,
		`{"Services": {"web": 1}, "Wait": "1h"}`,
		`{"Services": {"web": 1.5}}`,
		`{"Services": null}`,
		`{"Services": {"\u0000": 1}}`,
		`{"services": {"web": 1}}`,
		``, `null`, `{`, `{"Services": {"web": 1}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, wait, rerr := parseHealthWatch(body)
		if rerr != nil {
			if rerr.code != 400 || !strings.HasPrefix(rerr.msg, "Invalid health-watch body") {
				t.Fatalf("error %d %q", rerr.code, rerr.msg)
			}
			return
		}
		if len(req.Services) == 0 || len(req.Services) > maxHealthWatchServices {
			t.Fatalf("accepted %d services", len(req.Services))
		}
		for n := range req.Services {
			if n == "" || len(n) > maxServiceNameLen {
				t.Fatalf("accepted service name %q", n)
			}
		}
		if wait <= 0 || wait > maxWait {
			t.Fatalf("wait %v outside (0, %v]", wait, maxWait)
		}
	})
}

// BenchmarkHealthWatchRescan is what a health-watch of many services
// costs the server on each catalog write while it waits (the table-wake
// path re-reads every listed index): here 10,000 services.
func BenchmarkHealthWatchRescan(b *testing.B) {
	st := newTestStore(b, true)
	names := make([]string, 10000)
	min := make([]uint64, len(names))
	for i := range names {
		names[i] = fmt.Sprintf("svc%d", i)
		min[i] = 1 << 40
	}
	state := st.State()
	b.ResetTimer()
	for b.Loop() {
		if anyPassed(state, names, min) {
			b.Fatal("passed")
		}
	}
}
