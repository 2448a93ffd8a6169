// Command scale measures the third figure of issue #4's "Numbers": a
// catalog of 10,000 instances across 100 nodes, followed by the local
// views of real client agents. It is a mixed simulation:
//
//   - 3 real server processes; the 100 nodes × 100 instances are written
//     with PUT /v1/catalog/register (nodes without agents of their own,
//     each with a passing node check "node-alive" standing in for
//     serfHealth — the servers would deregister a node with a serfHealth
//     check that gossip does not know — and a passing check per
//     instance). Service svc-SSS has one instance on every node: 100
//     services of 100 instances.
//   - real client agents, subscribed through DNS queries (their views
//     follow what DNS asks for): 20 "sub" agents using svc-000 and two
//     other services each, 5 "other" agents using 10 services that never
//     change, and 4 "mem" agents using k = 0, 1, 10, 100 services.
//
// Reported: the client agents' memory by k, and the view's own heap by k
// (a catalog.View in this process against the same servers); the time
// for one change (a check of one svc-000 instance flipping
// critical/passing) to reach every subscribed view (each sub agent's DNS);
// the servers' health-watch answers per change (outrigger_http_requests_total
// of the health-watch route, summed over the servers) and each client's
// view fetches (outrigger_catalog_view_fetches_total), so that an agent not
// using svc-000 is seen to receive nothing; blocking watchers of svc-001
// not woken by svc-000's changes; and the servers' cost of W simulated
// agents each holding a health-watch request on svc-000 (memory,
// goroutines, and the time and CPU to answer all W after one change).
//
// Usage: go run ./bench/catalog/scale -agent bin/agent [-changes 20] [-watchers 1000]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/bench/catalog/internal/kit"
	"github.com/outrigger/outrigger/catalog"
)

var (
	bin      = flag.String("agent", "bin/agent", "agent binary")
	dirFlag  = flag.String("dir", "", "directory for data and logs (default: a new temporary one)")
	nodes    = flag.Int("nodes", 100, "simulated nodes")
	services = flag.Int("services", 100, "services; each has one instance on every node")
	subs     = flag.Int("subscribers", 20, "client agents using the changing service svc-000")
	others   = flag.Int("others", 5, "client agents using 10 services that do not change")
	changes  = flag.Int("changes", 20, "changes to svc-000 (a check flipping critical/passing)")
	watchers = flag.Int("watchers", 1000, "simulated agents holding a health-watch on svc-000 (0: skip)")
	idlers   = flag.Int("idlers", 1000, "simulated agents holding a health-watch on services that do not change, to measure what other services' writes cost the servers (0: skip)")
)

const (
	hwRoute      = `route="POST /v1/internal/outrigger/health-watch"`
	healthRoute  = `route="GET /v1/health/service/{name...}"`
	changeNode   = 42 // node whose svc-000 instance's check flips
	healthWatch  = "/v1/internal/outrigger/health-watch"
	requestsName = "outrigger_http_requests_total"
)

func svc(s int) string         { return fmt.Sprintf("svc-%03d", s) }
func node(n int) string        { return fmt.Sprintf("sim-%03d", n) }
func tag(n int) string         { return fmt.Sprintf("n%03d", n) }
func instance(s, n int) string { return fmt.Sprintf("%s-%s", svc(s), tag(n)) }

func main() {
	flag.Parse()
	if *dirFlag == "" {
		d, err := os.MkdirTemp("", "catbench-scale-")
		if err != nil {
			fatal(err)
		}
		*dirFlag = d
	}
	raiseNofile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "scale:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func raiseNofile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

type bench struct {
	dir     string
	bin     string
	c       *kit.Cluster
	sub     []*kit.Agent
	other   []*kit.Agent
	mem     map[int]*kit.Agent // by k
	memKs   []int
	flipped bool // svc-000's changing check is critical now
	dc      *dns.Client
}

func run(ctx context.Context) error {
	b := &bench{dir: *dirFlag, mem: map[int]*kit.Agent{}, memKs: []int{0, 1, 10, 100}, dc: kit.NewDNSClient()}
	b.bin, _ = filepath.Abs(*bin)
	logf("starting 3 servers in %s (load %s)", b.dir, kit.Load())
	var err error
	b.c, err = kit.StartServers(ctx, b.bin, b.dir, 3)
	defer func() { b.c.KillAll() }()
	if err != nil {
		return err
	}
	fmt.Printf("load at start %s\n", kit.Load())
	before := b.serverMem(ctx)
	if err := b.populate(ctx); err != nil {
		return err
	}
	after := b.serverMem(ctx)
	fmt.Printf("servers' memory: before the instances %s; with %d instances %s\n", before, *nodes**services, after)
	if err := b.startClients(ctx); err != nil {
		return err
	}
	if err := b.subscribe(ctx); err != nil {
		return err
	}
	if err := b.clientMemory(ctx); err != nil {
		return err
	}
	if err := viewHeap(ctx, b.c.Servers[0]); err != nil {
		return err
	}
	if err := b.answerSizes(ctx); err != nil {
		return err
	}
	if n, err := b.blocked(ctx); err == nil {
		fmt.Printf("\nblocking queries the servers hold now (outrigger_http_blocking_queries, summed): %.0f, for %d client agents\n", n, len(b.c.Clients))
	}
	if err := b.propagate(ctx); err != nil {
		return err
	}
	if n, err := b.blocked(ctx); err == nil {
		fmt.Printf("\nblocking queries the servers hold now (outrigger_http_blocking_queries, summed): %.0f, for %d client agents\n", n, len(b.c.Clients))
	}
	if err := b.watcherIsolation(ctx); err != nil {
		return err
	}
	if n, err := b.blocked(ctx); err == nil {
		fmt.Printf("\nblocking queries the servers hold now (outrigger_http_blocking_queries, summed): %.0f, for %d client agents\n", n, len(b.c.Clients))
	}
	if *idlers > 0 {
		if err := b.wakeCost(ctx, *idlers); err != nil {
			return err
		}
	}
	if *watchers > 0 {
		if err := b.fanOut(ctx, *watchers); err != nil {
			return err
		}
	}
	fmt.Printf("writes retried after an error (leader elections under load): %d\nload at end %s\n", retries.Load(), kit.Load())
	return nil
}

// serverMem is "VmRSS a/b/c MiB (peak ...), heap in use a/b/c MiB, goroutines a/b/c".
func (b *bench) serverMem(ctx context.Context) string {
	var rss, hwm, heap, gor []string
	for _, s := range b.c.Servers {
		r, h, _ := s.RSSKiB()
		rss = append(rss, fmt.Sprintf("%.1f", float64(r)/1024))
		hwm = append(hwm, fmt.Sprintf("%.1f", float64(h)/1024))
		m, err := kit.Scrape(ctx, s)
		if err != nil {
			heap, gor = append(heap, "?"), append(gor, "?")
			continue
		}
		heap = append(heap, fmt.Sprintf("%.1f", m.Sum("go_memstats_heap_inuse_bytes")/(1<<20)))
		gor = append(gor, fmt.Sprintf("%.0f", m.Sum("go_goroutines")))
	}
	return fmt.Sprintf("VmRSS %v MiB (VmHWM %v), heap in use %v MiB, goroutines %v", rss, hwm, heap, gor)
}

type checkJSON struct {
	Node, CheckID, Name, Status, ServiceID, Output string `json:",omitempty"`
}

func (b *bench) register(ctx context.Context, n, s int) error {
	body := map[string]any{
		"Node":    node(n),
		"ID":      fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		"Address": fmt.Sprintf("10.77.%d.%d", n/250, n%250+1),
		"TaggedAddresses": map[string]string{
			"lan": fmt.Sprintf("10.77.%d.%d", n/250, n%250+1), "wan": fmt.Sprintf("10.77.%d.%d", n/250, n%250+1),
		},
		"NodeMeta": map[string]string{"rack": fmt.Sprintf("r%d", n%8), "zone": fmt.Sprintf("z%d", n%3)},
		"Service": map[string]any{
			"ID": instance(s, n), "Service": svc(s), "Tags": []string{tag(n), "v1"},
			"Port": 20000 + s, "Meta": map[string]string{"version": "1.4.2"},
		},
		"Checks": []checkJSON{
			{CheckID: "node-alive", Name: "Node alive (serfHealth stand-in)", Status: "passing", Output: "alive"},
			{CheckID: "service:" + instance(s, n), Name: "Service '" + svc(s) + "' check", Status: "passing",
				ServiceID: instance(s, n), Output: "HTTP GET http://10.77.0.1:8080/health: 200 OK"},
		},
	}
	return retry(ctx, func() error { return kit.Do(ctx, "PUT", b.c.Servers[0].URL()+"/v1/catalog/register", body, nil) })
}

// retries counts writes retried after an error (a leader election under
// the machine's load answers 500 "leadership lost"); the writes are
// idempotent.
var retries atomic.Int64

func retry(ctx context.Context, f func() error) error {
	var err error
	for i := range 10 {
		if err = f(); err == nil || ctx.Err() != nil {
			return err
		}
		retries.Add(1)
		logf("write failed (attempt %d), retrying: %v", i+1, err)
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

func (b *bench) populate(ctx context.Context) error {
	total := *nodes * *services
	logf("registering %d instances (%d nodes x %d services), load %s", total, *nodes, *services, kit.Load())
	jobs := make(chan [2]int)
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for j := range jobs {
				if err := b.register(ctx, j[0], j[1]); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	for n := range *nodes {
		for s := range *services {
			jobs <- [2]int{n, s}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	took := time.Since(start)
	// Every server has them (stale reads of the last service).
	for _, s := range b.c.Servers {
		if err := kit.WaitFor(ctx, 60*time.Second, s.Name+" to hold every instance", func() error {
			var out []any
			if err := kit.Do(ctx, "GET", s.URL()+"/v1/health/service/"+svc(*services-1)+"?stale", nil, &out); err != nil {
				return err
			}
			if len(out) != *nodes {
				return fmt.Errorf("%d instances", len(out))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	fmt.Printf("\n== catalog: %d instances (%d nodes x %d services, each instance with a node and a service check) registered through /v1/catalog/register in %.1fs (%.0f/s, 16 in parallel)\n",
		total, *nodes, *services, took.Seconds(), float64(total)/took.Seconds())
	return nil
}

func (b *bench) startClients(ctx context.Context) error {
	var names []string
	for i := 1; i <= *subs; i++ {
		names = append(names, fmt.Sprintf("sub%02d", i))
	}
	for i := 1; i <= *others; i++ {
		names = append(names, fmt.Sprintf("other%d", i))
	}
	for _, k := range b.memKs {
		names = append(names, fmt.Sprintf("mem%d", k))
	}
	logf("starting %d client agents, load %s", len(names), kit.Load())
	start := time.Now()
	all, err := b.c.StartClients(ctx, b.bin, b.dir, 4, names...)
	if err != nil {
		return err
	}
	b.sub = all[:*subs]
	b.other = all[*subs : *subs+*others]
	for i, k := range b.memKs {
		b.mem[k] = all[*subs+*others+i]
	}
	logf("clients up in %.1fs", time.Since(start).Seconds())
	return nil
}

// uses returns the services each client agent uses.
func (b *bench) uses() map[*kit.Agent][]int {
	u := map[*kit.Agent][]int{}
	for i, a := range b.sub {
		// svc-000 and two others among svc-001..svc-049.
		u[a] = []int{0, 1 + i%49, 1 + (i+25)%49}
	}
	for _, a := range b.other {
		for s := 50; s < 60; s++ {
			u[a] = append(u[a], s)
		}
	}
	for _, k := range b.memKs {
		a := b.mem[k]
		for s := *services - k; s < *services; s++ {
			u[a] = append(u[a], s)
		}
	}
	return u
}

// subscribe makes every client's DNS ask for each service it uses (a
// tag query answering one record), which subscribes its view.
func (b *bench) subscribe(ctx context.Context) error {
	logf("subscribing the clients' views, load %s", kit.Load())
	for a, ss := range b.uses() {
		for _, s := range ss {
			q := tag(0) + "." + svc(s) + ".service.consul"
			if err := kit.WaitFor(ctx, 30*time.Second, a.Name+" DNS "+q, func() error {
				k, err := kit.DNSCount(b.dc, a.DNSAddr(), q)
				if err == nil && k != 1 {
					err = fmt.Errorf("%d records", k)
				}
				return err
			}); err != nil {
				return err
			}
		}
	}
	// Past the views' re-issue pause (1s): every blocking request holds
	// its whole set.
	time.Sleep(3 * time.Second)
	for a, ss := range b.uses() {
		m, err := kit.Scrape(ctx, a)
		if err != nil {
			return err
		}
		if got := int(m.Sum("outrigger_catalog_view_subscriptions")); got != len(ss) {
			return fmt.Errorf("%s: view holds %d services, want %d", a.Name, got, len(ss))
		}
	}
	return nil
}

func (b *bench) clientMemory(ctx context.Context) error {
	time.Sleep(2 * time.Second)
	fmt.Printf("\n== client agent memory by services used (k services of %d instances each; %d entries at k=100 = the whole catalog)\n", *nodes, *nodes**services)
	fmt.Printf("%-8s %6s %9s %10s %10s %14s %14s\n", "agent", "k", "entries", "VmRSS MiB", "VmHWM MiB", "heap inuse MiB", "heap alloc MiB")
	for _, k := range b.memKs {
		a := b.mem[k]
		rss, hwm, err := a.RSSKiB()
		if err != nil {
			return err
		}
		m, err := kit.Scrape(ctx, a)
		if err != nil {
			return err
		}
		fmt.Printf("%-8s %6d %9d %10.1f %10.1f %14.1f %14.1f\n", a.Name, k, k**nodes, float64(rss)/1024, float64(hwm)/1024,
			m.Sum("go_memstats_heap_inuse_bytes")/(1<<20), m.Sum("go_memstats_heap_alloc_bytes")/(1<<20))
		fmt.Printf("RESULT client_rss_mib_k%d=%.1f\n", k, float64(rss)/1024)
	}
	return nil
}

// viewHeap measures the live heap of a catalog.View (the agent's view
// code) in this process, following k services from a server, after GC.
func viewHeap(ctx context.Context, server *kit.Agent) error {
	fmt.Printf("\n== catalog.View's own live heap (in this process, against server %s, after GC)\n", server.Name)
	fmt.Printf("%6s %9s %12s %16s\n", "k", "entries", "heap KiB", "bytes per entry")
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, k := range []int{1, 10, 100} {
		base := heap()
		v, err := catalog.NewView(catalog.ViewConfig{
			Client: &catalog.HTTPClient{BaseURL: func(bool) (string, error) { return server.URL(), nil }},
		})
		if err != nil {
			return err
		}
		entries := 0
		for s := *services - k; s < *services; s++ {
			snap, err := v.Service(ctx, svc(s))
			if err != nil {
				v.Close()
				return err
			}
			entries += len(snap.Entries)
		}
		time.Sleep(1500 * time.Millisecond) // the blocking request is re-issued with the whole set
		used := int64(heap()) - int64(base)
		fmt.Printf("%6d %9d %12.0f %16.0f\n", k, entries, float64(used)/1024, float64(used)/float64(entries))
		fmt.Printf("RESULT view_heap_kib_k%d=%.0f view_bytes_per_entry_k%d=%.0f\n", k, float64(used)/1024, k, float64(used)/float64(entries))
		runtime.KeepAlive(v)
		v.Close()
	}
	return nil
}

// answerSizes reports the bytes of one service's answer: what a
// subscribed agent receives for each change of it.
func (b *bench) answerSizes(ctx context.Context) error {
	s := b.c.Servers[0]
	body, _ := json.Marshal(map[string]any{"Services": map[string]uint64{svc(0): 0}})
	resp, err := kit.HTTP.Post(s.URL()+healthWatch+"?stale", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = kit.HTTP.Get(s.URL() + "/v1/health/service/" + svc(0) + "?stale")
	if err != nil {
		return err
	}
	hs, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("\none service of %d instances: health-watch answer %d bytes (%.0f per instance); /v1/health/service answer %d bytes\n",
		*nodes, len(hw), float64(len(hw))/float64(*nodes), len(hs))
	fmt.Printf("RESULT answer_bytes=%d\n", len(hw))
	return nil
}

// flip changes svc-000's instance on node changeNode: its check goes
// critical, or back to passing. Only that check is written
// (SkipNodeUpdate).
func (b *bench) flip(ctx context.Context, s int) error {
	status := "critical"
	if b.flipped {
		status = "passing"
	}
	id := instance(s, changeNode)
	err := retry(ctx, func() error {
		return kit.Do(ctx, "PUT", b.c.Servers[0].URL()+"/v1/catalog/register", map[string]any{
			"Node": node(changeNode), "SkipNodeUpdate": true,
			"Check": checkJSON{CheckID: "service:" + id, Name: "Service '" + svc(s) + "' check", Status: status,
				ServiceID: id, Output: "bench flip to " + status},
		}, nil)
	})
	if err == nil && s == 0 {
		b.flipped = !b.flipped
	}
	return err
}

func (b *bench) scrapeAll(ctx context.Context, agents []*kit.Agent) (map[*kit.Agent]kit.Metrics, error) {
	out := map[*kit.Agent]kit.Metrics{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, a := range agents {
		wg.Go(func() {
			m, err := kit.Scrape(ctx, a)
			mu.Lock()
			defer mu.Unlock()
			out[a] = m
			errs = append(errs, err)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (b *bench) propagate(ctx context.Context) error {
	logf("propagation: %d changes to %s, load %s", *changes, svc(0), kit.Load())
	clients := b.c.Clients
	users := map[*kit.Agent]bool{}
	for a, ss := range b.uses() {
		users[a] = slices.Contains(ss, 0)
	}
	q := tag(changeNode) + "." + svc(0) + ".service.consul"
	path := svc(0) + "?passing&tag=" + tag(changeNode)
	var perClient, allViews, peerLat, peerAll []time.Duration
	var responses []float64
	fetchDelta := map[*kit.Agent]float64{}
	var healthReads float64
	for i := 1; i <= *changes; i++ {
		want := 0 // after the flip: critical, out of DNS
		if b.flipped {
			want = 1
		}
		before, err := b.scrapeAll(ctx, b.c.All())
		if err != nil {
			return err
		}
		// The peer: a plain blocking ?stale query per server, held by
		// this program from before the write.
		var peers []chan peerDone
		for _, s := range b.c.Servers {
			ch, err := startWatch(ctx, s.URL(), path, want)
			if err != nil {
				return err
			}
			peers = append(peers, ch)
		}
		t0 := time.Now()
		if err := b.flip(ctx, 0); err != nil {
			return err
		}
		lat := make([]time.Duration, len(b.sub))
		var wg sync.WaitGroup
		errs := make([]error, len(b.sub))
		for j, a := range b.sub {
			wg.Go(func() {
				dc := kit.NewDNSClient()
				errs[j] = kit.WaitFor(ctx, 30*time.Second, a.Name+" to see the change", func() error {
					for {
						k, err := kit.DNSCount(dc, a.DNSAddr(), q)
						if err == nil && k == want {
							lat[j] = time.Since(t0)
							return nil
						}
						if time.Since(t0) > 29*time.Second {
							return fmt.Errorf("%d records, %v", k, err)
						}
						time.Sleep(2 * time.Millisecond)
					}
				})
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		perClient = append(perClient, lat...)
		allViews = append(allViews, slices.Max(lat))
		var peerMax time.Duration
		for _, ch := range peers {
			r := <-ch
			if r.err != nil {
				return fmt.Errorf("server watch: %w", r.err)
			}
			peerLat = append(peerLat, r.at.Sub(t0))
			peerMax = max(peerMax, r.at.Sub(t0))
		}
		peerAll = append(peerAll, peerMax)
		time.Sleep(500 * time.Millisecond) // stragglers (nothing else should come)
		after, err := b.scrapeAll(ctx, b.c.All())
		if err != nil {
			return err
		}
		var r float64
		for _, s := range b.c.Servers {
			r += after[s].Sum(requestsName, hwRoute) - before[s].Sum(requestsName, hwRoute)
			healthReads += after[s].Sum(requestsName, healthRoute) - before[s].Sum(requestsName, healthRoute)
		}
		responses = append(responses, r)
		for _, a := range clients {
			fetchDelta[a] += after[a].Sum("outrigger_catalog_view_fetches_total") - before[a].Sum("outrigger_catalog_view_fetches_total")
		}
		// Let the re-issued blocking requests reach the servers.
		time.Sleep(200 * time.Millisecond)
	}
	nUsers := 0
	for _, u := range users {
		if u {
			nUsers++
		}
	}
	fmt.Printf("\n== one change to %s (check of one of its %d instances flips) -> every subscribed view; %d changes\n", svc(0), *nodes, *changes)
	fmt.Printf("per sub agent (DNS %s, probe every 2ms): %s\n", q, kit.Summary(perClient))
	fmt.Printf("until the last of %d sub agents: %s\n", len(b.sub), kit.Summary(allViews))
	fmt.Printf("peer: a blocking ?stale /v1/health/service/%s query held on each server: %s; until the last of the 3: %s\n", path, kit.Summary(peerLat), kit.Summary(peerAll))
	fmt.Printf("ratio views / blocking queries: per view p50 %.2f p99 %.2f; all views / all 3 servers p50 %.2f p99 %.2f\n",
		ratio(perClient, peerLat, 50), ratio(perClient, peerLat, 99), ratio(allViews, peerAll, 50), ratio(allViews, peerAll, 99))
	fmt.Printf("agents using %s: %d of %d clients (%d sub + mem100)\n", svc(0), nUsers, len(clients), len(b.sub))
	fmt.Printf("servers' health-watch answers per change: %v (sum over 3 servers); /v1/health/service answers during the changes: %.0f (this program's peer queries)\n", responses, healthReads)
	fmt.Printf("%-8s %6s %22s\n", "agent", "uses", "view fetches, total")
	var userFetch, nonUserFetch float64
	for _, a := range clients {
		fmt.Printf("%-8s %6v %22.0f\n", a.Name, users[a], fetchDelta[a])
		if users[a] {
			userFetch += fetchDelta[a]
		} else {
			nonUserFetch += fetchDelta[a]
		}
	}
	var sumResp float64
	for _, r := range responses {
		sumResp += r
	}
	fmt.Printf("RESULT peer_change_p50_ms=%s peer_change_p99_ms=%s\n", kit.Ms(kit.Percentile(peerLat, 50)), kit.Ms(kit.Percentile(peerLat, 99)))
	fmt.Printf("RESULT change_p50_ms=%s change_p99_ms=%s change_all_views_p50_ms=%s change_all_views_p99_ms=%s answers_per_change=%.2f users=%d fetches_per_change_users=%.2f fetches_nonusers_total=%.0f\n",
		kit.Ms(kit.Percentile(perClient, 50)), kit.Ms(kit.Percentile(perClient, 99)),
		kit.Ms(kit.Percentile(allViews, 50)), kit.Ms(kit.Percentile(allViews, 99)),
		sumResp/float64(len(responses)), nUsers, userFetch/float64(*changes), nonUserFetch)
	return nil
}

type peerDone struct {
	at  time.Time
	err error
}

// startWatch reads the current index of path on base, then follows it in
// the background until it lists want entries.
func startWatch(ctx context.Context, base, path string, want int) (chan peerDone, error) {
	idx, err := kit.ServiceIndex(ctx, base, path)
	if err != nil {
		return nil, err
	}
	ch := make(chan peerDone, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		at, err := kit.WatchUntil(ctx, base, path, idx, func(n int) bool { return n == want })
		ch <- peerDone{at, err}
	}()
	return ch, nil
}

func ratio(a, b []time.Duration, p float64) float64 {
	return float64(kit.Percentile(a, p)) / float64(kit.Percentile(b, p))
}

type watchResult struct {
	returned time.Time
	err      error
	body     []byte
}

// blockingGet issues a blocking read and reports when it returned.
func blockingGet(ctx context.Context, url string) chan watchResult {
	ch := make(chan watchResult, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			ch <- watchResult{time.Now(), err, nil}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- watchResult{time.Now(), err, b}
	}()
	return ch
}

func blockingPost(ctx context.Context, url string, body any) chan watchResult {
	ch := make(chan watchResult, 1)
	go func() {
		bb, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(bb))
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			ch <- watchResult{time.Now(), err, nil}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- watchResult{time.Now(), err, b}
	}()
	return ch
}

func serviceIndex(ctx context.Context, base, s string) (uint64, error) {
	resp, err := kit.HTTP.Get(base + "/v1/health/service/" + s + "?stale")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	var idx uint64
	_, err = fmt.Sscan(resp.Header.Get("X-Consul-Index"), &idx)
	return idx, err
}

// watcherIsolation: blocking watchers of other services are not woken by
// svc-000's changes, and are woken by their own.
func (b *bench) watcherIsolation(ctx context.Context) error {
	base := b.c.Servers[1].URL()
	idx := map[int]uint64{}
	for s := 1; s <= 40; s++ {
		i, err := serviceIndex(ctx, base, svc(s))
		if err != nil {
			return err
		}
		idx[s] = i
	}
	small := map[string]uint64{} // 10 services: per-service waits
	for s := 1; s <= 10; s++ {
		small[svc(s)] = idx[s]
	}
	large := map[string]uint64{} // 40 services: the catalog-table wait
	for s := 1; s <= 40; s++ {
		large[svc(s)] = idx[s]
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w1 := blockingGet(wctx, fmt.Sprintf("%s/v1/health/service/%s?stale&index=%d&wait=60s", base, svc(1), idx[1]))
	w2 := blockingPost(wctx, base+healthWatch+"?stale", map[string]any{"Services": small, "Wait": "60s"})
	w3 := blockingPost(wctx, base+healthWatch+"?stale", map[string]any{"Services": large, "Wait": "60s"})
	time.Sleep(300 * time.Millisecond)
	const noise = 10
	for range noise {
		if err := b.flip(ctx, 0); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	woken := 0
	for _, w := range []chan watchResult{w1, w2, w3} {
		select {
		case r := <-w:
			woken++
			w <- r
		default:
		}
	}
	// Now a change to svc-001 (on the same node as the svc-000 changes).
	t0 := time.Now()
	if err := b.flip(ctx, 1); err != nil {
		return err
	}
	var lat []string
	for i, w := range []chan watchResult{w1, w2, w3} {
		select {
		case r := <-w:
			if r.err != nil {
				return r.err
			}
			lat = append(lat, fmt.Sprintf("watcher %d woke after %s ms (%d bytes)", i+1, kit.Ms(r.returned.Sub(t0)), len(r.body)))
		case <-time.After(30 * time.Second):
			return fmt.Errorf("watcher %d not woken by a change to %s", i+1, svc(1))
		}
	}
	// Put svc-001's check back.
	if err := kit.Do(ctx, "PUT", b.c.Servers[0].URL()+"/v1/catalog/register", map[string]any{
		"Node": node(changeNode), "SkipNodeUpdate": true,
		"Check": checkJSON{CheckID: "service:" + instance(1, changeNode), Name: "Service '" + svc(1) + "' check", Status: "passing",
			ServiceID: instance(1, changeNode)},
	}, nil); err != nil {
		return err
	}
	fmt.Printf("\n== watchers of other services during %d changes to %s (on node %s, which also holds their instances)\n", noise, svc(0), node(changeNode))
	fmt.Printf("watcher 1: GET /v1/health/service/%s?index; watcher 2: health-watch of %s..%s (10, per-service waits); watcher 3: health-watch of %s..%s (40, catalog-table wait)\n",
		svc(1), svc(1), svc(10), svc(1), svc(40))
	fmt.Printf("woken (answered) by the %d changes to %s: %d of 3\n", noise, svc(0), woken)
	for _, l := range lat {
		fmt.Printf("then one change to %s: %s\n", svc(1), l)
	}
	fmt.Printf("RESULT watchers_woken_by_other_service=%d\n", woken)
	return nil
}

// fanOut holds w health-watch requests on svc-000 (simulated agents,
// spread over the servers like the agents' stale reads), then makes one
// change and measures how long the servers take to answer them all.
func (b *bench) fanOut(ctx context.Context, w int) error {
	logf("fan-out: %d simulated agents watching %s, load %s", w, svc(0), kit.Load())
	// Settle the flips of the isolation test.
	time.Sleep(time.Second)
	idx, err := serviceIndex(ctx, b.c.Servers[0].URL(), svc(0))
	if err != nil {
		return err
	}
	memBefore := b.serverMem(ctx)
	pids := []int{}
	for _, s := range b.c.Servers {
		pids = append(pids, s.PID())
	}
	tr := &http.Transport{MaxIdleConnsPerHost: w, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		at    time.Time
		bytes int
		err   error
	}
	results := make(chan res, w)
	var issued atomic.Int64
	body, _ := json.Marshal(map[string]any{"Services": map[string]uint64{svc(0): idx}, "Wait": "120s"})
	for i := range w {
		s := b.c.Servers[i%len(b.c.Servers)]
		go func() {
			req, _ := http.NewRequestWithContext(wctx, "POST", s.URL()+healthWatch+"?stale", bytes.NewReader(body))
			issued.Add(1)
			resp, err := hc.Do(req)
			if err != nil {
				results <- res{time.Now(), 0, err}
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- res{time.Now(), int(n), err}
		}()
	}
	// Wait until the servers hold them all (their blocked-query gauge or
	// goroutines stop growing), at most 30s.
	var blocked float64
	_ = kit.WaitFor(ctx, 30*time.Second, "watchers held", func() error {
		blocked = 0
		for _, s := range b.c.Servers {
			m, err := kit.Scrape(ctx, s)
			if err != nil {
				return err
			}
			blocked += m.Sum("outrigger_http_blocking_queries")
		}
		if int(blocked) < w {
			return fmt.Errorf("%v blocked", blocked)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	memHeld := b.serverMem(ctx)
	var cpu0 int64
	for _, p := range pids {
		t, _ := kit.CPUTicks(p)
		cpu0 += t
	}
	t0 := time.Now()
	if err := b.flip(ctx, 0); err != nil {
		return err
	}
	var lat []time.Duration
	var bytesIn int64
	var errs int
	timeout := time.After(60 * time.Second)
	for range w {
		select {
		case r := <-results:
			if r.err != nil {
				errs++
				continue
			}
			lat = append(lat, r.at.Sub(t0))
			bytesIn += int64(r.bytes)
		case <-timeout:
			return fmt.Errorf("fan-out: only %d of %d answers in 60s", len(lat)+errs, w)
		}
	}
	var cpu1 int64
	for _, p := range pids {
		t, _ := kit.CPUTicks(p)
		cpu1 += t
	}
	fmt.Printf("\n== servers' cost of %d simulated agents each holding a health-watch on %s (%d instances), spread over 3 servers\n", w, svc(0), *nodes)
	fmt.Printf("blocked queries reported by the servers: %.0f\n", blocked)
	fmt.Printf("servers before: %s\nservers holding them: %s\n", memBefore, memHeld)
	fmt.Printf("one change -> all %d answered: %s; errors %d; %.1f MiB sent; servers' CPU %.2f s\n",
		w, kit.Summary(lat), errs, float64(bytesIn)/(1<<20), float64(cpu1-cpu0)/100)
	fmt.Printf("servers after the answers: %s\n", b.serverMem(ctx))
	fmt.Printf("RESULT fanout_watchers=%d fanout_p50_ms=%s fanout_max_ms=%s fanout_mib=%.1f fanout_cpu_s=%.2f fanout_errors=%d\n",
		w, kit.Ms(kit.Percentile(lat, 50)), kit.Ms(kit.Percentile(lat, 100)), float64(bytesIn)/(1<<20), float64(cpu1-cpu0)/100, errs)
	return nil
}

// serversCPU sums the servers' CPU time, in seconds.
func (b *bench) serversCPU() float64 {
	var t int64
	for _, s := range b.c.Servers {
		x, _ := kit.CPUTicks(s.PID())
		t += x
	}
	return float64(t) / 100
}

func (b *bench) blocked(ctx context.Context) (float64, error) {
	var n float64
	for _, s := range b.c.Servers {
		m, err := kit.Scrape(ctx, s)
		if err != nil {
			return 0, err
		}
		n += m.Sum("outrigger_http_blocking_queries")
	}
	return n, nil
}

// holdWatchers starts w health-watch requests for the services in set
// (with their current indexes), spread over the servers, and waits until
// the servers hold them. answered counts those that came back.
func (b *bench) holdWatchers(ctx context.Context, w int, set map[string]uint64) (stop func(), answered *atomic.Int64, err error) {
	base, err := b.blocked(ctx)
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	tr := &http.Transport{MaxIdleConnsPerHost: w}
	hc := &http.Client{Transport: tr}
	body, _ := json.Marshal(map[string]any{"Services": set, "Wait": "300s"})
	answered = &atomic.Int64{}
	var wg sync.WaitGroup
	for i := range w {
		s := b.c.Servers[i%len(b.c.Servers)]
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(wctx, "POST", s.URL()+healthWatch+"?stale", bytes.NewReader(body))
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if wctx.Err() == nil {
				answered.Add(1)
			}
		})
	}
	stop = func() { cancel(); wg.Wait(); tr.CloseIdleConnections() }
	// The agents' own blocking requests come and go (and base, read at
	// one moment, has been seen well above their number): wait until the
	// servers hold at least w and the count has not moved for 2s.
	want := float64(w)
	var last float64
	stable := time.Now()
	err = kit.WaitFor(ctx, 60*time.Second, "watchers held", func() error {
		n, err := b.blocked(ctx)
		if err != nil {
			return err
		}
		if n != last {
			last, stable = n, time.Now()
		}
		if n < want || time.Since(stable) < 2*time.Second {
			return fmt.Errorf("%v blocked (before: %v), want %v and steady; %d answered at once", n, base, want, answered.Load())
		}
		return nil
	})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return stop, answered, nil
}

// wakeCost: the servers' CPU for writes to svc-000 while w simulated
// agents hold health-watch requests on services that do not change: none
// (the peer), 10 services each, 40 each. (Before 2026-11-29's third session,
// a request for more than 32 services waited on the catalog tables and
// was woken by every catalog write; it now waits on its services alone.)
func (b *bench) wakeCost(ctx context.Context, w int) error {
	logf("wake cost: %d simulated agents on services that do not change, load %s", w, kit.Load())
	const writes = 40
	// The writes go to a service no view uses (its check flips), so
	// that what they cost besides the wake-ups is only the Raft write.
	const unused = "unused-bench"
	status := []string{"critical", "passing"}
	write := func(i int) error {
		return retry(ctx, func() error {
			return kit.Do(ctx, "PUT", b.c.Servers[0].URL()+"/v1/catalog/register", map[string]any{
				"Node": node(1), "SkipNodeUpdate": true,
				"Service": map[string]any{"ID": unused, "Service": unused, "Port": 1},
				"Check":   checkJSON{CheckID: "service:" + unused, Name: "unused check", Status: status[i%2], ServiceID: unused},
			}, nil)
		})
	}
	// Registered before the indexes are read, so that they are current.
	if err := write(1); err != nil {
		return err
	}
	idx := map[string]uint64{}
	for s := 60; s < 100; s++ {
		i, err := serviceIndex(ctx, b.c.Servers[0].URL(), svc(s))
		if err != nil {
			return err
		}
		idx[svc(s)] = i
	}
	small, large := map[string]uint64{}, map[string]uint64{}
	for s := 60; s < 100; s++ {
		if s < 70 {
			small[svc(s)] = idx[svc(s)]
		}
		large[svc(s)] = idx[svc(s)]
	}
	measure := func() (float64, error) {
		time.Sleep(time.Second)
		c0 := b.serversCPU()
		for i := range writes {
			if err := write(i); err != nil {
				return 0, err
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second)
		return b.serversCPU() - c0, nil
	}
	type row struct {
		name     string
		cpu      float64
		answered int64
	}
	var rows []row
	for _, c := range []struct {
		name string
		set  map[string]uint64
	}{{"none (peer)", nil}, {"10 services each", small}, {"40 services each", large}, {"none (peer, again)", nil}} {
		if c.set == nil {
			cpu, err := measure()
			if err != nil {
				return err
			}
			rows = append(rows, row{c.name, cpu, 0})
			continue
		}
		stop, answered, err := b.holdWatchers(ctx, w, c.set)
		if err != nil {
			return err
		}
		cpu, err := measure()
		stop()
		if err != nil {
			return err
		}
		rows = append(rows, row{c.name, cpu, answered.Load()})
	}
	peer := (rows[0].cpu + rows[3].cpu) / 2
	fmt.Printf("\n== servers' CPU for %d writes to a service no view uses while %d simulated agents hold a health-watch on services that do not change\n", writes, w)
	fmt.Printf("%-22s %14s %18s %26s\n", "watchers hold", "servers CPU s", "answered (want 0)", "extra CPU per write per watcher")
	for _, r := range rows {
		extra := "-"
		if r.answered >= 0 && (r.name == "10 services each" || r.name == "40 services each") {
			extra = fmt.Sprintf("%.1f µs", (r.cpu-peer)/float64(writes*w)*1e6)
		}
		fmt.Printf("%-22s %14.2f %18d %26s\n", r.name, r.cpu, r.answered, extra)
	}
	fmt.Printf("RESULT wake_cpu_peer_s=%.2f wake_cpu_small_s=%.2f wake_cpu_large_s=%.2f wake_answered=%d\n",
		peer, rows[1].cpu, rows[2].cpu, rows[1].answered+rows[2].answered)
	return nil
}
