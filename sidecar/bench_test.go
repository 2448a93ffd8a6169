package sidecar

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

// BenchmarkL7 is one keep-alive client through the L7 path to an
// net/http backend: per-request cost and allocations of the proxy (plus
// the client and backend in the same process).
func BenchmarkL7(b *testing.B) {
	src := newMemSource()
	m, err := New(Config{Source: src, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	body := []byte("hello from the backend\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	src.set("api", entry("api", "a", "n1", ln.Addr().String()))
	port := tu.FreePort(b)
	if err := m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "b", Upstreams: []Upstream{{DestinationName: "api", LocalBindPort: port, Protocol: "http"}}}}}); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: api\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkL4 is one client exchanging 64-byte messages with an echo
// backend through an L4 upstream: per-exchange cost and allocations of the
// proxy (the client and the backend allocate nothing per exchange).
func BenchmarkL4(b *testing.B) {
	src := newMemSource()
	m, err := New(Config{Source: src, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	src.set("echo", entry("echo", "a", "n1", ln.Addr().String()))
	port := tu.FreePort(b)
	if err := m.Apply(context.Background(), Spec{Proxies: []ProxySpec{{ID: "b", Upstreams: []Upstream{{DestinationName: "echo", LocalBindPort: port}}}}}); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, got := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}
