package dnsserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is DefaultConfig on a free loopback port, logging to t.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = testLogger(t)
	cfg.Registerer = prometheus.NewRegistry()
	return cfg
}

// startServer starts a Server on 127.0.0.1 and shuts it down at cleanup.
func startServer(t testing.TB, cat Catalog, mod func(*Config)) *Server {
	t.Helper()
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, cat)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// ask sends m over network ("udp" or "tcp") and returns the answer.
func ask(t testing.TB, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], err)
	}
	return r
}

// askRaw sends raw bytes over UDP and returns the raw answer, or nil when
// none came within wait.
func askRaw(t testing.TB, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// addrs returns the A/AAAA addresses of rrs, sorted.
func addrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

func srvs(rrs []dns.RR) []*dns.SRV {
	var out []*dns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			out = append(out, s)
		}
	}
	return out
}

func txts(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

func soaOf(rrs []dns.RR) *dns.SOA {
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SOA); ok {
			return s
		}
	}
	return nil
}

// metricValue returns the value of a counter (or a histogram's count)
// with the given labels from reg.
func metricValue(t testing.TB, reg prometheus.Registerer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// fakeWriter is a dns.ResponseWriter that keeps what was written.
type fakeWriter struct {
	tcp     bool
	written [][]byte
}

var (
	fakeUDPAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	fakeTCPAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)

func (w *fakeWriter) LocalAddr() net.Addr { return w.RemoteAddr() }
func (w *fakeWriter) RemoteAddr() net.Addr {
	if w.tcp {
		return fakeTCPAddr
	}
	return fakeUDPAddr
}

func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *fakeWriter) Write(b []byte) (int, error) {
	if w.written != nil || cap(w.written) > 0 {
		w.written = append(w.written, slices.Clone(b))
	}
	return len(b), nil
}

func (w *fakeWriter) Close() error        { return nil }
func (w *fakeWriter) TsigStatus() error   { return nil }
func (w *fakeWriter) TsigTimersOnly(bool) {}
func (w *fakeWriter) Hijack()             {}

// recording returns a fakeWriter that keeps copies of what is written.
func recording(tcp bool) *fakeWriter { return &fakeWriter{tcp: tcp, written: make([][]byte, 0, 1)} }

// fixture is the catalog most tests use.
//
//	web: n1 passing (tags primary, v1), n2 warning (secondary),
//	     n3 critical, n4 passing with its own address, n6 passing on IPv6
//	db:  critical only      ghost: no instances
//	nodes n1 (meta), n2, n4, n6
func fixture() *MemCatalog {
	c := NewMemCatalog()
	c.SetService("web",
		Instance{Node: "n1", NodeAddress: "127.0.0.1", ServiceID: "web-1", ServiceName: "web", Port: 8080,
			Tags: []string{"primary", "v1"}, Status: StatusPassing, Weights: Weights{Passing: 10, Warning: 1}},
		Instance{Node: "n2", NodeAddress: "127.0.0.2", ServiceID: "web-2", ServiceName: "web", Port: 8081,
			Tags: []string{"secondary"}, Status: StatusWarning, Weights: Weights{Passing: 10, Warning: 3}},
		Instance{Node: "n3", NodeAddress: "127.0.0.3", ServiceID: "web-3", ServiceName: "web", Port: 8082,
			Status: StatusCritical},
		Instance{Node: "n4", NodeAddress: "127.0.0.4", Address: "127.0.1.4", ServiceID: "web-4", ServiceName: "web",
			Port: 9090, Tags: []string{"own"}, Status: StatusPassing},
		Instance{Node: "n6", NodeAddress: "fd00::6", ServiceID: "web-6", ServiceName: "web", Port: 8086,
			Status: StatusPassing},
	)
	c.SetService("db", Instance{Node: "n1", NodeAddress: "127.0.0.1", ServiceID: "db", ServiceName: "db",
		Port: 5432, Status: StatusCritical})
	c.SetService("ghost")
	c.SetNode(Node{Name: "n1", Address: "127.0.0.1", Meta: map[string]string{"rack": "r1", "env": "prod"}})
	c.SetNode(Node{Name: "n2", Address: "127.0.0.2"})
	c.SetNode(Node{Name: "n4", Address: "127.0.0.4"})
	c.SetNode(Node{Name: "n6", Address: "fd00::6"})
	return c
}

// manyInstances returns n passing instances on distinct nodes and
// addresses 127.x.y.z.
func manyInstances(name string, n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{
			Node:        fmt.Sprintf("node-%04d", i),
			NodeAddress: fmt.Sprintf("127.%d.%d.%d", 1+i/65536, i/256%256, i%256),
			ServiceID:   fmt.Sprintf("%s-%d", name, i),
			ServiceName: name,
			Port:        20000 + i%1000,
			Status:      StatusPassing,
		}
	}
	return out
}
