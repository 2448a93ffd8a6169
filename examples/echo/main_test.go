package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testConfig(t *testing.T, args ...string) config {
	t.Helper()
	t.Setenv("NAME", "")
	t.Setenv("UPSTREAM", "")
	t.Setenv("DNS_SERVER", "")
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAnswersWithNameAndHealth(t *testing.T) {
	s := httptest.NewServer(newServer(testConfig(t, "-name", "api1"), slog.New(slog.DiscardHandler)))
	defer s.Close()
	if code, body := get(t, s.URL+"/"); code != 200 || body != "api1\n" {
		t.Fatalf("GET /: got %d %q, want 200 %q", code, body, "api1\n")
	}
	if code, body := get(t, s.URL+"/health"); code != 200 || body != "ok\n" {
		t.Fatalf("GET /health: got %d %q, want 200 ok", code, body)
	}
}

func TestIncludesUpstreamAnswer(t *testing.T) {
	api := httptest.NewServer(newServer(testConfig(t, "-name", "api2"), slog.New(slog.DiscardHandler)))
	defer api.Close()
	web := httptest.NewServer(newServer(testConfig(t, "-name", "web1", "-upstream", api.URL+"/"), slog.New(slog.DiscardHandler)))
	defer web.Close()
	code, body := get(t, web.URL+"/")
	want := "web1\nupstream " + api.URL + "/ answered:\n  api2\n"
	if code != 200 || body != want {
		t.Fatalf("got %d %q, want 200 %q", code, body, want)
	}

	api.Close() // the upstream gone: 502 naming it
	code, body = get(t, web.URL+"/")
	if code != http.StatusBadGateway || !strings.HasPrefix(body, "web1\nupstream "+api.URL+"/ failed:") {
		t.Fatalf("upstream down: got %d %q, want 502 naming the upstream", code, body)
	}
}

// The upstream's host resolved through the given DNS server, as web does
// through its sidecar agent's DNS port.
func TestResolvesUpstreamThroughDNSServer(t *testing.T) {
	api := httptest.NewServer(newServer(testConfig(t, "-name", "api1"), slog.New(slog.DiscardHandler)))
	defer api.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(api.URL, "http://"))

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	queries := make(chan string, 16)
	mux := dns.NewServeMux()
	mux.HandleFunc("service.consul.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		select {
		case queries <- q.Name:
		default:
		}
		if q.Name == "api.service.consul." && q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.IPv4(127, 0, 0, 1)})
		}
		_ = w.WriteMsg(m)
	})
	ds := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = ds.ActivateAndServe() }()
	defer ds.Shutdown()

	up := "http://api.service.consul:" + port + "/"
	web := httptest.NewServer(newServer(testConfig(t, "-name", "web1", "-upstream", up, "-dns", pc.LocalAddr().String()), slog.New(slog.DiscardHandler)))
	defer web.Close()
	code, body := get(t, web.URL+"/")
	if code != 200 || !strings.HasSuffix(body, "answered:\n  api1\n") {
		t.Fatalf("got %d %q, want 200 with api1's answer", code, body)
	}
	select {
	case q := <-queries:
		if q != "api.service.consul." {
			t.Fatalf("DNS server asked %q, want api.service.consul.", q)
		}
	case <-time.After(time.Second):
		t.Fatal("the DNS server was never asked")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "8080"}, "-listen (LISTEN) \"8080\""},
		{[]string{"-upstream", "api:9191"}, "-upstream (UPSTREAM) \"api:9191\""},
		{[]string{"-upstream", "http://"}, "-upstream (UPSTREAM) \"http://\""},
		{[]string{"-dns", "127.0.0.1"}, "-dns (DNS_SERVER) \"127.0.0.1\""},
		{[]string{"-upstream-timeout", "0s"}, "-upstream-timeout 0s"},
	} {
		_, err := parseFlags(append([]string{"-name", "x"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestStopsOnContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, testConfig(t, "-name", "x", "-listen", "127.0.0.1:0"), slog.New(slog.DiscardHandler))
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

// The configuration comes from the outside (flags, environment): no input
// may panic, and an accepted one must be usable.
func FuzzConfig(f *testing.F) {
	f.Add("web1", ":8080", "http://127.0.0.1:9191/", "127.0.0.1:8600")
	f.Add("", "8080", "api:9191", "")
	f.Add("x", "[::1]:0", "https://[::1", "::1")
	f.Add("x", ":0", "http://%zz/", "a:b:c")
	f.Fuzz(func(t *testing.T, name, listen, upstream, dnsAddr string) {
		c := config{name: name, listen: listen, upstream: upstream, dns: dnsAddr, timeout: time.Second}
		if err := c.validate(); err != nil {
			return
		}
		s := newServer(c, slog.New(slog.DiscardHandler))
		if (upstream != "") != (s.client != nil) {
			t.Fatalf("upstream %q but client %v", upstream, s.client)
		}
	})
}
