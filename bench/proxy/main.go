// Command proxy is the benchmark harness of bench/proxy/run.sh: a
// sidecar.Manager over a fixed catalog (a static Source), with one L4 and one
// L7 upstream listener sending to the same backends. It measures the proxy
// itself, without an agent around it.
//
//	go run ./bench/proxy -l4 127.0.0.1:29001 -l7 127.0.0.1:29002 -backends 127.0.0.1:29101,127.0.0.1:29102
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/sidecar"
)

// staticSource serves one fixed service.
type staticSource struct {
	snap catalog.Snapshot
}

func (s *staticSource) Service(ctx context.Context, name string) (catalog.Snapshot, error) {
	if strings.EqualFold(name, s.snap.Service) {
		return s.snap, nil
	}
	return catalog.Snapshot{Service: name}, nil
}

func (s *staticSource) Watch(name string) (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}

func main() {
	l4 := flag.String("l4", "127.0.0.1:29001", "L4 (tcp) upstream listener")
	l7 := flag.String("l7", "127.0.0.1:29002", "L7 (http) upstream listener")
	backends := flag.String("backends", "", "comma-separated backend addresses (host:port)")
	balancer := flag.String("balancer", "round_robin", "balancer")
	pprof := flag.String("pprof", "", "serve net/http/pprof on this address (profiling)")
	flag.Parse()
	if *pprof != "" {
		go http.ListenAndServe(*pprof, nil)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := &staticSource{snap: catalog.Snapshot{Service: "backend", Fetched: time.Now()}}
	for i, b := range strings.Split(*backends, ",") {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			fmt.Fprintln(os.Stderr, "-backends:", err)
			os.Exit(2)
		}
		p, _ := strconv.Atoi(port)
		src.snap.Entries = append(src.snap.Entries, catalog.ServiceEntry{
			Node:    catalog.Node{Node: "n" + strconv.Itoa(i), Address: host},
			Service: catalog.Service{ID: "backend" + strconv.Itoa(i), Service: "backend", Port: p},
		})
	}
	m, err := sidecar.New(sidecar.Config{Source: src, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	up := func(addr, proto string) sidecar.Upstream {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		p, _ := strconv.Atoi(port)
		return sidecar.Upstream{DestinationName: "backend", LocalBindAddress: host, LocalBindPort: p, Protocol: proto, Balancer: *balancer}
	}
	spec := sidecar.Spec{Proxies: []sidecar.ProxySpec{{ID: "bench", Upstreams: []sidecar.Upstream{up(*l4, "tcp"), up(*l7, "http")}}}}
	if err := m.Apply(context.Background(), spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.Close(ctx)
}
