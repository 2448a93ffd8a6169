package health

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := l.Addr().String()

	r := runProbe(t, CheckDefinition{Name: "t", TCP: addr, Interval: time.Second})
	if r.status != StatusPassing || r.output != "TCP connect "+addr+": Success" {
		t.Errorf("got %s %q, want passing %q", r.status, r.output, "TCP connect "+addr+": Success")
	}

	closed := closedAddr(t)
	r = runProbe(t, CheckDefinition{Name: "t", TCP: closed, Interval: time.Second})
	if r.status != StatusCritical || !strings.HasPrefix(r.output, "TCP connect "+closed+": ") || !strings.Contains(r.output, "connection refused") {
		t.Errorf("got %s %q, want critical with connection refused", r.status, r.output)
	}
}

func TestTCPUseTLS(t *testing.T) {
	srv := quietTLSServer(t, http.NotFoundHandler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	r := runProbe(t, CheckDefinition{Name: "t", TCP: addr, TCPUseTLS: true, TLSSkipVerify: true, Interval: time.Second})
	if r.status != StatusPassing {
		t.Errorf("skip verify: got %s %q, want passing", r.status, r.output)
	}
	r = runProbe(t, CheckDefinition{Name: "t", TCP: addr, TCPUseTLS: true, Interval: time.Second})
	if r.status != StatusCritical || !strings.Contains(r.output, "certificate") {
		t.Errorf("verify: got %s %q, want critical about the certificate", r.status, r.output)
	}
}
