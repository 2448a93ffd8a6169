package health

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHTTPStatusMapping(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "all good")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "slow down")
		case "/broken":
			http.Error(w, "db down", http.StatusInternalServerError)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	tests := []struct {
		path        string
		noRedirects bool
		status      string
		output      string
	}{
		{"/ok", false, StatusPassing, "HTTP GET " + srv.URL + "/ok: 200 OK Output: all good"},
		{"/nocontent", false, StatusPassing, "HTTP GET " + srv.URL + "/nocontent: 204 No Content Output: "},
		{"/busy", false, StatusWarning, "HTTP GET " + srv.URL + "/busy: 429 Too Many Requests Output: slow down"},
		{"/broken", false, StatusCritical, "HTTP GET " + srv.URL + "/broken: 500 Internal Server Error Output: db down\n"},
		{"/missing", false, StatusCritical, "HTTP GET " + srv.URL + "/missing: 404 Not Found Output: 404 page not found\n"},
		{"/moved", false, StatusPassing, "HTTP GET " + srv.URL + "/moved: 200 OK Output: all good"},
		{"/moved", true, StatusCritical, "HTTP GET " + srv.URL + "/moved: 302 Found Output: "},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			r := runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL + tt.path, Interval: time.Second, DisableRedirects: tt.noRedirects})
			if r.status != tt.status {
				t.Errorf("got status %s, want %s", r.status, tt.status)
			}
			if !strings.HasPrefix(r.output, tt.output) {
				t.Errorf("got output %q, want prefix %q", r.output, tt.output)
			}
		})
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	addr := closedAddr(t)
	r := runProbe(t, CheckDefinition{Name: "h", HTTP: "http://" + addr + "/health", Interval: time.Second})
	if r.status != StatusCritical || !strings.Contains(r.output, "connection refused") {
		t.Errorf("got %s %q, want critical with connection refused", r.status, r.output)
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	r := runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL, Interval: time.Second, Timeout: 200 * time.Millisecond})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v, want about the 200ms timeout", took)
	}
	if r.status != StatusCritical || !strings.Contains(r.output, "context deadline exceeded") {
		t.Errorf("got %s %q, want critical with deadline exceeded", r.status, r.output)
	}
}

func TestHTTPRequestSent(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, gotBody = r, string(b)
		mu.Unlock()
	}))
	defer srv.Close()

	r := runProbe(t, CheckDefinition{
		Name: "h", HTTP: srv.URL + "/deep?x=1", Interval: time.Second,
		Method: "PUT",
		Header: map[string][]string{"x-custom": {"a", "b"}, "Host": {"api.internal"}, "Content-Type": {"application/json"}},
		Body:   `{"check":true}`,
	})
	if r.status != StatusPassing {
		t.Fatalf("got %s %q", r.status, r.output)
	}
	if !strings.HasPrefix(r.output, "HTTP PUT "+srv.URL+"/deep?x=1: 200 OK") {
		t.Errorf("got output %q", r.output)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range []struct{ name, got, want string }{
		{"method", got.Method, "PUT"},
		{"path", got.URL.RequestURI(), "/deep?x=1"},
		{"body", gotBody, `{"check":true}`},
		{"host", got.Host, "api.internal"},
		{"X-Custom", strings.Join(got.Header.Values("X-Custom"), ","), "a,b"},
		{"Content-Type", got.Header.Get("Content-Type"), "application/json"},
		{"User-Agent", got.Header.Get("User-Agent"), "Consul Health Check"},
		{"Accept", got.Header.Get("Accept"), "text/plain, text/*, */*"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestHTTPUserAgentOverride(t *testing.T) {
	ua := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ua <- r.UserAgent() }))
	defer srv.Close()
	runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL, Interval: time.Second, Header: map[string][]string{"User-Agent": {"mine"}}})
	if got := <-ua; got != "mine" {
		t.Errorf("got User-Agent %q, want mine", got)
	}
}

func TestHTTPTLSSkipVerify(t *testing.T) {
	srv := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	defer srv.Close()

	r := runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL, Interval: time.Second, TLSSkipVerify: true})
	if r.status != StatusPassing || !strings.HasSuffix(r.output, "Output: secure") {
		t.Errorf("skip verify: got %s %q, want passing", r.status, r.output)
	}
	r = runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL, Interval: time.Second})
	if r.status != StatusCritical || !strings.Contains(r.output, "certificate") {
		t.Errorf("verify: got %s %q, want critical about the certificate", r.status, r.output)
	}
}

func TestHTTPOutputCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("0123456789", 100_000)) // 1 MB
	}))
	defer srv.Close()
	r := runProbe(t, CheckDefinition{Name: "h", HTTP: srv.URL, Interval: time.Second})
	if r.status != StatusPassing {
		t.Errorf("got %s", r.status)
	}
	if len(r.output) > DefaultOutputMaxSize {
		t.Errorf("got output of %d bytes, want at most %d", len(r.output), DefaultOutputMaxSize)
	}
	if !strings.HasPrefix(r.output, "HTTP GET "+srv.URL+": 200 OK Output: 0123456789") || !strings.HasSuffix(r.output, " ... (truncated)") {
		t.Errorf("got %q ... %q", r.output[:60], r.output[len(r.output)-30:])
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// quietTLSServer is httptest.NewTLSServer without the handshake errors
// that tests provoke on purpose in the log.
func quietTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}
