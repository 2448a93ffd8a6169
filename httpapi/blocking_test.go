package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// blockingGet is one blocking GET running in the background.
type blockingGet struct {
	start time.Time
	done  chan blockingResult
}

type blockingResult struct {
	code    int
	body    string
	index   uint64
	elapsed time.Duration
	err     error
}

func (e *kvEnv) startGet(ctx context.Context, path string) *blockingGet {
	b := &blockingGet{start: time.Now(), done: make(chan blockingResult, 1)}
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.done <- blockingResult{err: err, elapsed: time.Since(b.start)}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
		b.done <- blockingResult{code: resp.StatusCode, body: string(body), index: idx, elapsed: time.Since(b.start), err: err}
	}()
	return b
}

func (b *blockingGet) result(t *testing.T, within time.Duration) blockingResult {
	t.Helper()
	select {
	case r := <-b.done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(within):
		t.Fatalf("blocking query still blocked after %s", within)
		return blockingResult{}
	}
}

func (e *kvEnv) put(t *testing.T, key, value string) uint64 {
	t.Helper()
	if _, err := e.client.KV().Put(&consul.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
	_, idx := e.store.State().Get(key)
	return idx
}

func TestBlockingKV(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	ia := e.put(t, "a", "1")
	e.put(t, "b", "1")
	ip := e.put(t, "dir/x", "1")

	t.Run("index 0 returns at once", func(t *testing.T) {
		r := e.startGet(context.Background(), "/v1/kv/a?index=0&wait=10m").result(t, 5*time.Second)
		if r.code != 200 || r.index != ia {
			t.Errorf("got %d index %d, want 200 index %d", r.code, r.index, ia)
		}
	})

	t.Run("an old index returns at once", func(t *testing.T) {
		r := e.startGet(context.Background(), fmt.Sprintf("/v1/kv/a?index=%d&wait=10m", ia-1)).result(t, 5*time.Second)
		if r.index != ia {
			t.Errorf("index %d, want %d", r.index, ia)
		}
	})

	t.Run("not woken by another key", func(t *testing.T) {
		const wait = 400 * time.Millisecond
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/kv/a?index=%d&wait=%s", ia, wait))
		e.waitBlocked(t, 1)
		e.put(t, "b", "2")
		e.put(t, "aa", "2") // a key with a as its prefix is another key
		r := b.result(t, 10*time.Second)
		if r.code != 200 || r.index != ia || !strings.Contains(r.body, `"Key":"a"`) {
			t.Errorf("got %d index %d %s, want 200 at the same index %d", r.code, r.index, r.body, ia)
		}
		if r.elapsed < wait {
			t.Errorf("returned after %s, before the wait of %s: woken by a write elsewhere", r.elapsed, wait)
		}
	})

	t.Run("woken by its key", func(t *testing.T) {
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/kv/a?index=%d&wait=10m", ia))
		e.waitBlocked(t, 1)
		ia2 := e.put(t, "a", "2")
		r := b.result(t, 10*time.Second)
		if r.index != ia2 || !strings.Contains(r.body, `"Value":"Mg=="`) {
			t.Errorf("got index %d %s, want index %d and the new value", r.index, r.body, ia2)
		}
		ia = ia2
	})

	t.Run("woken by a delete", func(t *testing.T) {
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/kv/a?index=%d&wait=10m", ia))
		e.waitBlocked(t, 1)
		if _, err := e.client.KV().Delete("a", nil); err != nil {
			t.Fatal(err)
		}
		r := b.result(t, 10*time.Second)
		if r.code != 404 || r.index <= ia {
			t.Errorf("got %d index %d, want 404 at an index above %d", r.code, r.index, ia)
		}
	})

	t.Run("prefix", func(t *testing.T) {
		b := e.startGet(context.Background(), fmt.Sprintf("/v1/kv/dir/?recurse&index=%d&wait=300ms", ip))
		e.waitBlocked(t, 1)
		e.put(t, "dirx", "outside the prefix")
		if r := b.result(t, 10*time.Second); r.index != ip || r.elapsed < 300*time.Millisecond {
			t.Errorf("prefix watcher woken by a write outside it: index %d after %s", r.index, r.elapsed)
		}
		b = e.startGet(context.Background(), fmt.Sprintf("/v1/kv/dir/?keys&index=%d&wait=10m", ip))
		e.waitBlocked(t, 1)
		iy := e.put(t, "dir/deep/y", "1")
		if r := b.result(t, 10*time.Second); r.index != iy || !strings.Contains(r.body, "dir/deep/y") {
			t.Errorf("prefix watcher: index %d %s, want %d with the new key", r.index, r.body, iy)
		}
	})

	t.Run("consul client", func(t *testing.T) {
		_, qm, err := e.client.KV().Get("c", nil)
		if err != nil {
			t.Fatal(err)
		}
		type res struct {
			p   *consul.KVPair
			qm  *consul.QueryMeta
			err error
		}
		done := make(chan res, 1)
		go func() {
			p, qm2, err := e.client.KV().Get("c", &consul.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: time.Minute})
			done <- res{p, qm2, err}
		}()
		e.waitBlocked(t, 1)
		e.put(t, "c", "now")
		select {
		case r := <-done:
			if r.err != nil || r.p == nil || string(r.p.Value) != "now" || r.qm.LastIndex <= qm.LastIndex {
				t.Errorf("blocking Get = %+v %+v %v", r.p, r.qm, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocking Get not woken")
		}
	})

	t.Run("client cancel ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		b := e.startGet(ctx, fmt.Sprintf("/v1/kv/b?index=%d&wait=10m", 1<<40))
		e.waitBlocked(t, 1)
		cancel()
		if r := <-b.done; r.err == nil {
			t.Errorf("request not cancelled: %+v", r)
		}
		e.waitBlocked(t, 0)
	})
}

func TestParseReadOptions(t *testing.T) {
	cases := []struct {
		query   string
		want    readOptions
		wantErr string
	}{
		{"", readOptions{mode: modeDefault, wait: defaultWait}, ""},
		{"stale", readOptions{mode: modeStale, wait: defaultWait}, ""},
		{"stale=false", readOptions{mode: modeStale, wait: defaultWait}, ""},
		{"consistent", readOptions{mode: modeConsistent, wait: defaultWait}, ""},
		{"index=7&wait=30s", readOptions{index: 7, wait: 30 * time.Second}, ""},
		{"index=&wait=", readOptions{wait: defaultWait}, ""},
		{"wait=0s", readOptions{wait: defaultWait}, ""},
		{"wait=-1m", readOptions{wait: defaultWait}, ""},
		{"wait=1h", readOptions{wait: maxWait}, ""},
		{"wait=5000ms", readOptions{wait: 5 * time.Second}, ""},
		{"stale&consistent", readOptions{}, "Cannot specify ?stale with ?consistent"},
		{"index=abc", readOptions{}, `Invalid index "abc"`},
		{"index=-1", readOptions{}, `Invalid index "-1"`},
		{"index=18446744073709551616", readOptions{}, "Invalid index"},
		{"wait=10", readOptions{}, `Invalid wait time "10"`},
	}
	for _, tc := range cases {
		q, _ := url.ParseQuery(tc.query)
		got, err := parseReadOptions(q)
		if tc.wantErr != "" {
			if err == nil || err.code != 400 || !strings.Contains(err.msg, tc.wantErr) {
				t.Errorf("?%s: error %v, want a 400 containing %q", tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("?%s = %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}
