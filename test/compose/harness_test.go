// Package compose drives the repository's docker-compose.yml cluster as a
// user would: build the scratch images, bring the cluster up, and check it,
// and break it, through the published ports and docker itself. It skips,
// with the reason printed, where no Docker engine runs.
//
// One cluster (its own compose project, named after the test process) is
// shared by the tests of the package: TestMain tears it down with `down -v`
// and removes the images it built, also when a test fails. Tests that break
// something restore it and wait until the cluster is whole again before
// they return; every test starts by waiting for a whole cluster.
package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// The compose services and the agents' node names.
var (
	servers = []string{"server1", "server2", "server3"}
	apps    = []string{"web1", "web2", "api1", "api2"}
	// nodes are all the agents: servers, sidecars (named after their
	// apps) and the ingress.
	nodes = append(append(append([]string{}, servers...), apps...), "ingress")
	// appService maps an app container to the service its sidecar registers.
	appService = map[string]string{"web1": "web", "web2": "web", "api1": "api", "api2": "api"}
)

const projectPrefix = "outriggertest-"

// cluster is the running compose project.
type cluster struct {
	compose []string // the compose command, e.g. ["docker-compose"]
	project string
	file    string
	env     []string
	images  []string // built for this run, removed at the end
	dnsq    string   // the DNS client image
	http    string   // server1's published HTTP address (fixed port)
	dns     string   // server1's published DNS address
	ingress string   // the ingress's published address (fixed port)
	started time.Time
	built   time.Duration // building the three images took
	upTook  time.Duration // `up -d` took
	// wholeAfter is how long after `up -d` the cluster was first whole.
	wholeAfter time.Duration

	// broken is set when a test could not get the cluster whole again:
	// the tests after it fail at once instead of waiting in turn.
	broken string

	mu  sync.Mutex
	ids map[string]string // compose service -> container ID
}

var (
	sharedOnce    sync.Once
	sharedCluster *cluster
	sharedErr     error
	sharedSkip    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedCluster != nil {
		sharedCluster.teardown(code != 0)
	}
	os.Exit(code)
}

// shared returns the package's cluster, starting it on first use; it skips
// the test, with the reason, where Docker is not usable.
func shared(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("compose test: skipped in -short mode")
	}
	sharedOnce.Do(func() {
		sharedSkip, sharedErr = startCluster()
	})
	if sharedSkip != "" {
		t.Skip(sharedSkip)
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	if sharedCluster.broken != "" {
		t.Fatalf("the shared cluster is broken: %s", sharedCluster.broken)
	}
	return sharedCluster
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func composeCommand() ([]string, error) {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, errors.New("neither docker-compose nor `docker compose` is installed")
}

// startCluster builds the images and brings the project up. A non-empty
// skip reason means Docker is not usable here.
func startCluster() (skip string, err error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return "compose test: no docker command: " + err.Error(), nil
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		return fmt.Sprintf("compose test: no Docker engine reachable (`docker info`: %v: %s)", err, lastLine(string(out))), nil
	}
	compose, err := composeCommand()
	if err != nil {
		return "compose test: " + err.Error(), nil
	}
	removeStaleProjects()

	tag := "composetest-" + strconv.Itoa(os.Getpid())
	c := &cluster{
		compose: compose,
		project: projectPrefix + strconv.Itoa(os.Getpid()),
		file:    filepath.Join(repoRoot(), "docker-compose.yml"),
		ids:     map[string]string{},
	}
	sharedCluster = c // torn down by TestMain from here on

	buildStart := time.Now()
	agentImg, echoImg, dnsqImg := "outrigger/agent:"+tag, "outrigger/echo:"+tag, "outrigger/dnsq:"+tag
	if err := c.buildImage(agentImg, "agent", filepath.Join(repoRoot(), "Dockerfile"), ""); err != nil {
		return "", err
	}
	if err := c.buildImage(echoImg, "echo", filepath.Join(repoRoot(), "examples", "echo", "Dockerfile"), "./examples/echo"); err != nil {
		return "", err
	}
	if err := c.buildImage(dnsqImg, "dnsq", "", "./test/compose/dnsq"); err != nil {
		return "", err
	}
	c.dnsq = dnsqImg

	ports, err := freePorts(3)
	if err != nil {
		return "", err
	}
	c.http = "127.0.0.1:" + strconv.Itoa(ports[0])
	c.dns = "127.0.0.1:" + strconv.Itoa(ports[1])
	c.ingress = "127.0.0.1:" + strconv.Itoa(ports[2])
	c.env = []string{
		"OUTRIGGER_IMAGE=" + agentImg,
		"OUTRIGGER_ECHO_IMAGE=" + echoImg,
		"OUTRIGGER_HTTP_PORT=" + strconv.Itoa(ports[0]),
		"OUTRIGGER_DNS_PORT=" + strconv.Itoa(ports[1]),
		"OUTRIGGER_INGRESS_PORT=" + strconv.Itoa(ports[2]),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.built = time.Since(buildStart)
	c.started = time.Now()
	if out, err := c.composeRun(ctx, "up", "-d"); err != nil {
		return "", fmt.Errorf("compose up: %v\n%s", err, out)
	}
	c.upTook = time.Since(c.started)
	for _, svc := range append(append(append([]string{}, servers...), apps...), append(sidecars(), "ingress")...) {
		out, err := c.composeOutput(ctx, "ps", "-q", svc)
		id := strings.TrimSpace(out)
		if err != nil || id == "" {
			return "", fmt.Errorf("container of %s: %v %q", svc, err, out)
		}
		c.ids[svc] = id
	}
	return "", nil
}

func sidecars() []string {
	var s []string
	for _, a := range apps {
		s = append(s, a+"-agent")
	}
	return s
}

// freePorts returns n distinct ports free for both TCP and UDP on
// 127.0.0.1 at the time of the call.
func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports found")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		defer u.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// removeStaleProjects takes down projects left by earlier test processes
// that died before their TestMain could (a panic, a timeout): their
// process ID is in the project name and no longer runs.
func removeStaleProjects() {
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=com.docker.compose.project",
		"--format", `{{.Label "com.docker.compose.project"}}`).Output()
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if seen[p] || !strings.HasPrefix(p, projectPrefix) {
			continue
		}
		seen[p] = true
		pid, err := strconv.Atoi(strings.TrimPrefix(p, projectPrefix))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		ids, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+p).Output()
		if f := strings.Fields(string(ids)); len(f) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, f...)...).Run()
		}
		nets, _ := exec.Command("docker", "network", "ls", "-q", "--filter", "label=com.docker.compose.project="+p).Output()
		if f := strings.Fields(string(nets)); len(f) > 0 {
			_ = exec.Command("docker", append([]string{"network", "rm"}, f...)...).Run()
		}
		vols, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+p).Output()
		if f := strings.Fields(string(vols)); len(f) > 0 {
			_ = exec.Command("docker", append([]string{"volume", "rm", "-f"}, f...)...).Run()
		}
		tag := "composetest-" + strconv.Itoa(pid)
		for _, img := range []string{"agent", "echo", "dnsq"} {
			_ = exec.Command("docker", "rmi", "-f", "outrigger/"+img+":"+tag).Run()
		}
	}
}

// buildImage builds a FROM scratch image holding one static binary, from a
// context directory holding just that binary and the Dockerfile. pkg ""
// means the agent binary (testutil.AgentBinary); dockerfile "" means a
// plain one running the binary.
func (c *cluster) buildImage(image, name, dockerfile, pkg string) error {
	ctxDir, err := os.MkdirTemp("", "outrigger-compose-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	bin := filepath.Join(ctxDir, name)
	if pkg == "" {
		path, err := agentBinary()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			return err
		}
	} else {
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	var df []byte
	if dockerfile != "" {
		if df, err = os.ReadFile(dockerfile); err != nil {
			return err
		}
		// The repository's Dockerfiles copy from their own contexts
		// (bin/agent from the root, echo from bin/); here the binary sits at
		// the context's top.
		df = []byte(strings.ReplaceAll(string(df), "COPY bin/agent ", "COPY agent "))
	} else {
		df = []byte(fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", name, name, name))
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", image, ctxDir).CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %v\n%s", image, err, out)
	}
	c.images = append(c.images, image)
	return nil
}

// agentBinary is testutil.AgentBinary for startCluster, which has no
// *testing.T: its failure comes back as an error.
func agentBinary() (path string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("agent binary: %v", r)
		}
	}()
	return testutil.AgentBinary(fatalTB{}), nil
}

// fatalTB turns testutil's Fatal into a panic agentBinary recovers.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper()                   {}
func (fatalTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (fatalTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func (c *cluster) teardown(failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if failed && c.started != (time.Time{}) {
		out, _ := c.composeRun(ctx, "logs", "--no-color", "--tail", "60")
		fmt.Fprintf(os.Stderr, "compose logs (last 60 lines per container):\n%s\n", out)
	}
	if c.started != (time.Time{}) {
		if out, err := c.composeRun(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			fmt.Fprintf(os.Stderr, "compose down: %v\n%s\n", err, out)
		}
	}
	for _, img := range c.images {
		if out, err := exec.CommandContext(ctx, "docker", "rmi", "-f", img).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "docker rmi %s: %v\n%s\n", img, err, out)
		}
	}
}

func (c *cluster) composeRun(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, c.compose[1:]...), append([]string{"-p", c.project, "-f", c.file}, args...)...)
	cmd := exec.CommandContext(ctx, c.compose[0], full...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v", c.compose[0], strings.Join(full, " "), err)
	}
	return string(out), nil
}

// composeOutput is composeRun's standard output alone: `docker compose`
// v2 warns on standard error (e.g. that `version` is obsolete, a key
// docker-compose 1.29 needs).
func (c *cluster) composeOutput(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, c.compose[1:]...), append([]string{"-p", c.project, "-f", c.file}, args...)...)
	cmd := exec.CommandContext(ctx, c.compose[0], full...)
	cmd.Env = append(os.Environ(), c.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", c.compose[0], strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// docker runs a docker command with a deadline.
func docker(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (c *cluster) id(svc string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[svc]
	if !ok {
		// A name the compose file does not have: docker then fails
		// with an error naming it.
		return "no-container-for-service-" + svc
	}
	return id
}

// agentExec runs the agent CLI inside a container: a server, the
// ingress, or the sidecar of an app (given the app's name).
func (c *cluster) agentExec(timeout time.Duration, node string, args ...string) (string, error) {
	svc := node
	if _, ok := appService[node]; ok {
		svc = node + "-agent"
	}
	return docker(timeout, append([]string{"exec", c.id(svc), "/agent"}, args...)...)
}

// published returns the host address a container port is published on,
// e.g. published("web1", "8500/tcp"). Docker may pick a new host port when
// a container restarts, so it asks every time.
func (c *cluster) published(svc, port string) (string, error) {
	out, err := docker(10*time.Second, "port", c.id(svc), port)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "127.0.0.1:") {
			return strings.TrimSpace(line), nil
		}
	}
	return "", fmt.Errorf("%s %s: not published on 127.0.0.1: %q", svc, port, out)
}

// httpAddr is the published HTTP address of a node's agent: the servers'
// and the ingress's own, or the sidecar's through its app container.
func (c *cluster) httpAddr(node string) (string, error) {
	if node == "server1" {
		return c.http, nil
	}
	return c.published(node, "8500/tcp")
}

// ip returns a container's address on the compose network.
func (c *cluster) ip(svc string) (string, error) {
	out, err := docker(10*time.Second, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", c.id(svc))
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) != 1 {
		return "", fmt.Errorf("%s: want one network address, got %q", svc, out)
	}
	return f[0], nil
}

// network returns the compose network's name (project_mesh).
func (c *cluster) network() (string, error) {
	out, err := docker(10*time.Second, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.id("server1"))
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) != 1 {
		return "", fmt.Errorf("server1: want one network, got %q", out)
	}
	return f[0], nil
}

// serverByIP maps a server's network address to its service name.
func (c *cluster) serverByIP(ip string) (string, error) {
	for _, s := range servers {
		got, err := c.ip(s)
		if err == nil && got == ip {
			return s, nil
		}
	}
	return "", fmt.Errorf("no server has address %s", ip)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func getJSON(addr, path string, out any) error {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// leader asks a node's agent for the Raft leader and returns the server's
// service name.
func (c *cluster) leader(node string) (string, error) {
	addr, err := c.httpAddr(node)
	if err != nil {
		return "", err
	}
	var l string
	if err := getJSON(addr, "/v1/status/leader", &l); err != nil {
		return "", err
	}
	if l == "" {
		return "", fmt.Errorf("%s knows no leader", node)
	}
	host, _, err := net.SplitHostPort(l)
	if err != nil {
		return "", fmt.Errorf("%s: leader %q: %v", node, l, err)
	}
	return c.serverByIP(host)
}

type member struct {
	Name   string
	Addr   string
	Status int
	Tags   map[string]string
}

// waitWhole waits until the cluster is whole: one leader with 3 Raft
// peers, every agent alive as every other agent sees it, every check
// passing, and the ingress sending to both web instances.
func (c *cluster) waitWhole(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	// What kept the cluster from being whole, and from when: printed when
	// the wait was long, to tell which part was slow.
	var trail []string
	last := ""
	ok := false
	defer func() {
		if !ok {
			c.broken = fmt.Sprintf("%s could not get it whole within %v: %s", t.Name(), timeout, last)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Logf("waiting %v for a whole cluster; it was not because:\n%s", d.Round(time.Millisecond), strings.Join(trail, "\n"))
		}
	}()
	testutil.WaitFor(t, timeout, "a whole cluster: a leader, 3 peers, 8 alive members seen by all, every check passing, the ingress sending to 2 webs", func() error {
		err := c.whole()
		if msg := fmt.Sprint(err); err != nil && msg != last {
			last = msg
			trail = append(trail, fmt.Sprintf("  %8v %s", time.Since(start).Round(time.Millisecond), msg))
		}
		return err
	})
	ok = true
	return time.Since(start)
}

// whole returns why the cluster is not whole, or nil.
func (c *cluster) whole() error {
	var peers []string
	if err := getJSON(c.http, "/v1/status/peers", &peers); err != nil {
		return err
	}
	if len(peers) != 3 {
		return fmt.Errorf("raft peers %v", peers)
	}
	var leaders []string
	for _, s := range servers {
		l, err := c.leader(s)
		if err != nil {
			return err
		}
		leaders = append(leaders, l)
	}
	if leaders[0] != leaders[1] || leaders[1] != leaders[2] {
		return fmt.Errorf("servers disagree on the leader: %v", leaders)
	}
	for _, n := range nodes {
		addr, err := c.httpAddr(n)
		if err != nil {
			return err
		}
		var ms []member
		if err := getJSON(addr, "/v1/agent/members", &ms); err != nil {
			return fmt.Errorf("%s: %v", n, err)
		}
		alive := 0
		for _, m := range ms {
			if m.Status == 1 {
				alive++
			}
		}
		if alive != len(nodes) || len(ms) != len(nodes) {
			return fmt.Errorf("%s sees %d alive of %d members", n, alive, len(ms))
		}
	}
	var checks []struct{ Node, CheckID, Status string }
	if err := getJSON(c.http, "/v1/health/state/any", &checks); err != nil {
		return err
	}
	// serfHealth of each node, and each app's service and sidecar proxy.
	want := len(nodes) + 2*len(apps)
	var bad []string
	for _, ch := range checks {
		if ch.Status != "passing" {
			bad = append(bad, ch.Node+"/"+ch.CheckID+"="+ch.Status)
		}
	}
	if len(bad) > 0 || len(checks) != want {
		return fmt.Errorf("%d checks (want %d), not passing: %v", len(checks), want, bad)
	}
	if n, err := c.ingressInstances("web"); err != nil || n != 2 {
		return fmt.Errorf("the ingress sends to %v web instances (%v), want 2", n, err)
	}
	return nil
}

// ingressInstances returns how many healthy instances of a service the
// ingress agent's proxy sends to (its outrigger_sidecar_upstream_instances
// gauge).
func (c *cluster) ingressInstances(service string) (int, error) {
	addr, err := c.published("ingress", "8500/tcp")
	if err != nil {
		return 0, err
	}
	code, body, err := httpGet("http://" + addr + "/v1/agent/metrics?format=prometheus")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("ingress metrics: %d", code)
	}
	prefix := `outrigger_sidecar_upstream_instances{upstream="` + service + `"} `
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("ingress metrics: no %s", strings.TrimSpace(prefix))
}

func httpGet(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// kvPut writes one key through a node's agent; nil means acknowledged.
func kvPut(client *http.Client, addr, key, value string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "true" {
		return fmt.Errorf("PUT %s: %s: %s", key, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// kvGet reads one key's raw value; query is "", "consistent" or "stale".
func kvGet(addr, key, query string) (string, error) {
	u := "http://" + addr + "/v1/kv/" + key + "?raw"
	if query != "" {
		u += "&" + query
	}
	resp, err := httpClient.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s?%s: %s: %s", key, query, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// kvKeys lists the keys under a prefix.
func kvKeys(addr, prefix, query string) (map[string]bool, error) {
	u := "/v1/kv/" + prefix + "?keys"
	if query != "" {
		u += "&" + query
	}
	var keys []string
	if err := getJSON(addr, u, &keys); err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m, nil
}

// writer writes prefix/N for N = 1, 2, ... through one agent until
// stopped, recording which writes were acknowledged and when.
type writer struct {
	addr   string
	prefix string
	client *http.Client
	stop   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	acked  []string
	ackAt  []time.Time
	failed int
	errs   map[string]int // error text (shortened) -> count
}

func startWriter(addr, prefix string) *writer {
	w := &writer{addr: addr, prefix: prefix, client: &http.Client{Timeout: 5 * time.Second},
		stop: make(chan struct{}), done: make(chan struct{}), errs: map[string]int{}}
	go w.loop()
	return w
}

func (w *writer) loop() {
	defer close(w.done)
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := fmt.Sprintf("%s/%07d", w.prefix, n)
		err := kvPut(w.client, w.addr, key, strconv.Itoa(n))
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, key)
			w.ackAt = append(w.ackAt, time.Now())
		} else {
			w.failed++
			msg := err.Error()
			if len(msg) > 120 {
				msg = msg[:120]
			}
			w.errs[strings.ReplaceAll(msg, key, "KEY")]++
		}
		w.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // no hot loop while writes fail
		}
	}
}

func (w *writer) halt() {
	close(w.stop)
	<-w.done
}

// snapshot returns the acknowledged count, the failures, and the time of
// the last acknowledgement.
func (w *writer) snapshot() (acked, failed int, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ackAt) > 0 {
		last = w.ackAt[len(w.ackAt)-1]
	}
	return len(w.acked), w.failed, last
}

// waitAcks waits until n more writes than now are acknowledged.
func (w *writer) waitAcks(t *testing.T, n int, timeout time.Duration, what string) {
	t.Helper()
	base, _, _ := w.snapshot()
	testutil.WaitFor(t, timeout, what, func() error {
		got, failed, _ := w.snapshot()
		if got-base < n {
			return fmt.Errorf("%d of %d more writes acknowledged (%d failed: %s)", got-base, n, failed, w.errSummary())
		}
		return nil
	})
}

// gapAround returns the longest time between consecutive acknowledgements
// that overlaps [from, to].
func (w *writer) gapAround(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	for i := 1; i < len(w.ackAt); i++ {
		a, b := w.ackAt[i-1], w.ackAt[i]
		if b.Before(from) || a.After(to) {
			continue
		}
		if d := b.Sub(a); d > longest {
			longest = d
		}
	}
	return longest
}

func (w *writer) errSummary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for e, n := range w.errs {
		parts = append(parts, fmt.Sprintf("%d× %s", n, e))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// lost returns the acknowledged keys missing from the store as a node's
// agent reads it (query "" or "consistent").
func (w *writer) lost(node, query string, c *cluster) ([]string, int, error) {
	addr, err := c.httpAddr(node)
	if err != nil {
		return nil, 0, err
	}
	have, err := kvKeys(addr, w.prefix+"/", query)
	if err != nil {
		return nil, 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var missing []string
	for _, k := range w.acked {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	return missing, len(w.acked), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
