// Package httpapi serves the agent's HTTP API under /v1 in Consul's shapes,
// plus Prometheus metrics. It holds no state of its own: every handler asks
// the agent through small interfaces, so the package is tested against
// in-memory fakes and the real agent alike. It is not an HTTP client.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/kvstore"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8500".
	Addr string
	// Agent answers the /v1/agent endpoints. Required.
	Agent Agent
	// Status answers /v1/status/leader and /v1/status/peers. If nil,
	// there is no leader and no peers.
	Status Status
	// Store is the local K/V store on a server agent; nil on clients,
	// whose K/V requests the Router always forwards to a server.
	Store *kvstore.Store
	// Router decides which requests are forwarded to a server or the
	// leader. If nil, everything is served locally.
	Router Router
	// ForwardTransport carries forwarded requests to a server port (see
	// rpcmux.HTTPTransport). Required when Router is set.
	ForwardTransport http.RoundTripper
	// Registry collects the agent's metrics and receives the HTTP ones.
	// If nil, a private registry is used.
	Registry *prometheus.Registry
	// Logger receives request errors. If nil, slog.Default() is used.
	Logger *slog.Logger
	// ForwardTimeout bounds a forwarded request that is not a blocking
	// query (a partitioned server never answers). If zero,
	// DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// ShutdownTimeout bounds Shutdown's wait for in-flight requests.
	// If zero, 5s is used.
	ShutdownTimeout time.Duration
}

// Validate reports the first missing or bad field.
func (c *Config) Validate() error {
	if c.Agent == nil {
		return errors.New("httpapi: Agent: must be set")
	}
	if c.Router != nil && c.ForwardTransport == nil {
		return errors.New("httpapi: ForwardTransport: must be set with Router")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("httpapi: Addr: %q: %w", c.Addr, err)
	}
	return nil
}

// Server is the HTTP API server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	srv      *http.Server
	ln       net.Listener
	requests *prometheus.CounterVec
	// localViewAnswers counts reads answered from the local view because
	// no server could be reached.
	localViewAnswers prometheus.Counter
	// healthWatchEncodings counts services' entries encoded for
	// health-watch answers (once per service and index).
	healthWatchEncodings prometheus.Counter
	duration             *prometheus.HistogramVec
}

// New validates cfg, registers the API routes and listens on cfg.Addr.
// Serving starts with Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Logger,
		mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_http_requests_total",
			Help: "HTTP API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_http_request_duration_seconds",
			Help:    "HTTP API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5, 60, 600},
		}, []string{"route"}),
	}
	s.localViewAnswers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_http_local_view_answers_total",
		Help: "Health reads answered from the agent's local view because no server was reachable (stale answers).",
	})
	s.healthWatchEncodings = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_health_watch_encodings_total",
		Help: "Services' health entries encoded for health-watch answers: once per service and index, shared by every answer at that index.",
	})
	if err := cfg.Registry.Register(s.healthWatchEncodings); err != nil {
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	if err := cfg.Registry.Register(s.localViewAnswers); err != nil {
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	if err := cfg.Registry.Register(s.requests); err != nil {
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	if err := cfg.Registry.Register(s.duration); err != nil {
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	s.routes()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("httpapi: listen %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.instrument(s.mux),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: blocking queries hold responses for up to ~11 minutes.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handle registers an extra route (used by later subsystems: kv, catalog).
// The pattern uses net/http's syntax, e.g. "GET /v1/kv/{key...}".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve serves until Shutdown is called or ctx ends. It returns nil after
// a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Shutdown(context.Background()) })
	defer stop()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeInternal serves the same API on ln (the server port's forwarded
// HTTP connections) until ctx ends.
func (s *Server) ServeInternal(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.instrument(s.mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.srv.ErrorLog,
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits up to ShutdownTimeout for
// in-flight ones, then closes the rest (blocking queries).
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

// statusWriter records the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets blocking and streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Inc()
		s.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// Error writes a Consul-style error: the status code and a plain-text
// message naming what was wrong.
func Error(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format, args...)
	fmt.Fprintln(w)
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
}
