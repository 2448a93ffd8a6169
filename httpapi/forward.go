package httpapi

import (
	"bytes"
	"context"
	"errors"
	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/kvstore"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RouteMode says which server may answer a request.
type RouteMode int

const (
	// RouteLeader: writes, and default or ?consistent reads — the leader answers.
	RouteLeader RouteMode = iota
	// RouteAnyServer: ?stale reads — any server answers from its own state.
	RouteAnyServer
)

// ErrNoLeader is returned by a Router when the cluster has no leader; the
// client gets a 500 "No cluster leader", as from Consul.
var ErrNoLeader = errors.New("No cluster leader")

// ErrNoServers is returned by a Router on a client agent that knows no
// live server.
var ErrNoServers = errors.New("No known Consul servers")

// Router decides where a request that needs the servers is served.
type Router interface {
	// Route returns "" to serve the request here, or the server RPC
	// address ("ip:port" of a server port) to forward it to.
	Route(r *http.Request, mode RouteMode) (string, error)
}

// hopsHeader counts how many times a request was forwarded, so a
// confused topology cannot loop a request forever.
const hopsHeader = "X-Outrigger-Forwarded-Hops"

// maxHops: client → server → leader is two.
const maxHops = 2

// modeFor picks the route mode of a read from its consistency flags.
func modeFor(r *http.Request) RouteMode {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return RouteLeader
	}
	if _, ok := r.URL.Query()["stale"]; ok {
		return RouteAnyServer
	}
	return RouteLeader
}

// routed serves h locally when the Router says so, and otherwise forwards
// the request to the chosen server over its server port. Writes and
// default or consistent reads go to the leader; ?stale reads to any server.
func (s *Server) routed(h http.HandlerFunc) http.HandlerFunc {
	return s.routedAs(modeFor, h)
}

// routedAnyServer routes every request to some server (status endpoints:
// a client agent asks a server, a server answers itself).
func (s *Server) routedAnyServer(h http.HandlerFunc) http.HandlerFunc {
	return s.routedAs(func(*http.Request) RouteMode { return RouteAnyServer }, h)
}

func (s *Server) routedAs(mode func(*http.Request) RouteMode, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Router == nil {
			h(w, r)
			return
		}
		hops, _ := strconv.Atoi(r.Header.Get(hopsHeader))
		target, err := s.cfg.Router.Route(r, mode(r))
		switch {
		case err != nil:
			if s.serveFromLocalView(w, r) {
				return
			}
			Error(w, http.StatusInternalServerError, "%v", err)
			return
		case target == "":
			h(w, r)
			return
		case hops >= maxHops:
			Error(w, http.StatusInternalServerError, "request forwarded %d times without reaching a server that can answer it (leader changing?)", hops)
			return
		}
		if lv, ok := s.cfg.Agent.(LocalViewer); ok && r.Method == http.MethodGet {
			name, found := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
			if !found {
				name, found = strings.CutPrefix(r.URL.Path, "/v1/catalog/service/")
			}
			if found && name != "" {
				lv.UseService(name)
			}
		}
		s.forward(w, r, target, hops+1, mode, h)
	}
}

// DefaultForwardTimeout bounds a forwarded request that is not a blocking
// query: a server cut off by a partition never answers (its packets are
// dropped), and the client must not wait for TCP to give up.
const DefaultForwardTimeout = 10 * time.Second

// LeaderTracker is implemented by Routers that know the current leader
// (server agents). A write forwarded to a leader that is replaced while
// the request is in flight is abandoned at once (its outcome is unknown),
// rather than waiting for the forward timeout.
type LeaderTracker interface {
	// LeaderContext returns the server address of the leader last known
	// ("" when none has been) and a context that ends as soon as another
	// leader is known.
	LeaderContext() (string, context.Context)
}

// isBlocking reports whether r may legitimately wait for long: a blocking
// query (?index=N, N > 0) or the view's health watch.
func isBlocking(r *http.Request) bool {
	if r.URL.Path == HealthWatchPath {
		return true
	}
	idx := r.URL.Query().Get("index")
	return idx != "" && idx != "0"
}

// FailureReporter is implemented by Routers that can steer away from a
// server that just refused a connection.
type FailureReporter interface {
	ServerFailed(addr string)
}

// maxForwardBody is the largest body buffered so a forward can be retried
// on another server; bigger bodies are streamed once (and refused by the
// handlers' own limits anyway).
const maxForwardBody = 2 << 20

// forward proxies r to target. When the target cannot be dialled (nothing
// was sent), it reports the failure to the Router and retries on the
// server the Router picks next, or serves r here when the Router now says
// so (this server became the leader). A request that is not a blocking
// query gets Config.ForwardTimeout, and a leader-bound one is abandoned when the
// leader changes under it.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, target string, hops int, mode func(*http.Request) RouteMode, h http.HandlerFunc) {
	var body []byte
	replayable := r.Body == nil || r.Body == http.NoBody
	if !replayable && r.ContentLength >= 0 && r.ContentLength <= maxForwardBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
		if err != nil {
			Error(w, http.StatusBadRequest, "read request body: %v", err)
			return
		}
		body, replayable = b, true
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		retry := false
		ctx, cancel := s.forwardContext(r, target, mode(r))
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(&url.URL{Scheme: "http", Host: target})
				pr.Out.Header.Set(hopsHeader, strconv.Itoa(hops))
				pr.Out.Host = target
			},
			Transport:  s.cfg.ForwardTransport,
			BufferPool: forwardBufs,
			// FlushInterval 0: a response of known length goes out in
			// one write when it is whole; ReverseProxy flushes every
			// write of one of unknown length (streamed, chunked) by
			// itself. -1 had cost two or three writes per answer.
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				var op *net.OpError
				if errors.As(err, &op) && op.Op == "dial" && replayable && attempt < attempts {
					retry = true
					return
				}
				s.log.Warn("forward failed", "target", target, "path", r.URL.Path, "err", err)
				if errors.As(err, &op) && op.Op == "dial" && s.serveFromLocalView(w, r) {
					return
				}
				switch cause := context.Cause(ctx); {
				case errors.Is(cause, errLeaderChanged):
					Error(w, http.StatusInternalServerError, "leader %s was replaced while it handled the request; its outcome is unknown", target)
				case errors.Is(cause, errForwardTimeout):
					Error(w, http.StatusGatewayTimeout, "no answer from server %s within %v; the request's outcome is unknown", target, s.cfg.ForwardTimeout)
				default:
					Error(w, http.StatusInternalServerError, "forward to server %s: %v", target, err)
				}
			},
		}
		proxy.ServeHTTP(w, r.WithContext(ctx))
		cancel()
		if !retry {
			return
		}
		s.log.Debug("server unreachable; trying another", "target", target, "path", r.URL.Path)
		if fr, ok := s.cfg.Router.(FailureReporter); ok {
			fr.ServerFailed(target)
		}
		next, err := s.cfg.Router.Route(r, mode(r))
		if err != nil {
			Error(w, http.StatusInternalServerError, "%v", err)
			return
		}
		if next == "" {
			// This agent may answer now (it became the leader).
			if body != nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			h(w, r)
			return
		}
		target = next
	}
}

// forwardBufs are ReverseProxy's copy buffers: without a pool it makes a
// 32 KiB one for every forwarded request.
var forwardBufs httputil.BufferPool = &bufPool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufPool) Put(s []byte) { b.p.Put(&s) }

var (
	errLeaderChanged  = errors.New("leader changed")
	errForwardTimeout = errors.New("forward timed out")
)

// forwardContext is the context of one forward of r to target.
func (s *Server) forwardContext(r *http.Request, target string, mode RouteMode) (context.Context, context.CancelFunc) {
	if isBlocking(r) {
		return context.WithCancel(r.Context())
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	timer := time.AfterFunc(s.cfg.ForwardTimeout, func() { cancel(errForwardTimeout) })
	stop := func() bool { return false }
	if lt, ok := s.cfg.Router.(LeaderTracker); ok && mode == RouteLeader {
		// No goroutine per request: the leader's context calls back.
		if leader, lctx := lt.LeaderContext(); leader == target {
			stop = context.AfterFunc(lctx, func() { cancel(errLeaderChanged) })
		}
	}
	return ctx, func() {
		timer.Stop()
		stop()
		cancel(nil)
	}
}

// LocalViewer is implemented by agents that keep a local view of the
// services they use (catalog.View). When no server can be reached, service
// health reads are answered from it: discovery keeps working with every
// server down, and X-Consul-LastContact says how old the answer is.
type LocalViewer interface {
	// LocalServiceHealth returns the last known /v1/health/service/:name
	// result (Consul's JSON shape), filtered by passing and tags; ok is
	// false when the agent has never fetched that service.
	LocalServiceHealth(ctx context.Context, name string, passing bool, tags []string) (entries any, index uint64, age time.Duration, ok bool)
	// UseService subscribes the view to a service a client asked about,
	// so later reads survive a loss of every server.
	UseService(name string)
}

// serveFromLocalView answers GET /v1/health/service/:name and
// /v1/catalog/service/:name from the agent's local view, when it has one,
// with ?passing, ?tag and ?filter applied. It reports whether it answered.
func (s *Server) serveFromLocalView(w http.ResponseWriter, r *http.Request) bool {
	lv, ok := s.cfg.Agent.(LocalViewer)
	if !ok || r.Method != http.MethodGet {
		return false
	}
	name, health := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !health {
		var found bool
		if name, found = strings.CutPrefix(r.URL.Path, "/v1/catalog/service/"); !found {
			return false
		}
	}
	if name == "" {
		return false
	}
	q := r.URL.Query()
	filter, rerr := parseFilter(q)
	if rerr != nil {
		writeRequestError(w, rerr)
		return true
	}
	_, passing := q["passing"]
	entries, index, age, ok := lv.LocalServiceHealth(r.Context(), name, passing && health, q["tag"])
	if !ok {
		return false
	}
	if !health {
		if es, isEntries := entries.([]catalog.ServiceEntry); isEntries {
			entries = catalogServicesFromEntries(es)
		}
	}
	if entries, rerr = filter.apply(entries); rerr != nil {
		writeRequestError(w, rerr)
		return true
	}
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	h.Set("X-Consul-KnownLeader", "false")
	h.Set("X-Consul-LastContact", strconv.FormatInt(age.Milliseconds(), 10))
	h.Set("X-Consul-Effective-Consistency", "stale")
	s.localViewAnswers.Inc()
	writeJSON(w, r, entries)
	return true
}

// catalogServicesFromEntries turns the view's health entries into
// /v1/catalog/service's flat shape.
func catalogServicesFromEntries(es []catalog.ServiceEntry) []catalogServiceJSON {
	out := make([]catalogServiceJSON, 0, len(es))
	for _, e := range es {
		sw := weightsJSON{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning}
		tagged := make(map[string]kvstore.ServiceAddress, len(e.Service.TaggedAddresses))
		for k, a := range e.Service.TaggedAddresses {
			tagged[k] = kvstore.ServiceAddress{Address: a.Address, Port: a.Port}
		}
		out = append(out, catalogServiceJSON{
			ID: e.Node.ID, Node: e.Node.Node, Address: e.Node.Address, Datacenter: e.Node.Datacenter,
			TaggedAddresses: strMap(e.Node.TaggedAddresses), NodeMeta: strMap(e.Node.Meta),
			ServiceKind: e.Service.Kind, ServiceID: e.Service.ID, ServiceName: e.Service.Service,
			ServiceTags: strList(e.Service.Tags), ServiceAddress: e.Service.Address,
			ServiceTaggedAddresses: tagged, ServiceWeights: sw, ServiceMeta: strMap(e.Service.Meta),
			ServicePort: e.Service.Port, ServiceEnableTagOverride: e.Service.EnableTagOverride,
			ServiceProxy: e.Service.Proxy, CreateIndex: e.Service.CreateIndex, ModifyIndex: e.Service.ModifyIndex,
		})
	}
	return out
}
