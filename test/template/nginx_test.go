// Package templatetest runs `agent template` end to end: a real agent, a
// real nginx whose upstream block the template renders, and backends
// registered and deregistered as instances of a service.
package templatetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testutil"
)

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func findNginx(t *testing.T) string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("nginx not installed (scripts/install-deps.sh installs nginx-light): skipping the nginx end-to-end test")
	return ""
}

// startProc starts a long-running process that the test stops with sig.
func startProc(t *testing.T, out *lockedBuffer, sig syscall.Signal, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(sig)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

func httpDo(t *testing.T, method, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
}

const upstreamTemplate = `upstream web {
{{- range service "web" }}
    server {{ .Address }}:{{ .Port }};
{{- end }}
}
`

func TestNginxUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped with -short")
	}
	nginx := findNginx(t)
	bin := testutil.AgentBinary(t)

	agent := testutil.NewProc(t, bin, "nginx-agent", "-dev")
	agent.Start()
	api := "http://" + agent.HTTPAddr()
	testutil.WaitFor(t, 30*time.Second, "a leader", func() error {
		resp, err := http.Get(api + "/v1/status/leader")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var leader string
		if json.NewDecoder(resp.Body).Decode(&leader) != nil || leader == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})

	// Two backends that count their requests.
	var hits [2]atomic.Int64
	var ports [2]int
	for i := range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			fmt.Fprintf(w, "backend-%d", i+1)
		}))
		t.Cleanup(srv.Close)
		ports[i] = srv.Listener.Addr().(*net.TCPAddr).Port
	}
	register := func(i int) {
		httpDo(t, http.MethodPut, api+"/v1/agent/service/register",
			fmt.Sprintf(`{"ID": "web%d", "Name": "web", "Address": "127.0.0.1", "Port": %d}`, i+1, ports[i]))
	}
	register(0)

	// nginx with its own prefix, on a free port, in the foreground.
	prefix := t.TempDir()
	conf := filepath.Join(prefix, "nginx.conf")
	upstream := filepath.Join(prefix, "upstream.conf")
	errorLog := filepath.Join(prefix, "error.log")
	listen := testutil.FreePort(t)
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	nginxConf := fmt.Sprintf(`%sdaemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[3]s notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    include %[4]s;
    server {
        listen 127.0.0.1:%[5]d;
        location / { proxy_pass http://web; proxy_next_upstream off; }
    }
}
`, user, prefix, errorLog, upstream, listen)
	if err := os.WriteFile(conf, []byte(nginxConf), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(prefix, "upstream.ctmpl")
	if err := os.WriteFile(src, []byte(upstreamTemplate), 0o644); err != nil {
		t.Fatal(err)
	}

	// The first render, before nginx runs: -once, no command.
	out, err := exec.Command(bin, "template", "-http-addr", agent.HTTPAddr(), "-once",
		"-template", src+":"+upstream).CombinedOutput()
	if err != nil {
		t.Fatalf("agent template -once: %v\n%s", err, out)
	}
	want1 := fmt.Sprintf("upstream web {\n    server 127.0.0.1:%d;\n}\n", ports[0])
	if b, _ := os.ReadFile(upstream); string(b) != want1 {
		t.Fatalf("first render:\n%s\nwant:\n%s", b, want1)
	}

	nginxOut := &lockedBuffer{}
	startProc(t, nginxOut, syscall.SIGQUIT, nginx, "-p", prefix, "-c", conf, "-e", errorLog)
	front := fmt.Sprintf("http://127.0.0.1:%d/", listen)
	// Fresh connections each time: a reloaded nginx's old workers keep
	// their kept-alive connections until they finish.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (string, error) {
		resp, err := client.Get(front)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("nginx answered %s: %s", resp.Status, b)
		}
		return string(b), err
	}
	testutil.WaitFor(t, 20*time.Second, "nginx proxying to backend-1", func() error {
		body, err := get()
		if err != nil {
			return fmt.Errorf("%v; nginx output: %s", err, nginxOut.String())
		}
		if body != "backend-1" {
			return fmt.Errorf("got %q", body)
		}
		return nil
	})
	reloads := func() int {
		b, _ := os.ReadFile(errorLog)
		return strings.Count(string(b), "(SIGHUP) received")
	}
	if n := reloads(); n != 0 {
		t.Fatalf("nginx reloaded %d times before the template ran", n)
	}

	// The template keeps the upstream current and reloads nginx.
	tmplOut := &lockedBuffer{}
	reload := fmt.Sprintf("%s -p %s -c %s -e %s -s reload", nginx, prefix, conf, errorLog)
	startProc(t, tmplOut, syscall.SIGTERM, bin, "template", "-http-addr", agent.HTTPAddr(),
		"-wait", "100ms:1s", "-template", src+":"+upstream+":"+reload)
	defer func() {
		if t.Failed() {
			t.Logf("agent template output:\n%s\nnginx error log:\n%s", tmplOut.String(), readFile(errorLog))
		}
	}()
	// Whether its first render comes before or after the second
	// registration, the file changes once: one reload.
	register(1)
	want2 := fmt.Sprintf("upstream web {\n    server 127.0.0.1:%d;\n    server 127.0.0.1:%d;\n}\n", ports[0], ports[1])
	testutil.WaitFor(t, 20*time.Second, "the upstream with both instances and a reload", func() error {
		if b := readFile(upstream); b != want2 {
			return fmt.Errorf("upstream.conf:\n%s", b)
		}
		if n := reloads(); n != 1 {
			return fmt.Errorf("%d reloads", n)
		}
		return nil
	})
	hits[0].Store(0)
	hits[1].Store(0)
	testutil.WaitFor(t, 20*time.Second, "both backends getting requests through nginx", func() error {
		if _, err := get(); err != nil {
			return err
		}
		if hits[0].Load() == 0 || hits[1].Load() == 0 {
			return fmt.Errorf("hits %d/%d", hits[0].Load(), hits[1].Load())
		}
		return nil
	})
	t.Logf("after registering web2: hits backend-1 %d, backend-2 %d", hits[0].Load(), hits[1].Load())

	// Deregistering goes back to one instance, with one more reload.
	httpDo(t, http.MethodPut, api+"/v1/agent/service/deregister/web2", "")
	testutil.WaitFor(t, 20*time.Second, "the upstream with one instance and a second reload", func() error {
		if b := readFile(upstream); b != want1 {
			return fmt.Errorf("upstream.conf:\n%s", b)
		}
		if n := reloads(); n != 2 {
			return fmt.Errorf("%d reloads", n)
		}
		return nil
	})
	// Once the old worker is gone, every request reaches backend-1.
	testutil.WaitFor(t, 20*time.Second, "only backend-1 answering", func() error {
		for range 10 {
			body, err := get()
			if err != nil {
				return err
			}
			if body != "backend-1" {
				return fmt.Errorf("got %q", body)
			}
		}
		return nil
	})
	if n := reloads(); n != 2 {
		t.Errorf("nginx reloaded %d times, want 2 (one per change)", n)
	}
	if strings.Contains(tmplOut.String(), "command failed") {
		t.Errorf("a reload failed:\n%s", tmplOut.String())
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
