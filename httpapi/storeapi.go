package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/kvstore"
)

// kvAPI serves the endpoints backed by the Raft store: /v1/kv, /v1/txn,
// /v1/session and /v1/operator/raft. Every handler is wrapped by the
// Server's router, so it runs only where it should answer: on the leader
// for writes and default or consistent reads, on any server for ?stale
// reads. On a client agent the router forwards everything to a server.
type kvAPI struct {
	s *Server
	// blocked counts blocking queries waiting for a change.
	blocked prometheus.Gauge
}

// newKVAPI returns the shared plumbing of the store-backed endpoints. Every
// kvAPI of a Server counts its blocking queries in one gauge.
func (s *Server) newKVAPI() *kvAPI {
	a := &kvAPI{s: s, blocked: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "outrigger_http_blocking_queries",
		Help: "Blocking queries (?index=) waiting for a change.",
	})}
	if err := s.cfg.Registry.Register(a.blocked); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if g, ok := are.ExistingCollector.(prometheus.Gauge); ok {
				a.blocked = g
			}
		} else {
			s.log.Warn("register blocking-query gauge", "err", err)
		}
	}
	return a
}

// kvRoutes registers the store-backed endpoints.
func (s *Server) kvRoutes() {
	a := s.newKVAPI()
	m := s.mux
	m.HandleFunc("GET /v1/kv/{key...}", s.routed(a.kvGet))
	m.HandleFunc("PUT /v1/kv/{key...}", s.routed(a.kvPut))
	m.HandleFunc("DELETE /v1/kv/{key...}", s.routed(a.kvDelete))

	// A read-only transaction with ?stale may be answered by any server;
	// the handler sends one with writes on to the leader itself.
	m.HandleFunc("PUT /v1/txn", s.routedAs(txnRouteMode, a.txn))

	m.HandleFunc("PUT /v1/session/create", a.withOriginNode(s.routed(a.sessionCreate)))
	m.HandleFunc("PUT /v1/session/destroy/{id...}", s.routed(a.sessionDestroy))
	m.HandleFunc("PUT /v1/session/renew/{id...}", s.routed(a.sessionRenew))
	m.HandleFunc("GET /v1/session/info/{id...}", s.routed(a.sessionInfo))
	m.HandleFunc("GET /v1/session/node/{node...}", s.routed(a.sessionNode))
	m.HandleFunc("GET /v1/session/list", s.routed(a.sessionList))

	m.HandleFunc("GET /v1/operator/raft/configuration", s.routed(a.raftConfiguration))
	m.HandleFunc("DELETE /v1/operator/raft/peer", s.routed(a.raftRemovePeer))
}

// store returns the local store, or answers 500 and returns nil on an
// agent without one (the router should have forwarded the request). It
// also refuses a ?dc naming another datacenter, as Consul does when it
// has no path there.
func (a *kvAPI) store(w http.ResponseWriter, r *http.Request) *kvstore.Store {
	if dc := r.URL.Query().Get("dc"); dc != "" && dc != a.s.cfg.Agent.Self().Datacenter {
		Error(w, http.StatusInternalServerError, "No path to datacenter")
		return nil
	}
	if a.s.cfg.Store == nil {
		Error(w, http.StatusInternalServerError, "no K/V store on this agent")
		return nil
	}
	return a.s.cfg.Store
}

// storeError answers an error from the store. A refusal by a server that
// is no longer the leader (the command was not applied) is forwarded to
// the new leader when the router knows one; body is the request body to
// send again.
func (a *kvAPI) storeError(w http.ResponseWriter, r *http.Request, err error, body []byte) {
	var nl *kvstore.NotLeaderError
	switch {
	case errors.Is(err, kvstore.ErrNotLeader):
		if a.reroute(w, r, body) {
			return
		}
		if errors.As(err, &nl) && nl.LeaderAddr == "" {
			Error(w, http.StatusInternalServerError, "%v", ErrNoLeader)
			return
		}
		Error(w, http.StatusInternalServerError, "%v; retry", err)
	case errors.Is(err, kvstore.ErrValueTooLarge), errors.Is(err, kvstore.ErrTooManyOps):
		Error(w, http.StatusRequestEntityTooLarge, "%v", err)
	case errors.Is(err, kvstore.ErrInvalidCommand), errors.Is(err, kvstore.ErrKeyTooLarge),
		errors.Is(err, kvstore.ErrInvalidSession), errors.Is(err, kvstore.ErrInvalidSessionTTL):
		Error(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, kvstore.ErrSessionNotFound):
		Error(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, kvstore.ErrSessionExists):
		Error(w, http.StatusConflict, "%v", err)
	case errors.Is(err, kvstore.ErrTimeout) && r.Context().Err() != nil:
		// The client is gone; nobody reads an answer.
	default:
		a.s.log.Warn("store request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		Error(w, http.StatusInternalServerError, "%v", err)
	}
}

// reroute forwards r to the leader the router names now, with body as its
// body, and reports whether it did. It never forwards to this server and
// respects the hop limit.
func (a *kvAPI) reroute(w http.ResponseWriter, r *http.Request, body []byte) bool {
	s := a.s
	if s.cfg.Router == nil {
		return false
	}
	hops, _ := strconv.Atoi(r.Header.Get(hopsHeader))
	if hops >= maxHops {
		return false
	}
	target, err := s.cfg.Router.Route(r, RouteLeader)
	if err != nil || target == "" {
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	s.forward(w, r, target, hops+1, func(*http.Request) RouteMode { return RouteLeader }, func(w http.ResponseWriter, _ *http.Request) {
		Error(w, http.StatusInternalServerError, "%v; retry", ErrNoLeader)
	})
	return true
}

// drainLimit is how much of an oversized body is read and discarded so
// the client can finish sending and read the 413; beyond it the
// connection is closed.
const drainLimit = 8 << 20

// readBody reads at most limit bytes of r's body. A longer body gives
// ok=false after draining up to drainLimit more.
func readBody(r *http.Request, limit int) (body []byte, ok bool, err error) {
	if r.Body == nil {
		return nil, true, nil
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > limit {
		_, _ = io.CopyN(io.Discard, r.Body, drainLimit)
		return nil, false, nil
	}
	return body, true, nil
}
