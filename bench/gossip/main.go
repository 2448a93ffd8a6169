// Command gossip benchmarks Outrigger's gossip layer (package gossip, on
// hashicorp/memberlist) with N members in one process on 127.0.0.1:
//
//  1. cold join: every member joins one seed; time until all Join calls
//     return and until every member sees N alive;
//  2. bandwidth at rest: bytes each member sends per second over a quiet
//     window, counted by the gossip package's transport wrapper;
//  3. failure detection: one member is stopped hard (no leave); time until
//     each other member sees it failed, against memberlist's expected
//     probe + suspicion time (SuspicionMult * log10(N) * ProbeInterval).
//
// The "lan" profile is memberlist.DefaultLANConfig (probe interval 1s,
// probe timeout 500ms, suspicion multiplier 4), so the figures compare
// with memberlist's documented timings. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/outrigger/outrigger/gossip"
)

var heapProfile string // -memprofile

func main() {
	var (
		n        = flag.Int("n", 200, "members")
		profile  = flag.String("profile", gossip.ProfileLAN, "gossip profile: lan, wan or local")
		rest     = flag.Duration("rest", 0, "bandwidth measurement window; 0 means one push/pull period (120s at N=200 with lan), so that every member's periodic TCP state sync is counted once")
		settle   = flag.Duration("settle", 10*time.Second, "least wait after convergence before measuring bandwidth; it goes on until the join broadcasts have died down (two 5s windows of UDP traffic within 10%)")
		conc     = flag.Int("join-concurrency", 16, "concurrent Join calls to the seed (memberlist refuses >128 pending push/pulls)")
		joinRate = flag.Float64("join-rate", 0, "start at most this many Join calls per second (0: no limit); spreads the cold-join broadcast storm")
		timeout  = flag.Duration("timeout", 5*time.Minute, "give up a phase after this long")
		encrypt  = flag.Bool("encrypt", false, "encrypt gossip (AES-256)")
		compress = flag.Bool("compress", true, "compress gossip messages (memberlist's default; LZW, one 64 KiB table allocated per packet)")
		logLevel = flag.String("log", "", "write gossip logs at this level and above (debug, info, warn, error) to stderr; default none")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		memProf  = flag.String("memprofile", "", "write a heap profile, taken after convergence, to this file")
	)
	flag.Parse()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/gossip:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench/gossip:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	// Ctrl-C still writes the CPU profile.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/gossip: interrupted")
		os.Exit(2)
	}()
	heapProfile = *memProf
	if err := run(*n, *profile, *rest, *settle, *conc, *joinRate, *timeout, *encrypt, *compress, *logLevel); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/gossip:", err)
		os.Exit(1)
	}
}

func run(n int, profile string, rest, settle time.Duration, conc int, joinRate float64, timeout time.Duration, encrypt, compress bool, logLevel string) error {
	if n < 3 {
		return fmt.Errorf("-n %d: need at least 3 members", n)
	}
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "warning: cannot raise the open-files limit:", err)
	}
	logs := &levelCounter{n: new([4]atomic.Int64)}
	if logLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(logLevel)); err != nil {
			return fmt.Errorf("-log: %w", err)
		}
		logs.out = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	}
	var key []byte
	if encrypt {
		k, err := gossip.GenerateKey()
		if err != nil {
			return err
		}
		key, _ = gossip.DecodeKey(k)
	}

	fmt.Printf("gossip benchmark: %d members in one process on 127.0.0.1, profile %q, encryption %v, compression %v, GOMAXPROCS %d, %s\n",
		n, profile, encrypt, compress, runtime.GOMAXPROCS(0), runtime.Version())

	// Start everyone.
	members := make([]*gossip.Gossip, n)
	names := make([]string, n)
	ok := false
	defer func() {
		if !ok { // exiting anyway; shutting down an overloaded cluster can take minutes
			return
		}
		for _, g := range members {
			if g != nil {
				_ = g.Shutdown()
			}
		}
	}()
	t := time.Now()
	for i := range members {
		names[i] = fmt.Sprintf("m%04d", i)
		cfg := gossip.DefaultConfig()
		cfg.NodeName = names[i]
		cfg.BindAddr = "127.0.0.1"
		cfg.BindPort = 0
		cfg.Profile = profile
		cfg.SecretKey = key
		cfg.Tags = map[string]string{ // what a client agent carries
			gossip.TagRole: "node", gossip.TagDatacenter: "dc1", gossip.TagBuild: "0.1.0",
			gossip.TagVersion: "1", gossip.TagHTTPPort: "8500", gossip.TagDNSPort: "8600",
			gossip.TagID: fmt.Sprintf("5c3a8f4e-0000-4000-8000-%012d", i),
		}
		cfg.Logger = slog.New(logs)
		if !compress {
			cfg.Tune = func(mc *memberlist.Config) { mc.EnableCompression = false }
		}
		g, err := gossip.New(cfg)
		if err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		members[i] = g
	}
	created := time.Now()
	fmt.Printf("started %d members in %v\n", n, time.Since(t).Round(time.Millisecond))

	// 1. Cold join.
	ip, port := members[0].Addr()
	seed := fmt.Sprintf("%s:%d", ip, port)
	var retries, joined atomic.Int64
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				fmt.Fprintf(os.Stderr, "  joining %v: %d of %d joined, %d retries\n", round(time.Since(start)), joined.Load(), n-1, retries.Load())
			}
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	errs := make(chan error, n)
	var pace <-chan time.Time
	if joinRate > 0 {
		tick := time.NewTicker(time.Duration(float64(time.Second) / joinRate))
		defer tick.Stop()
		pace = tick.C
	}
	for _, g := range members[1:] {
		wg.Add(1)
		sem <- struct{}{}
		if pace != nil {
			<-pace
		}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for attempt := 1; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := g.Join(ctx, []string{seed})
				cancel()
				if err == nil {
					joined.Add(1)
					return
				}
				if attempt == 5 {
					errs <- err
					return
				}
				retries.Add(1)
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	joinCalls := time.Since(start)
	fmt.Fprintf(os.Stderr, "  all Join calls returned after %v\n", round(joinCalls))
	close(errs)
	for err := range errs {
		return fmt.Errorf("join: %w", err)
	}
	converged, err := waitUntil(timeout, 50*time.Millisecond, func() bool {
		for _, g := range members {
			if g.NumAlive() != n {
				return false
			}
		}
		return true
	}, func(elapsed time.Duration) {
		fmt.Fprintf(os.Stderr, "  converging %v: slowest member sees %d of %d alive\n", round(elapsed), minAlive(members), n)
	})
	if err != nil {
		return fmt.Errorf("convergence: %w (slowest member sees %d alive)", err, minAlive(members))
	}
	convergence := converged.Sub(start)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if heapProfile != "" {
		if f, err := os.Create(heapProfile); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	heapMB := float64(ms.HeapAlloc) / (1 << 20)
	goroutines := runtime.NumGoroutine()

	pushPullBase := map[string]time.Duration{gossip.ProfileLAN: 30 * time.Second, gossip.ProfileWAN: 60 * time.Second, gossip.ProfileLocal: 15 * time.Second}[profile]
	if rest == 0 {
		rest = pushPullScale(pushPullBase, n)
	}
	fmt.Fprintf(os.Stderr, "  converged in %v; settling, then measuring bandwidth for %v\n", round(convergence), rest)

	// 2. Bandwidth at rest, once the retransmissions of the join
	// broadcasts are over: every member that learns of a join re-gossips it
	// RetransmitMult*log10(N+1) times, which at N=500 takes about a minute.
	// memberlist starts each member's push/pull ticker after a random
	// stagger of up to one base interval: start the window after that.
	if wait := pushPullBase - time.Since(created); wait > settle {
		settle = wait
	}
	settled, err := settleTraffic(members, settle, timeout)
	if err != nil {
		return err
	}
	before := sent(members)
	restStart := time.Now()
	maxHealth := 0
	for time.Since(restStart) < rest {
		time.Sleep(250 * time.Millisecond)
		for _, g := range members {
			maxHealth = max(maxHealth, g.HealthScore())
		}
	}
	window := time.Since(restStart)
	after := sent(members)
	perMember := func(a, b uint64) float64 { return float64(b-a) / float64(n) / window.Seconds() }
	udpRate := perMember(before.SentPacketBytes, after.SentPacketBytes)
	tcpRate := perMember(before.SentStreamBytes, after.SentStreamBytes)
	falseAtRest := countNotAlive(members, "")

	// 3. Failure detection.
	victimIdx := n / 2
	victim := names[victimIdx]
	if err := members[victimIdx].Shutdown(); err != nil {
		return err
	}
	killed := time.Now()
	seen := make([]time.Duration, n)
	remaining := n - 1
	_, err = waitUntil(timeout, 50*time.Millisecond, func() bool {
		for i, g := range members {
			if i == victimIdx || seen[i] != 0 {
				continue
			}
			if m, ok := g.Member(victim); ok && m.Status == gossip.StatusFailed {
				seen[i] = time.Since(killed)
				remaining--
			}
		}
		return remaining == 0
	}, func(elapsed time.Duration) {
		fmt.Fprintf(os.Stderr, "  failure detection %v: %d of %d members see %s failed\n", round(elapsed), n-1-remaining, n-1, victim)
	})
	if err != nil {
		return fmt.Errorf("failure detection: %w (%d of %d members still see %s alive)", err, remaining, n-1, victim)
	}
	var det []time.Duration
	for i, d := range seen {
		if i != victimIdx {
			det = append(det, d)
		}
	}
	slices.Sort(det)
	falseFailures := countNotAlive(members, victim)

	// Report.
	cfgProbe, cfgMult := 1.0, 4.0
	switch profile {
	case gossip.ProfileWAN:
		cfgProbe, cfgMult = 5, 6
	case gossip.ProfileLocal:
		cfgProbe, cfgMult = 1, 3
	}
	suspicion := cfgMult * math.Max(1, math.Log10(float64(n))) * cfgProbe
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "measure\tresult\tnote\n")
	limit := "no rate limit"
	if joinRate > 0 {
		limit = fmt.Sprintf("at most %g/s", joinRate)
	}
	fmt.Fprintf(tw, "cold join: all Join calls returned\t%v\t%d concurrent, %s, %d retried\n", round(joinCalls), conc, limit, retries.Load())
	fmt.Fprintf(tw, "cold join: every member sees %d alive\t%v\tfrom the first Join call (%v after the last returned)\n",
		n, round(convergence), round(convergence-joinCalls))
	fmt.Fprintf(tw, "bytes sent per member per second at rest\t%.0f B/s\tUDP %.0f (probes, acks) + TCP %.0f (push/pull every %v), over %v after %v settling\n",
		udpRate+tcpRate, udpRate, tcpRate, pushPullScale(pushPullBase, n), round(window), round(settled))
	fmt.Fprintf(tw, "failure seen by first / median / p95 / last\t%v / %v / %v / %v\tby %d members\n",
		round(det[0]), round(det[len(det)/2]), round(det[len(det)*95/100]), round(det[len(det)-1]), len(det))
	fmt.Fprintf(tw, "expected failure detection\t>= %.1fs\tprobe (<= %.0fs) + suspicion %.0f*log10(%d)*%.0fs = %.1fs; at most %.0fs with no confirmations\n",
		suspicion+cfgProbe, cfgProbe, cfgMult, n, cfgProbe, suspicion, 6*suspicion)
	fmt.Fprintf(tw, "false failures\t%d at rest, %d after the kill\tmembers wrongly seen not alive\n", falseAtRest, falseFailures)
	fmt.Fprintf(tw, "max health score at rest\t%d\t0 is healthy; >0 means members miss probe deadlines (CPU starved)\n", maxHealth)
	fmt.Fprintf(tw, "heap / goroutines after convergence\t%.0f MB / %d\tfor all %d members\n", heapMB, goroutines, n)
	fmt.Fprintf(tw, "log lines (debug/info/warn/error)\t%d/%d/%d/%d\t\n", logs.n[0].Load(), logs.n[1].Load(), logs.n[2].Load(), logs.n[3].Load())
	ok = true
	return tw.Flush()
}

// pushPullScale is memberlist's: the push/pull interval grows with the
// cluster beyond 32 members.
func pushPullScale(interval time.Duration, n int) time.Duration {
	if n <= 32 {
		return interval
	}
	return time.Duration(math.Ceil(math.Log2(float64(n))-math.Log2(32))+1) * interval
}

// settleTraffic waits at least least, then until two consecutive 5s
// windows show the cluster sending UDP within 10% of the same rate (TCP
// push/pulls come in bursts and are left out). It returns how long it
// waited.
func settleTraffic(ms []*gossip.Gossip, least, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	time.Sleep(least)
	rate := func() float64 {
		a := sent(ms)
		time.Sleep(5 * time.Second)
		b := sent(ms)
		return float64(b.SentPacketBytes-a.SentPacketBytes) / 5 / float64(len(ms))
	}
	prev := rate()
	for {
		cur := rate()
		fmt.Fprintf(os.Stderr, "  settling %v: %.0f B/s UDP per member\n", round(time.Since(start)), cur)
		if math.Abs(cur-prev) <= 0.1*prev {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("traffic did not settle within %v (%.0f then %.0f B/s per member)", timeout, prev, cur)
		}
		prev = cur
	}
}

// waitUntil polls cond every interval until it holds or timeout passes,
// calling progress every 5s.
func waitUntil(timeout, every time.Duration, cond func() bool, progress func(elapsed time.Duration)) (time.Time, error) {
	start := time.Now()
	next := start.Add(5 * time.Second)
	for {
		if cond() {
			return time.Now(), nil
		}
		now := time.Now()
		if now.Sub(start) > timeout {
			return time.Time{}, fmt.Errorf("not reached within %v", timeout)
		}
		if now.After(next) {
			progress(now.Sub(start))
			next = next.Add(5 * time.Second)
		}
		time.Sleep(every)
	}
}

func minAlive(ms []*gossip.Gossip) int {
	low := math.MaxInt
	for _, g := range ms {
		low = min(low, g.NumAlive())
	}
	return low
}

func sent(ms []*gossip.Gossip) gossip.Stats {
	var s gossip.Stats
	for _, g := range ms {
		st := g.Stats()
		s.SentPacketBytes += st.SentPacketBytes
		s.SentStreamBytes += st.SentStreamBytes
	}
	return s
}

// countNotAlive counts (observer, member) pairs where a member other than
// except is seen in any status but alive.
func countNotAlive(ms []*gossip.Gossip, except string) int {
	bad := 0
	for _, g := range ms {
		if g.LocalMember().Status != gossip.StatusAlive {
			continue // the stopped member
		}
		for _, m := range g.Members() {
			if m.Name != except && m.Status != gossip.StatusAlive {
				bad++
			}
		}
	}
	return bad
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

func raiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// levelCounter counts log records by level and passes them on to out, if
// set.
type levelCounter struct {
	n   *[4]atomic.Int64 // debug, info, warn, error; shared by derived handlers
	out slog.Handler
}

func (h *levelCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *levelCounter) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Level < slog.LevelInfo:
		h.n[0].Add(1)
	case r.Level < slog.LevelWarn:
		h.n[1].Add(1)
	case r.Level < slog.LevelError:
		h.n[2].Add(1)
	default:
		h.n[3].Add(1)
	}
	if h.out != nil && h.out.Enabled(ctx, r.Level) {
		return h.out.Handle(ctx, r)
	}
	return nil
}

func (h *levelCounter) WithAttrs(as []slog.Attr) slog.Handler {
	if h.out == nil {
		return h
	}
	return &levelCounter{n: h.n, out: h.out.WithAttrs(as)}
}

func (h *levelCounter) WithGroup(name string) slog.Handler {
	if h.out == nil {
		return h
	}
	return &levelCounter{n: h.n, out: h.out.WithGroup(name)}
}
