// Command echo is the demo application of the compose cluster: a small HTTP
// server that answers with its instance name and, when it has an upstream,
// with the upstream's answer as well. Behind the ingress, `curl
// 127.0.0.1:8080/` then shows which web instance and which api instance
// served the request.
//
// It is configured by flags, each with an environment default so a compose
// file can set it:
//
//	-name      NAME        instance name (default: the hostname)
//	-listen    LISTEN      address to serve on (default ":8080")
//	-upstream  UPSTREAM    URL fetched for every request to / (default: none)
//	-dns       DNS_SERVER  host:port of the DNS server for resolving the
//	                       upstream's host, e.g. the sidecar agent's
//	                       127.0.0.1:8600 (default: the system resolver)
//
// GET /health answers 200 "ok" (the sidecar agent's HTTP check). Any other
// path answers like /. It is a demo, not a proxy: no retries, no caching.
// It is built static (CGO_ENABLED=0) into a FROM scratch image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is what the flags and environment give.
type config struct {
	name     string
	listen   string
	upstream string // empty: no upstream
	dns      string // empty: the system resolver
	timeout  time.Duration
}

func (c config) validate() error {
	if c.name == "" {
		return errors.New("echo: -name (NAME) is empty and the hostname is unknown")
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("echo: -listen (LISTEN) %q: %v", c.listen, err)
	}
	if c.upstream != "" {
		u, err := url.Parse(c.upstream)
		if err != nil {
			return fmt.Errorf("echo: -upstream (UPSTREAM) %q: %v", c.upstream, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("echo: -upstream (UPSTREAM) %q: want an http:// or https:// URL with a host", c.upstream)
		}
	}
	if c.dns != "" {
		if _, _, err := net.SplitHostPort(c.dns); err != nil {
			return fmt.Errorf("echo: -dns (DNS_SERVER) %q: want host:port: %v", c.dns, err)
		}
	}
	if c.timeout <= 0 {
		return fmt.Errorf("echo: -upstream-timeout %v: must be positive", c.timeout)
	}
	return nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parseFlags(args []string) (config, error) {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.name, "name", envOr("NAME", host), "instance name shown in answers (env NAME; default: the hostname)")
	fs.StringVar(&c.listen, "listen", envOr("LISTEN", ":8080"), "address to serve HTTP on (env LISTEN)")
	fs.StringVar(&c.upstream, "upstream", envOr("UPSTREAM", ""), "URL fetched for each request, its answer included (env UPSTREAM)")
	fs.StringVar(&c.dns, "dns", envOr("DNS_SERVER", ""), "host:port of the DNS server resolving the upstream's host (env DNS_SERVER)")
	fs.DurationVar(&c.timeout, "upstream-timeout", 2*time.Second, "how long one upstream request may take")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	return c, c.validate()
}

// server answers / and /health.
type server struct {
	cfg    config
	client *http.Client // nil: no upstream
	log    *slog.Logger
}

func newServer(cfg config, log *slog.Logger) *server {
	s := &server{cfg: cfg, log: log}
	if cfg.upstream != "" {
		dialer := &net.Dialer{Timeout: cfg.timeout}
		if cfg.dns != "" {
			dialer.Resolver = &net.Resolver{
				PreferGo: true,
				Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, cfg.dns)
				},
			}
		}
		s.client = &http.Client{
			Timeout: cfg.timeout,
			// A new connection, so a new lookup, for every request: the
			// demo shows which instance answers each time, and a name
			// follows DNS at once.
			Transport: &http.Transport{
				DialContext:       dialer.DialContext,
				DisableKeepAlives: true,
			},
		}
	}
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Echo-Instance", s.cfg.name)
	if s.client == nil {
		fmt.Fprintln(w, s.cfg.name)
		return
	}
	body, err := s.callUpstream(r.Context())
	if err != nil {
		s.log.Warn("upstream failed", "upstream", s.cfg.upstream, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, "%s\nupstream %s failed: %v\n", s.cfg.name, s.cfg.upstream, err)
		return
	}
	fmt.Fprintf(w, "%s\nupstream %s answered:\n", s.cfg.name, s.cfg.upstream)
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

func (s *server) callUpstream(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.upstream, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("echo stopped", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down gracefully. As PID 1 of a
// scratch container the process gets no default SIGTERM handling, so
// without this `docker stop` would wait its full timeout.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newServer(cfg, log), ReadHeaderTimeout: 5 * time.Second}
	log.Info("echo serving", "name", cfg.name, "listen", ln.Addr().String(), "upstream", cfg.upstream, "dns", cfg.dns)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}
