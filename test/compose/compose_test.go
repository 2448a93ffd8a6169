package compose

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/internal/testutil"
)

// The tests run in this order on the shared cluster: the ones that only
// look first, then the ones that break something (each restores it).

// 1. The cluster forms by itself: a leader among 3 servers, every agent
// alive as every agent sees it, every service, sidecar proxy and
// serfHealth passing, and the catalog holding each app and its sidecar
// proxy at its container's address.
func TestClusterForms(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 3*time.Minute)
	if c.wholeAfter == 0 {
		c.wholeAfter = time.Since(c.started)
		t.Logf("FIGURE compose cluster: images built in %v, `up -d` took %v, whole (leader, 3 Raft peers, 8 agents alive, 16 checks passing, ingress routing to 2 webs) %v after `up -d` began", c.built.Round(time.Millisecond), c.upTook.Round(time.Millisecond), c.wholeAfter.Round(time.Millisecond))
	}
	for _, svc := range []string{"web", "api", "web-sidecar-proxy", "api-sidecar-proxy"} {
		base, wantPort := svc, 8080
		if b, ok := strings.CutSuffix(svc, "-sidecar-proxy"); ok {
			base, wantPort = b, 21000
		}
		var entries []struct {
			Node    struct{ Node, Address string }
			Service struct {
				Service string
				Port    int
			}
		}
		if err := getJSON(c.http, "/v1/health/service/"+svc+"?passing", &entries); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, e := range entries {
			if e.Service.Port != wantPort {
				t.Errorf("%s on %s: port %d, want %d", svc, e.Node.Node, e.Service.Port, wantPort)
			}
			got[e.Node.Node] = e.Node.Address
		}
		for app, s := range appService {
			if s != base {
				continue
			}
			ip, err := c.ip(app)
			if err != nil {
				t.Fatal(err)
			}
			if got[app] != ip {
				t.Errorf("%s instance on node %s: address %q, want the container's %s (all: %v)", svc, app, got[app], ip, got)
			}
		}
		if len(got) != 2 {
			t.Errorf("%s: %d passing instances, want 2: %v", svc, len(got), got)
		}
	}
	// The CLI inside a server container sees the same.
	out, err := c.agentExec(30*time.Second, "server2", "members")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, " alive "); n != len(nodes) {
		t.Errorf("server2's `agent members`: %d alive, want %d:\n%s", n, len(nodes), out)
	}
}

// 2. DNS from inside every app container, through its sidecar on
// 127.0.0.1:8600 (a helper container in the app's network namespace asks),
// and through the published DNS ports from the host.
func TestDNS(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	apiIPs := map[string]bool{}
	for _, a := range []string{"api1", "api2"} {
		ip, err := c.ip(a)
		if err != nil {
			t.Fatal(err)
		}
		apiIPs[ip] = true
	}

	for _, app := range apps {
		start := time.Now()
		out, err := docker(60*time.Second, "run", "--rm", "--network", "container:"+c.id(app), c.dnsq,
			"-server", "127.0.0.1:8600", "api.service.consul", "web.service.consul:SRV", "api.service.consul:SRV")
		if err != nil {
			t.Fatalf("DNS inside %s's namespace: %v", app, err)
		}
		a, srv := parseDnsq(out)
		if !sameSet(a["api.service.consul"], apiIPs) {
			t.Errorf("inside %s: api.service.consul A %v, want %v\n%s", app, a["api.service.consul"], apiIPs, out)
		}
		if !sameSet(srv["web.service.consul"], set("8080 web1.node.dc1.consul.", "8080 web2.node.dc1.consul.")) ||
			!sameSet(srv["api.service.consul"], set("8080 api1.node.dc1.consul.", "8080 api2.node.dc1.consul.")) {
			t.Errorf("inside %s: SRV answers %v, want web1/web2 and api1/api2 on 8080\n%s", app, srv, out)
		}
		t.Logf("inside %s (through its sidecar, helper container %v): api.service.consul → %v", app, time.Since(start).Round(time.Millisecond), keys(a["api.service.consul"]))
	}

	// Through the published ports: server1's fixed one (UDP and TCP) and
	// every sidecar's.
	targets := map[string]string{"server1": c.dns}
	for _, app := range apps {
		addr, err := c.published(app, "8600/udp")
		if err != nil {
			t.Fatal(err)
		}
		targets[app+"-agent"] = addr
	}
	var lat []time.Duration
	for name, addr := range targets {
		for _, proto := range []string{"udp", "tcp"} {
			if proto == "tcp" && name != "server1" {
				continue
			}
			cl := &dns.Client{Net: proto, Timeout: 3 * time.Second}
			for i := 0; i < 50; i++ {
				m := new(dns.Msg)
				m.SetQuestion("api.service.consul.", dns.TypeA)
				r, rtt, err := cl.Exchange(m, addr)
				if err != nil {
					t.Fatalf("%s DNS over %s at %s: %v", name, proto, addr, err)
				}
				got := map[string]bool{}
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						got[a.A.String()] = true
					}
				}
				if r.Rcode != dns.RcodeSuccess || !sameSet(got, apiIPs) {
					t.Fatalf("%s DNS over %s at %s: rcode %s answer %v, want %v", name, proto, addr, dns.RcodeToString[r.Rcode], got, apiIPs)
				}
				lat = append(lat, rtt)
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("FIGURE compose DNS: api.service.consul right inside all 4 app namespaces and through %d published ports; %d queries from the host p50 %v p99 %v",
		len(targets), len(lat), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
}

// 3. K/V written through one client agent reads back through another, in
// the default and the consistent mode at once, and in the stale mode once
// replicated; the CLI inside a sidecar container reads it too.
func TestKVAcrossClientAgents(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	web1, err := c.httpAddr("web1")
	if err != nil {
		t.Fatal(err)
	}
	api2, err := c.httpAddr("api2")
	if err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := 0; i < 20; i++ {
		key, val := fmt.Sprintf("kvtest/k%02d", i), fmt.Sprintf("v%d-%d", i, time.Now().UnixNano())
		if err := kvPut(httpClient, web1, key, val); err != nil {
			t.Fatalf("put through web1's sidecar: %v", err)
		}
		start := time.Now()
		for _, mode := range []string{"", "consistent"} {
			got, err := kvGet(api2, key, mode)
			if err != nil || got != val {
				t.Fatalf("read %s (mode %q) through api2's sidecar right after the write: %q %v, want %q", key, mode, got, err, val)
			}
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
		testutil.WaitFor(t, 10*time.Second, "the stale read through api2 sees "+key, func() error {
			got, err := kvGet(api2, key, "stale")
			if err != nil {
				return err
			}
			if got != val {
				return fmt.Errorf("got %q, want %q", got, val)
			}
			return nil
		})
	}
	out, err := c.agentExec(30*time.Second, "api1", "kv", "get", "kvtest/k19")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "v19-") {
		t.Fatalf("`agent kv get` inside api1's sidecar: %q %v", out, err)
	}
	// And the other way round: the CLI in web2's sidecar writes, server1 reads.
	if out, err := c.agentExec(30*time.Second, "web2", "kv", "put", "kvtest/cli", "from-web2"); err != nil {
		t.Fatalf("`agent kv put` inside web2's sidecar: %v\n%s", err, out)
	}
	if got, err := kvGet(c.http, "kvtest/cli", "consistent"); err != nil || got != "from-web2" {
		t.Fatalf("server1 reads kvtest/cli: %q %v", got, err)
	}
	t.Logf("FIGURE compose K/V: 20 writes through web1's sidecar read back through api2's (default + consistent) at once; slowest pair of reads %v", worst.Round(time.Microsecond))
}

// The ingress routes by Host: api.localhost to api, the rest to web; web
// calls api through its sidecar's upstream. Every answer names the web and
// the api instance that served it, and both of each serve.
func TestIngress(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	seen := map[string]int{}
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		start := time.Now()
		code, body, err := httpGet("http://" + c.ingress + "/")
		lat = append(lat, time.Since(start))
		if err != nil || code != 200 {
			t.Fatalf("GET / through the ingress: %d %q %v", code, body, err)
		}
		web, api, err := parseEcho(body)
		if err != nil {
			t.Fatal(err)
		}
		seen[web+"→"+api]++
	}
	webs, apis := map[string]bool{}, map[string]bool{}
	for pair := range seen {
		w, a, _ := strings.Cut(pair, "→")
		webs[w], apis[a] = true, true
	}
	if !sameSet(webs, set("web1", "web2")) || !sameSet(apis, set("api1", "api2")) {
		t.Errorf("200 requests through the ingress were served by %v, want both webs and both apis", seen)
	}
	byHost := map[string]int{}
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.ingress+"/", nil)
		req.Host = "api.localhost"
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name := strings.TrimSpace(string(b))
		if resp.StatusCode != 200 || (name != "api1" && name != "api2") {
			t.Fatalf("Host api.localhost through the ingress: %d %q, want an api instance's name", resp.StatusCode, b)
		}
		byHost[name]++
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("FIGURE compose ingress: 200 requests ingress → web's sidecar → web → its upstream → api's sidecar → api: p50 %v p99 %v; served by %v; Host api.localhost → %v",
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), seen, byHost)
}

// parseEcho reads a web answer: "web1\nupstream URL answered:\n  api2\n".
func parseEcho(body string) (web, api string, err error) {
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "web") || !strings.HasPrefix(lines[1], "upstream ") {
		return "", "", fmt.Errorf("answer %q: want a web instance, then its upstream's answer", body)
	}
	return lines[0], strings.TrimSpace(lines[2]), nil
}

// loop calls url until stopped and counts failures (an error or a status
// other than 200), keeping the first few.
type loop struct {
	stop chan struct{}
	done chan struct{}

	mu            sync.Mutex
	total, failed int
	firstFailures []string
	slowest       time.Duration
}

func startLoop(url string) *loop {
	l := &loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			start := time.Now()
			code, body, err := httpGet(url)
			d := time.Since(start)
			l.mu.Lock()
			l.total++
			l.slowest = max(l.slowest, d)
			if err != nil || code != 200 {
				l.failed++
				if len(l.firstFailures) < 3 {
					l.firstFailures = append(l.firstFailures, fmt.Sprintf("%d %q %v", code, firstLine(body), err))
				}
			}
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return l
}

func (l *loop) halt() (total, failed int, first []string, slowest time.Duration) {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.failed, l.firstFailures, l.slowest
}

// 7. An app instance stopped: its sidecar loses the network with it, so
// gossip declares the node failed (or its check fails first) and the
// instance leaves DNS (server1's, and api1's sidecar's) and the ingress.
// The time to each is printed; the goal is within gossip detection + 1 s.
func TestAppInstanceStopped(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	victimIP, err := c.ip("web2")
	if err != nil {
		t.Fatal(err)
	}
	api1DNS, err := c.published("api1", "8600/udp")
	if err != nil {
		t.Fatal(err)
	}
	l := startLoop("http://" + c.ingress + "/")
	defer l.halt()

	// Restore: the app again, then its sidecar, which must re-enter the
	// app's new network namespace (it kept the old one, now unplugged).
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		if _, err := docker(60*time.Second, "start", c.id("web2")); err != nil {
			t.Error(err)
		}
		if _, err := docker(60*time.Second, "restart", "-t", "10", c.id("web2-agent")); err != nil {
			t.Error(err)
		}
	}
	defer restore()
	start := time.Now()
	if _, err := docker(60*time.Second, "stop", "-t", "10", c.id("web2")); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(start)
	var failedAt, dnsServer1, dnsAPI1, ingressAt time.Duration
	testutil.WaitFor(t, 60*time.Second, "web2 failed in members, gone from server1's and api1's DNS and from the ingress", func() error {
		if failedAt == 0 {
			var ms []member
			if err := getJSON(c.http, "/v1/agent/members", &ms); err != nil {
				return err
			}
			for _, m := range ms {
				if m.Name == "web2" && m.Status != 1 {
					failedAt = time.Since(start)
				}
			}
		}
		for _, p := range []struct {
			addr string
			at   *time.Duration
		}{{c.dns, &dnsServer1}, {api1DNS, &dnsAPI1}} {
			if *p.at != 0 {
				continue
			}
			ips, err := lookupA(p.addr, "web.service.consul.")
			if err != nil {
				return err
			}
			if !ips[victimIP] {
				*p.at = time.Since(start)
			}
		}
		if ingressAt == 0 {
			if n, err := c.ingressInstances("web"); err == nil && n == 1 {
				ingressAt = time.Since(start)
			}
		}
		if failedAt == 0 || dnsServer1 == 0 || dnsAPI1 == 0 || ingressAt == 0 {
			return fmt.Errorf("after %v: failed %v, gone from server1's DNS %v, from api1's %v, from the ingress %v",
				time.Since(start).Round(time.Millisecond), failedAt, dnsServer1, dnsAPI1, ingressAt)
		}
		return nil
	})
	ips, err := lookupA(api1DNS, "web.service.consul.")
	if err != nil || len(ips) != 1 {
		t.Fatalf("api1's DNS after web2 stopped: %v %v, want web1 alone", ips, err)
	}
	for i := 0; i < 10; i++ {
		code, body, err := httpGet("http://" + c.ingress + "/")
		if err != nil || code != 200 || !strings.HasPrefix(body, "web1\n") {
			t.Fatalf("the ingress after web2 left: %d %q %v, want web1's answer", code, body, err)
		}
	}
	// Requests that failed meanwhile are printed, not failed on: an
	// instance whose app stops while its sidecar still runs is a crash,
	// not a drain, and the issue asks for no failed request only for the
	// orderly restarts of TestWebRestartsThroughIngress. (What fails here is
	// reported in issue 7's report: the ingress does not retry a GET that
	// got no response byte from an instance's sidecar.)
	total, failed, first, slowest := l.halt()
	gone := max(dnsServer1, dnsAPI1, ingressAt)
	verdict := "met"
	if gone > failedAt+time.Second {
		verdict = "missed"
	}
	t.Logf("FIGURE compose app stopped: docker stop took %v; web2 failed in gossip after %v; gone from DNS after %v (server1) and %v (api1's sidecar), from the ingress after %v; goal ≤ detection + 1 s %s; requests through the ingress meanwhile: %d failed of %d %v, slowest %v",
		stopped.Round(time.Millisecond), failedAt.Round(time.Millisecond), dnsServer1.Round(time.Millisecond), dnsAPI1.Round(time.Millisecond), ingressAt.Round(time.Millisecond), verdict, failed, total, first, slowest.Round(time.Millisecond))

	restore()
	back := c.waitWhole(t, 2*time.Minute)
	t.Logf("web2 and its sidecar restarted: cluster whole again after %v", back.Round(time.Millisecond))
}

// 7b. The web instances restarted one by one as a pod is: the sidecar
// stopped first (a client agent leaves gracefully on SIGTERM), then the
// app; the app started, then the sidecar. A client loop through the
// ingress sees no failed request.
func TestWebRestartsThroughIngress(t *testing.T) {
	c := shared(t)
	c.waitWhole(t, 2*time.Minute)
	l := startLoop("http://" + c.ingress + "/")
	defer l.halt()
	var report []string
	defer func() {
		if t.Failed() { // whatever step failed, leave both pods running
			for _, web := range []string{"web1", "web2"} {
				_, _ = docker(60*time.Second, "start", c.id(web))
				_, _ = docker(60*time.Second, "restart", "-t", "10", c.id(web+"-agent"))
			}
		}
	}()
	for _, web := range []string{"web1", "web2"} {
		start := time.Now()
		for _, step := range [][]string{
			{"stop", "-t", "10", c.id(web + "-agent")},
			{"stop", "-t", "10", c.id(web)},
			{"start", c.id(web)},
			{"start", c.id(web + "-agent")},
		} {
			if _, err := docker(60*time.Second, step...); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(start)
		whole := c.waitWhole(t, 2*time.Minute)
		report = append(report, fmt.Sprintf("%s restarted in %v, back in the ingress %v later", web, took.Round(time.Millisecond), whole.Round(time.Millisecond)))
	}
	total, failed, first, slowest := l.halt()
	if failed > 0 {
		t.Errorf("%d of %d requests through the ingress failed while the webs restarted: %v", failed, total, first)
	}
	t.Logf("FIGURE compose web restarts: %s; requests through the ingress: %d failed of %d, slowest %v",
		strings.Join(report, "; "), failed, total, slowest.Round(time.Millisecond))
}

func lookupA(addr, name string) (map[string]bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s @%s: rcode %s", name, addr, dns.RcodeToString[r.Rcode])
	}
	ips := map[string]bool{}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips[a.A.String()] = true
		}
	}
	return ips, nil
}

// parseDnsq splits dnsq's output into A and SRV answers by name (SRV as
// "port target").
func parseDnsq(out string) (a, srv map[string]map[string]bool) {
	a, srv = map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[1] == "A" && net.ParseIP(f[2]) != nil:
			if a[f[0]] == nil {
				a[f[0]] = map[string]bool{}
			}
			a[f[0]][f[2]] = true
		case len(f) == 6 && f[1] == "SRV":
			if srv[f[0]] == nil {
				srv[f[0]] = map[string]bool{}
			}
			srv[f[0]][f[4]+" "+f[5]] = true
		}
	}
	return a, srv
}

func set(items ...string) map[string]bool {
	m := map[string]bool{}
	for _, i := range items {
		m[i] = true
	}
	return m
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
