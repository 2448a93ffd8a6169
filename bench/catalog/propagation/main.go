// Command propagation measures, on a 5-agent cluster of real processes on
// loopback (3 servers, clients A and B), the first two figures of issue
// #4's "Numbers":
//
//  1. registration: PUT /v1/agent/service/register on client A until B's
//     DNS (answered from B's local catalog View, no server round trip)
//     returns the new instance; then the deregistration until it is gone.
//     B subscribed to the service once, by one query, before the first.
//  2. failure: client A killed with SIGKILL; for every other agent, the
//     time until gossip reports A failed (/v1/agent/members), until A's
//     instances leave its DNS answers, and until they leave
//     /v1/health/service/:name?passing on its HTTP API; next to
//     memberlist's expected detection time for the agents' gossip profile
//     (lan: probe 1s, suspicion 4·log10(N)·1s).
//
// Usage: go run ./bench/catalog/propagation -agent bin/agent [-n 200] [-kills 5]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/bench/catalog/internal/kit"
)

func main() {
	bin := flag.String("agent", "bin/agent", "agent binary")
	dir := flag.String("dir", "", "directory for data and logs (default: a new temporary one)")
	n := flag.Int("n", 200, "registrations (each followed by its deregistration)")
	kills := flag.Int("kills", 5, "kill -9 rounds of agent A")
	poll := flag.Duration("poll", time.Millisecond, "pause between two probes of B's DNS")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "catbench-prop-")
		if err != nil {
			fatal(err)
		}
		*dir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *dir, *n, *kills, *poll); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "propagation:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, bin, dir string, n, kills int, poll time.Duration) error {
	bin, _ = filepath.Abs(bin)
	logf("starting 3 servers + 2 clients in %s (load %s)", dir, kit.Load())
	c, err := kit.StartServers(ctx, bin, dir, 3)
	defer func() { c.KillAll() }()
	if err != nil {
		return err
	}
	cl, err := c.StartClients(ctx, bin, dir, 2, "a", "b")
	if err != nil {
		return err
	}
	A, B := cl[0], cl[1]
	for _, x := range c.All() {
		if err := kit.WaitFor(ctx, 60*time.Second, x.Name+" to see 5 alive", func() error {
			k, err := kit.AliveMembers(ctx, x)
			if err == nil && k != 5 {
				err = fmt.Errorf("%d alive", k)
			}
			return err
		}); err != nil {
			return err
		}
	}
	fmt.Printf("cluster: 3 servers + 2 clients on 127.0.0.1, gossip profile lan (agent default without -dev); load at start %s\n", kit.Load())
	if n > 0 {
		if err := registrations(ctx, c.Servers, A, B, n, poll); err != nil {
			return err
		}
	}
	if kills > 0 {
		if err := failures(ctx, c, A, B, kills); err != nil {
			return err
		}
	}
	fmt.Printf("load at end %s\n", kit.Load())
	return nil
}

// waitDNS probes qname on addr until its SRV count is want; it returns
// when that was first seen. Errors (SERVFAIL, timeouts) are retried.
func waitDNS(ctx context.Context, dc *dns.Client, addr, qname string, want int, poll, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		k, err := kit.DNSCount(dc, addr, qname)
		now := time.Now()
		if err == nil && k == want {
			return now, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("%d records, want %d", k, want)
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s at %s: %w", qname, addr, last)
		}
		if ctx.Err() != nil {
			return now, ctx.Err()
		}
		time.Sleep(poll)
	}
}

type watchDone struct {
	at  time.Time
	err error
}

// startWatch reads the current index of path on base, then follows it in
// the background until it lists want entries.
func startWatch(ctx context.Context, base, path string, want int) (chan watchDone, error) {
	idx, err := kit.ServiceIndex(ctx, base, path)
	if err != nil {
		return nil, err
	}
	ch := make(chan watchDone, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		at, err := kit.WatchUntil(ctx, base, path, idx, func(n int) bool { return n == want })
		ch <- watchDone{at, err}
	}()
	return ch, nil
}

func ratio(a, b []time.Duration, p float64) float64 {
	return float64(kit.Percentile(a, p)) / float64(kit.Percentile(b, p))
}

func registrations(ctx context.Context, servers []*kit.Agent, A, B *kit.Agent, n int, poll time.Duration) error {
	dc := kit.NewDNSClient()
	const svc = "web-bench"
	// B subscribes by one query (nothing registered yet: NXDOMAIN).
	if k, err := kit.DNSCount(dc, B.DNSAddr(), svc+".service.consul"); err != nil || k != 0 {
		return fmt.Errorf("first query on b: %d records, %v", k, err)
	}
	time.Sleep(2 * time.Second) // past the view's re-issue pause (1s) so B's blocking request holds the service
	logf("registration: %d rounds, load %s", n, kit.Load())
	var reg, dereg []time.Duration
	// The peer: plain blocking queries (?stale, as the views read) held
	// by this program on each server from before each write: the
	// servers' own notification latency, on the leader and on the
	// followers (which learn that an entry is committed from the
	// leader's next AppendEntries).
	var leaderReg, leaderDereg, followerReg, followerDereg []time.Duration
	watchAll := func(path string, want int) (map[*kit.Agent]chan watchDone, error) {
		m := map[*kit.Agent]chan watchDone{}
		for _, s := range servers {
			w, err := startWatch(ctx, s.URL(), path, want)
			if err != nil {
				return nil, err
			}
			m[s] = w
		}
		return m, nil
	}
	collect := func(ws map[*kit.Agent]chan watchDone, t0 time.Time, leader string, onLeader, onFollowers *[]time.Duration) error {
		for s, w := range ws {
			r := <-w
			if r.err != nil {
				return fmt.Errorf("server watch on %s: %w", s.Name, r.err)
			}
			if s.RPCAddr() == leader {
				*onLeader = append(*onLeader, r.at.Sub(t0))
			} else {
				*onFollowers = append(*onFollowers, r.at.Sub(t0))
			}
		}
		return nil
	}
	start := time.Now()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%d", svc, i)
		tag := fmt.Sprintf("r%d", i)
		q := tag + "." + svc + ".service.consul"
		path := svc + "?tag=" + tag
		var leader string
		if err := kit.Do(ctx, "GET", servers[0].URL()+"/v1/status/leader", nil, &leader); err != nil {
			return err
		}
		ws, err := watchAll(path, 1)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := kit.Do(ctx, "PUT", A.URL()+"/v1/agent/service/register", map[string]any{
			"Name": svc, "ID": id, "Port": 10000 + i, "Tags": []string{tag, "bench"},
		}, nil); err != nil {
			return err
		}
		t1, err := waitDNS(ctx, dc, B.DNSAddr(), q, 1, poll, 30*time.Second)
		if err != nil {
			return fmt.Errorf("registration %d: %w", i, err)
		}
		reg = append(reg, t1.Sub(t0))
		if err := collect(ws, t0, leader, &leaderReg, &followerReg); err != nil {
			return fmt.Errorf("registration %d: %w", i, err)
		}
		if ws, err = watchAll(path, 0); err != nil {
			return err
		}
		t0 = time.Now()
		if err := kit.Do(ctx, "PUT", A.URL()+"/v1/agent/service/deregister/"+id, nil, nil); err != nil {
			return err
		}
		t1, err = waitDNS(ctx, dc, B.DNSAddr(), q, 0, poll, 30*time.Second)
		if err != nil {
			return fmt.Errorf("deregistration %d: %w", i, err)
		}
		dereg = append(dereg, t1.Sub(t0))
		if err := collect(ws, t0, leader, &leaderDereg, &followerDereg); err != nil {
			return fmt.Errorf("deregistration %d: %w", i, err)
		}
		if i%50 == 0 {
			logf("  %d/%d: registration %s", i, n, kit.Summary(reg))
		}
	}
	fmt.Printf("\n== 1. registration on client a -> visible in client b's DNS (b's local view), %d rounds in %.1fs, DNS probe every %v\n", n, time.Since(start).Seconds(), poll)
	fmt.Printf("register   (PUT a /v1/agent/service/register -> b's DNS answers it):  %s\n", kit.Summary(reg))
	fmt.Printf("deregister (PUT a /v1/agent/service/deregister -> b's DNS drops it): %s\n", kit.Summary(dereg))
	fmt.Printf("peer: blocking ?stale /v1/health/service queries held on each server, same writes:\n")
	fmt.Printf("register   -> answered on the leader:     %s\n", kit.Summary(leaderReg))
	fmt.Printf("register   -> answered on the followers:  %s\n", kit.Summary(followerReg))
	fmt.Printf("deregister -> answered on the leader:     %s\n", kit.Summary(leaderDereg))
	fmt.Printf("deregister -> answered on the followers:  %s\n", kit.Summary(followerDereg))
	fmt.Printf("ratio b's DNS / follower's blocking query: register p50 %.2f p99 %.2f; deregister p50 %.2f p99 %.2f\n",
		ratio(reg, followerReg, 50), ratio(reg, followerReg, 99), ratio(dereg, followerDereg, 50), ratio(dereg, followerDereg, 99))
	fmt.Printf("RESULT registration_p50_ms=%s registration_p99_ms=%s registration_max_ms=%s deregistration_p50_ms=%s deregistration_p99_ms=%s deregistration_max_ms=%s n=%d\n",
		kit.Ms(kit.Percentile(reg, 50)), kit.Ms(kit.Percentile(reg, 99)), kit.Ms(kit.Percentile(reg, 100)),
		kit.Ms(kit.Percentile(dereg, 50)), kit.Ms(kit.Percentile(dereg, 99)), kit.Ms(kit.Percentile(dereg, 100)), n)
	fmt.Printf("RESULT peer_leader_registration_p50_ms=%s peer_leader_registration_p99_ms=%s peer_follower_registration_p50_ms=%s peer_follower_registration_p99_ms=%s\n",
		kit.Ms(kit.Percentile(leaderReg, 50)), kit.Ms(kit.Percentile(leaderReg, 99)),
		kit.Ms(kit.Percentile(followerReg, 50)), kit.Ms(kit.Percentile(followerReg, 99)))
	return nil
}

// passingCount returns how many instances x's /v1/health/service/victim
// ?passing&tag=onA lists.
func passingCount(ctx context.Context, x *kit.Agent) (int, error) {
	var out []any
	err := kit.Do(ctx, "GET", x.URL()+"/v1/health/service/victim?passing&tag=onA", nil, &out)
	return len(out), err
}

type observer struct {
	agent                *kit.Agent
	gossip, dns, passing time.Duration
}

func failures(ctx context.Context, c *kit.Cluster, A, B *kit.Agent, rounds int) error {
	others := append(append([]*kit.Agent{}, c.Servers...), B)
	register := func() error {
		for i := 1; i <= 2; i++ {
			if err := kit.Do(ctx, "PUT", A.URL()+"/v1/agent/service/register", map[string]any{
				"Name": "victim", "ID": fmt.Sprintf("victim-a%d", i), "Port": 11000 + i, "Tags": []string{"onA"},
			}, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if err := register(); err != nil {
		return err
	}
	if err := kit.Do(ctx, "PUT", B.URL()+"/v1/agent/service/register", map[string]any{
		"Name": "victim", "ID": "victim-b", "Port": 11100, "Tags": []string{"onB"},
	}, nil); err != nil {
		return err
	}
	dc := kit.NewDNSClient()
	ready := func() error {
		for _, x := range others {
			if k, err := kit.DNSCount(dc, x.DNSAddr(), "onA.victim.service.consul"); err != nil || k != 2 {
				return fmt.Errorf("%s DNS: %d, %v", x.Name, k, err)
			}
			if k, err := passingCount(ctx, x); err != nil || k != 2 {
				return fmt.Errorf("%s ?passing: %d, %v", x.Name, k, err)
			}
			if st, err := kit.MemberStatus(ctx, x, A.Name); err != nil || st != 1 {
				return fmt.Errorf("%s sees a as %d, %v", x.Name, st, err)
			}
		}
		return nil
	}
	// memberlist's LAN profile with N members: a probe of the dead member
	// within one probe interval (1s) by some member, that probe's failure
	// at the end of its interval (1s after it started: 500ms direct, then
	// indirect probes), then the suspicion timeout (memberlist's
	// suspicionTimeout): SuspicionMult(4)·max(1, log10(N))·ProbeInterval
	// once SuspicionMult-2 = 2 other members confirmed the suspicion, up
	// to SuspicionMaxTimeoutMult(6) times that without confirmations
	// (11.4s with one).
	const members = 5
	susp := time.Duration(4 * math.Max(1, math.Log10(members)) * float64(time.Second))
	fmt.Printf("\n== 2. client a killed (SIGKILL) -> out of every other agent's DNS and ?passing; %d rounds\n", rounds)
	fmt.Printf("memberlist lan profile, N=%d: suspicion timeout %.1fs with 2 confirmations (%.1fs without); expected detection %.1f-%.1fs after the kill (probe within 1s + failed probe round 1s + suspicion)\n",
		members, susp.Seconds(), 6*susp.Seconds(), (susp + time.Second).Seconds(), (susp + 2*time.Second).Seconds())
	fmt.Printf("%-5s %-8s %10s %10s %12s %10s\n", "round", "agent", "gossip_s", "dns_s", "passing_s", "max-gossip")
	var worstDiff []time.Duration
	var leaderGossip, allGossip, allDNS, allPassing []time.Duration
	for r := 1; r <= rounds; r++ {
		if err := kit.WaitFor(ctx, 90*time.Second, "a's instances everywhere", ready); err != nil {
			return err
		}
		time.Sleep(3 * time.Second) // let gossip settle after a's (re)join
		leader := ""
		if err := kit.Do(ctx, "GET", c.Servers[0].URL()+"/v1/status/leader", nil, &leader); err != nil {
			return err
		}
		logf("kill round %d (leader %s), load %s", r, leader, kit.Load())
		obs := make([]*observer, len(others))
		for i, x := range others {
			obs[i] = &observer{agent: x}
		}
		t0 := time.Now()
		A.Kill()
		var wg sync.WaitGroup
		errs := make(chan error, 3*len(obs))
		for _, o := range obs {
			x := o.agent
			wg.Go(func() {
				errs <- kit.WaitFor(ctx, 90*time.Second, x.Name+" to see a failed", func() error {
					st, err := kit.MemberStatus(ctx, x, A.Name)
					if err == nil && st != 4 {
						err = fmt.Errorf("status %d", st)
					}
					if err == nil {
						o.gossip = time.Since(t0)
					}
					return err
				})
			})
			wg.Go(func() {
				t1, err := waitDNS(ctx, dc, x.DNSAddr(), "onA.victim.service.consul", 0, 5*time.Millisecond, 90*time.Second)
				o.dns = t1.Sub(t0)
				errs <- err
			})
			wg.Go(func() {
				errs <- kit.WaitFor(ctx, 90*time.Second, x.Name+" ?passing without a", func() error {
					k, err := passingCount(ctx, x)
					if err == nil && k != 0 {
						err = fmt.Errorf("%d passing", k)
					}
					if err == nil {
						o.passing = time.Since(t0)
					}
					return err
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		var lastOut, leaderSaw time.Duration
		for _, o := range obs {
			isLeader := o.agent.RPCAddr() == leader
			name := o.agent.Name
			if isLeader {
				name += "*"
				leaderSaw = o.gossip
				leaderGossip = append(leaderGossip, o.gossip)
			}
			out := max(o.dns, o.passing)
			lastOut = max(lastOut, out)
			allGossip = append(allGossip, o.gossip)
			allDNS = append(allDNS, o.dns)
			allPassing = append(allPassing, o.passing)
			fmt.Printf("%-5d %-8s %10.2f %10.2f %12.2f %+10.2f\n", r, name, o.gossip.Seconds(), o.dns.Seconds(), o.passing.Seconds(), (out - o.gossip).Seconds())
		}
		diff := lastOut - leaderSaw
		worstDiff = append(worstDiff, diff)
		fmt.Printf("round %d: leader saw a failed at %.2fs; a out of every agent's DNS and ?passing at %.2fs: %+.2fs after the leader's detection\n", r, leaderSaw.Seconds(), lastOut.Seconds(), diff.Seconds())
		// Bring a back for the next round.
		if r < rounds {
			if err := A.Start(); err != nil {
				return err
			}
			if err := A.WaitHTTP(ctx, 30*time.Second); err != nil {
				return err
			}
			if err := register(); err != nil {
				return err
			}
		}
	}
	fmt.Printf("gossip detection, leader (* above): %s\n", secs(leaderGossip))
	fmt.Printf("gossip detection, every other agent: %s\n", secs(allGossip))
	fmt.Printf("out of DNS (local view), every other agent: %s\n", secs(allDNS))
	fmt.Printf("out of ?passing (HTTP), every other agent: %s\n", secs(allPassing))
	fmt.Printf("last agent clean minus leader's detection, per round: %s\n", secs(worstDiff))
	fmt.Printf("RESULT failure_leader_detect_p50_s=%.2f failure_last_out_minus_leader_detect_max_s=%.2f failure_out_dns_max_s=%.2f failure_out_passing_max_s=%.2f rounds=%d\n",
		kit.Percentile(leaderGossip, 50).Seconds(), kit.Percentile(worstDiff, 100).Seconds(),
		kit.Percentile(allDNS, 100).Seconds(), kit.Percentile(allPassing, 100).Seconds(), rounds)
	return nil
}

func secs(xs []time.Duration) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x.Seconds()))
	}
	return fmt.Sprintf("min %.2f / median %.2f / max %.2f s  [%s]", kit.Percentile(xs, 0).Seconds(), kit.Percentile(xs, 50).Seconds(), kit.Percentile(xs, 100).Seconds(), strings.Join(s, " "))
}
