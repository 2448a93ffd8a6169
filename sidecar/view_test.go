package sidecar

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/catalog"
)

// fakeServers answers the view's blocking /v1/health/service reads from
// memory, the way the servers do: a read with an index waits until the
// index moves (or its wait ends).
type fakeServers struct {
	mu      sync.Mutex
	index   uint64
	svcs    map[string][]catalog.ServiceEntry
	changed chan struct{}
}

func newFakeServers() *fakeServers {
	return &fakeServers{index: 1, svcs: map[string][]catalog.ServiceEntry{}, changed: make(chan struct{})}
}

func (f *fakeServers) set(name string, entries ...catalog.ServiceEntry) {
	f.mu.Lock()
	f.svcs[strings.ToLower(name)] = entries
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeServers) ServiceHealth(ctx context.Context, service string, q catalog.QueryOptions) ([]catalog.ServiceEntry, catalog.QueryMeta, error) {
	wait := q.Wait
	if wait == 0 {
		wait = time.Minute
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		f.mu.Lock()
		idx, ch := f.index, f.changed
		entries := append([]catalog.ServiceEntry(nil), f.svcs[strings.ToLower(service)]...)
		f.mu.Unlock()
		if q.Index == 0 || idx > q.Index {
			return entries, catalog.QueryMeta{Index: idx, KnownLeader: true}, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return entries, catalog.QueryMeta{Index: idx, KnownLeader: true}, nil
		case <-ctx.Done():
			return nil, catalog.QueryMeta{}, ctx.Err()
		}
	}
}

// The agent's real Source: a catalog.View over blocking reads. Instances
// that come, go critical and leave are followed without a restart.
func TestFollowsCatalogView(t *testing.T) {
	srv := newFakeServers()
	view, err := catalog.NewView(catalog.ViewConfig{Client: srv, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	var src Source = view
	env := newEnv(t, func(c *Config) { c.Source = src })
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	srv.set("api", entry("api", "a", "n1", a.addr()))
	addr := env.upstream(Upstream{DestinationName: "api", Protocol: "http"})
	c := httpClient()
	if _, body, _ := get(t, c, "http://"+addr+"/"); body != "a" {
		t.Fatalf("got %q", body)
	}
	srv.set("api", entry("api", "a", "n1", a.addr()), entry("api", "b", "n2", b.addr()))
	start := time.Now()
	waitFor(t, "b in rotation", func() error {
		seen := map[string]bool{}
		for i := 0; i < 4; i++ {
			_, body, _ := get(t, c, "http://"+addr+"/")
			seen[body] = true
		}
		if !seen["b"] {
			return fmt.Errorf("saw %v", seen)
		}
		return nil
	})
	t.Logf("new instance in rotation after %v", time.Since(start))
	srv.set("api", entry("api", "a", "n1", a.addr(), critical), entry("api", "b", "n2", b.addr()))
	waitFor(t, "only b", func() error {
		for i := 0; i < 4; i++ {
			if _, body, _ := get(t, c, "http://"+addr+"/"); body != "b" {
				return fmt.Errorf("got %q", body)
			}
		}
		return nil
	})
	srv.set("api")
	waitFor(t, "503 with no instance", func() error {
		if code, _, _ := get(t, c, "http://"+addr+"/"); code != 503 {
			return fmt.Errorf("got %d", code)
		}
		return nil
	})
}
