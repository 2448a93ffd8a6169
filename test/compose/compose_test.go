// Package compose drives the repository's docker-compose.yml cluster as a
// user would: build the scratch image, bring the cluster up, and check it
// through the published ports. It skips, with the reason printed, where no
// Docker engine runs.
package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

const project = "outriggertest"

// cluster is a running compose project.
type cluster struct {
	t       *testing.T
	compose []string // the compose command, e.g. ["docker-compose"]
	env     []string
	dir     string
	http    string // published HTTP address of server1
}

func repoRoot(t *testing.T) string {
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
	return nil, fmt.Errorf("neither docker-compose nor `docker compose` is installed")
}

func (c *cluster) run(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, c.compose[1:]...), append([]string{"-p", project, "-f", filepath.Join(c.dir, "docker-compose.yml")}, args...)...)
	cmd := exec.CommandContext(ctx, c.compose[0], full...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", c.compose[0], strings.Join(full, " "), err, out)
	}
	return string(out), nil
}

// up builds the image and starts the cluster, tearing it down at cleanup.
func up(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("compose test: skipped in -short mode")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("compose test: no Docker engine reachable (`docker info`: %v)", err)
	}
	compose, err := composeCommand()
	if err != nil {
		t.Skipf("compose test: %v", err)
	}
	root := repoRoot(t)
	bin := testutil.AgentBinary(t)

	// Build the image from a context holding just the binary and Dockerfile.
	ctxDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ctxDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "bin", "agent"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	image := "outrigger/agent:composetest"
	if out, err := exec.Command("docker", "build", "-q", "-t", image, ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}

	httpPort := testutil.FreePort(t)
	c := &cluster{t: t, compose: compose, dir: root,
		env: []string{"OUTRIGGER_IMAGE=" + image,
			"OUTRIGGER_HTTP_PORT=" + strconv.Itoa(httpPort),
			"OUTRIGGER_DNS_PORT=" + strconv.Itoa(testutil.FreePort(t))},
		http: "127.0.0.1:" + strconv.Itoa(httpPort)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, _ = c.run(ctx, "down", "-v", "--remove-orphans")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := c.run(ctx, "logs", "--no-color", "--tail", "100")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.run(ctx, "down", "-v", "--remove-orphans"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := c.run(ctx, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	return c
}

func getJSON(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func TestComposeClusterForms(t *testing.T) {
	c := up(t)
	start := time.Now()
	testutil.WaitFor(t, 90*time.Second, "3 alive members through the published port", func() error {
		resp, err := http.Get("http://" + c.http + "/v1/agent/members")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var members []struct {
			Name   string
			Status int
			Tags   map[string]string
		}
		if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
			return err
		}
		alive := 0
		for _, m := range members {
			if m.Status == 1 && m.Tags["role"] == "consul" {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("%d alive servers of %d members: %+v", alive, len(members), members)
		}
		return nil
	})
	t.Logf("compose cluster: 3 servers alive %v after `up -d`", time.Since(start).Round(time.Millisecond))

	// The servers formed one Raft cluster by themselves (bootstrap_expect 3).
	testutil.WaitFor(t, 60*time.Second, "a Raft leader with 3 peers", func() error {
		var leader string
		var peers []string
		if err := getJSON("http://"+c.http+"/v1/status/leader", &leader); err != nil {
			return err
		}
		if err := getJSON("http://"+c.http+"/v1/status/peers", &peers); err != nil {
			return err
		}
		if leader == "" || len(peers) != 3 {
			return fmt.Errorf("leader %q peers %v", leader, peers)
		}
		return nil
	})
	t.Logf("compose cluster: Raft leader elected %v after `up -d`", time.Since(start).Round(time.Millisecond))

	// Every agent sees the others, not just server1.
	for _, svc := range []string{"server2", "server3"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := c.run(ctx, "exec", "-T", svc, "/agent", "members")
		cancel()
		if err != nil {
			t.Fatalf("%s members: %v", svc, err)
		}
		if strings.Count(out, "alive") != 3 {
			t.Errorf("%s sees:\n%s", svc, out)
		}
	}
}
