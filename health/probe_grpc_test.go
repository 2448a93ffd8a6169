package health

import (
	"encoding/binary"
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

// grpcHealthServer is a minimal grpc.health.v1 server: the standard
// library's HTTP/2 with a handler writing gRPC framing and trailers by
// hand (the test decodes independently of the code under test).
type grpcHealthServer struct {
	statuses map[string]uint64 // service -> ServingStatus; missing: NotFound

	mu   sync.Mutex
	reqs []*http.Request
	svcs []string
}

func (s *grpcHealthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var service string
	if len(body) >= 5 {
		msg := body[5:]
		// Field 1, wire type 2, one-byte length (short test names).
		if len(msg) >= 2 && msg[0] == 0x0a && int(msg[1]) == len(msg)-2 {
			service = string(msg[2:])
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.svcs = append(s.svcs, service)
	s.mu.Unlock()

	if r.ProtoMajor != 2 || r.URL.Path != "/grpc.health.v1.Health/Check" || r.Header.Get("Content-Type") != "application/grpc" {
		http.Error(w, "not gRPC", http.StatusBadRequest)
		return
	}
	if service == "hang" {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/grpc")
	st, ok := s.statuses[service]
	if !ok {
		// Trailers-only response, as grpc-go sends for an error.
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "unknown%20service")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	// An unknown field 2 before the status: decoders must skip it.
	msg := []byte{0x12, 0x02, 'h', 'i', 0x08, byte(st)}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	w.Write(append(frame, msg...))
	w.Header().Set("Grpc-Status", "0")
}

func (s *grpcHealthServer) lastRequest() (*http.Request, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1], s.svcs[len(s.svcs)-1]
}

// startH2C serves h over plaintext HTTP/2 (prior knowledge) on loopback.
func startH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestGRPC(t *testing.T) {
	hs := &grpcHealthServer{statuses: map[string]uint64{"": 1, "db": 2, "odd": 9}}
	addr := startH2C(t, hs)

	tests := []struct {
		target, service, status, output string
	}{
		{addr, "", StatusPassing, "gRPC check " + addr + ": success"},
		{addr + "/db", "db", StatusCritical, "gRPC check " + addr + "/db: serving status NOT_SERVING"},
		{addr + "/odd", "odd", StatusCritical, "gRPC check " + addr + "/odd: serving status ServingStatus(9)"},
		{addr + "/nope", "nope", StatusCritical, "gRPC check " + addr + "/nope: rpc error: code = NotFound desc = unknown service"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			r := runProbe(t, CheckDefinition{Name: "g", GRPC: tt.target, Interval: time.Second})
			if r.status != tt.status || r.output != tt.output {
				t.Errorf("got %s %q, want %s %q", r.status, r.output, tt.status, tt.output)
			}
			req, svc := hs.lastRequest()
			if svc != tt.service {
				t.Errorf("server got service %q, want %q", svc, tt.service)
			}
			if req.Method != "POST" || req.Header.Get("Te") != "trailers" || req.Header.Get("Grpc-Timeout") == "" {
				t.Errorf("request %s with te=%q grpc-timeout=%q", req.Method, req.Header.Get("Te"), req.Header.Get("Grpc-Timeout"))
			}
		})
	}
}

func TestGRPCTLS(t *testing.T) {
	hs := &grpcHealthServer{statuses: map[string]uint64{"": 1}}
	srv := httptest.NewUnstartedServer(hs)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	r := runProbe(t, CheckDefinition{Name: "g", GRPC: addr, GRPCUseTLS: true, TLSSkipVerify: true, Interval: time.Second})
	if r.status != StatusPassing {
		t.Errorf("got %s %q, want passing", r.status, r.output)
	}
	r = runProbe(t, CheckDefinition{Name: "g", GRPC: addr, GRPCUseTLS: true, Interval: time.Second})
	if r.status != StatusCritical || !strings.Contains(r.output, "certificate") {
		t.Errorf("verify: got %s %q, want critical about the certificate", r.status, r.output)
	}
}

func TestGRPCFailures(t *testing.T) {
	hs := &grpcHealthServer{}
	addr := startH2C(t, hs)
	notGRPC := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	closed := closedAddr(t)

	tests := []struct {
		name, target string
		timeout      time.Duration
		output       string
	}{
		{"refused", closed, 0, "connection refused"},
		{"timeout", addr + "/hang", 200 * time.Millisecond, "context deadline exceeded"},
		{"not grpc", notGRPC, 0, "no grpc-status in the response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runProbe(t, CheckDefinition{Name: "g", GRPC: tt.target, Interval: time.Second, Timeout: tt.timeout})
			if r.status != StatusCritical || !strings.HasPrefix(r.output, "gRPC check "+tt.target+": ") || !strings.Contains(r.output, tt.output) {
				t.Errorf("got %s %q, want critical containing %q", r.status, r.output, tt.output)
			}
		})
	}
}

func TestGRPCWire(t *testing.T) {
	if got := encodeHealthCheckRequest(""); len(got) != 0 {
		t.Errorf("empty service: got %x, want nothing", got)
	}
	if got := string(encodeHealthCheckRequest("my.Svc")); got != "\x0a\x06my.Svc" {
		t.Errorf("got %q", got)
	}
	for _, tt := range []struct {
		in   []byte
		want uint64
		bad  bool
	}{
		{nil, 0, false},
		{[]byte{0x08, 0x01}, 1, false},
		{[]byte{0x08, 0x02, 0x08, 0x01}, 1, false},                   // last one wins
		{[]byte{0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01}, 1, false}, // fixed64 skipped
		{[]byte{0x1d, 1, 2, 3, 4, 0x08, 0x03}, 3, false},             // fixed32 skipped
		{[]byte{0x08}, 0, true},
		{[]byte{0x12, 0x05, 'a'}, 0, true},
		{[]byte{0x0b}, 0, true}, // group wire type
	} {
		got, err := decodeHealthCheckResponse(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("%x: got %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
	if _, err := grpcUnframe([]byte{1, 0, 0, 0, 0}); err == nil {
		t.Error("compressed frame accepted")
	}
	if _, err := grpcUnframe([]byte{0, 0, 0, 0, 9, 1}); err == nil {
		t.Error("truncated frame accepted")
	}
	for d, want := range map[time.Duration]string{10 * time.Second: "10000m", 0: "1m", 1000 * time.Hour: "3600000S"} {
		if got := grpcTimeout(d); got != want {
			t.Errorf("grpcTimeout(%v) = %q, want %q", d, got, want)
		}
	}
}
