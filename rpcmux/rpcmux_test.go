package rpcmux

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func newMux(t *testing.T) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestRaftLayerRoundTrip(t *testing.T) {
	m := newMux(t)
	layer := m.RaftLayer()
	go func() {
		c, err := layer.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	conn, err := layer.Dial(raft.ServerAddress("127.0.0.1:"+portOf(m)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

func portOf(m *Mux) string {
	_, p, _ := net.SplitHostPort(m.Addr().String())
	return p
}

func TestHTTPOverServerPort(t *testing.T) {
	m := newMux(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	})}
	go func() { _ = srv.Serve(m.HTTPListener()) }()
	t.Cleanup(func() { srv.Close() })
	c := &http.Client{Transport: HTTPTransport(), Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + m.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello /x" {
		t.Fatalf("got %q", b)
	}
}

func TestUnknownProtocolClosed(t *testing.T) {
	m := newMux(t)
	conn, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{'X', 'y'}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection with an unknown protocol byte stayed open")
	}
}

func TestCloseEndsAccept(t *testing.T) {
	m := newMux(t)
	errc := make(chan error, 1)
	go func() { _, err := m.HTTPListener().Accept(); errc <- err }()
	m.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Accept returned a connection after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if _, err := Dial(context.Background(), m.Addr().String(), ProtoHTTP, time.Second); err == nil {
		t.Fatal("dial succeeded after Close")
	}
}
