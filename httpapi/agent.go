package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/outrigger/outrigger/gossip"
	dto "github.com/prometheus/client_model/go"
)

// Agent is what the /v1/agent endpoints need from the running agent.
type Agent interface {
	Members() []gossip.Member
	LocalMember() gossip.Member
	Join(ctx context.Context, addrs []string) (int, error)
	// Leave leaves the cluster gracefully and then stops the agent. It
	// returns once the leave has been broadcast.
	Leave(ctx context.Context) error
	Self() Self
}

// Status answers the /v1/status endpoints.
type Status interface {
	// Leader returns the leader's server RPC address "ip:port", or "".
	Leader() string
	// Peers returns the Raft voters' server RPC addresses.
	Peers() []string
}

// Self is this agent's identity as /v1/agent/self reports it.
type Self struct {
	Datacenter string
	NodeName   string
	NodeID     string
	Server     bool
	Version    string
	Revision   string
	// Extra is merged into the response's "Stats"-free top level as
	// additional sections (e.g. "DebugConfig").
	Extra map[string]any
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/agent/members", s.agentMembers)
	m.HandleFunc("GET /v1/agent/self", s.agentSelf)
	m.HandleFunc("PUT /v1/agent/join/{addr...}", s.agentJoin)
	m.HandleFunc("PUT /v1/agent/leave", s.agentLeave)
	m.HandleFunc("GET /v1/agent/metrics", s.agentMetrics)
	m.Handle("GET /metrics", s.metricsHandler())
	m.HandleFunc("GET /v1/status/leader", s.routedAnyServer(s.statusLeader))
	m.HandleFunc("GET /v1/status/peers", s.routedAnyServer(s.statusPeers))
	s.kvRoutes()
	s.catalogRoutes()
	s.localRoutes()
}

// memberJSON is Consul's AgentMember shape.
type memberJSON struct {
	Name        string
	Addr        string
	Port        uint16
	Tags        map[string]string
	Status      int
	ProtocolMin uint8
	ProtocolMax uint8
	ProtocolCur uint8
	DelegateMin uint8
	DelegateMax uint8
	DelegateCur uint8
}

func toMemberJSON(m gossip.Member) memberJSON {
	tags := m.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	addr := ""
	if m.Addr != nil {
		addr = m.Addr.String()
	}
	return memberJSON{
		Name: m.Name, Addr: addr, Port: m.Port, Tags: tags, Status: int(m.Status),
		ProtocolMin: m.ProtocolMin, ProtocolMax: m.ProtocolMax, ProtocolCur: m.ProtocolCur,
		DelegateMin: m.DelegateMin, DelegateMax: m.DelegateMax, DelegateCur: m.DelegateCur,
	}
}

func (s *Server) agentMembers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if isTrue(q, "wan") {
		Error(w, http.StatusBadRequest, "WAN gossip is not supported: this agent has one LAN pool per datacenter")
		return
	}
	members := s.cfg.Agent.Members()
	out := make([]memberJSON, 0, len(members))
	for _, m := range members {
		out = append(out, toMemberJSON(m))
	}
	writeJSON(w, r, out)
}

func (s *Server) agentSelf(w http.ResponseWriter, r *http.Request) {
	self := s.cfg.Agent.Self()
	out := map[string]any{
		"Config": map[string]any{
			"Datacenter":        self.Datacenter,
			"PrimaryDatacenter": self.Datacenter,
			"NodeName":          self.NodeName,
			"NodeID":            self.NodeID,
			"Server":            self.Server,
			"Revision":          self.Revision,
			"Version":           self.Version,
		},
		"Member": toMemberJSON(s.cfg.Agent.LocalMember()),
		"Meta":   map[string]string{},
		"Coord":  nil,
	}
	for k, v := range self.Extra {
		out[k] = v
	}
	writeJSON(w, r, out)
}

func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request) {
	if isTrue(r.URL.Query(), "wan") {
		Error(w, http.StatusBadRequest, "WAN join is not supported: this agent has one LAN pool per datacenter")
		return
	}
	addr := r.PathValue("addr")
	if addr == "" {
		Error(w, http.StatusBadRequest, "missing address to join: PUT /v1/agent/join/<host[:port]>")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Agent.Join(ctx, []string{addr}); err != nil {
		Error(w, http.StatusInternalServerError, "join %s: %v", addr, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) agentLeave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.cfg.Agent.Leave(ctx); err != nil {
		Error(w, http.StatusInternalServerError, "leave: %v", err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) {
	leader := ""
	if s.cfg.Status != nil {
		leader = s.cfg.Status.Leader()
	}
	writeJSON(w, r, leader)
}

func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) {
	peers := []string{}
	if s.cfg.Status != nil {
		if p := s.cfg.Status.Peers(); p != nil {
			peers = p
		}
	}
	writeJSON(w, r, peers)
}

// agentMetrics serves Prometheus text with ?format=prometheus (what
// Prometheus scrapes), and otherwise Consul's JSON summary shape that the
// Go client's Agent().Metrics() decodes.
func (s *Server) agentMetrics(w http.ResponseWriter, r *http.Request) {
	switch f := r.URL.Query().Get("format"); f {
	case "prometheus":
		s.metricsHandler().ServeHTTP(w, r)
		return
	case "":
	default:
		Error(w, http.StatusBadRequest, "unknown metrics format %q: use format=prometheus or none for JSON", f)
		return
	}
	families, err := s.cfg.Registry.Gather()
	if err != nil {
		Error(w, http.StatusInternalServerError, "gather metrics: %v", err)
		return
	}
	type point struct {
		Name   string
		Value  float64
		Labels map[string]string
	}
	type sample struct {
		Name   string
		Count  uint64
		Sum    float64
		Mean   float64
		Labels map[string]string
	}
	out := struct {
		Timestamp string
		Gauges    []point
		Points    []point
		Counters  []sample
		Samples   []sample
	}{Timestamp: time.Now().UTC().Truncate(10 * time.Second).Format("2006-01-02 15:04:05 -0700 MST"),
		Gauges: []point{}, Points: []point{}, Counters: []sample{}, Samples: []sample{}}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				out.Gauges = append(out.Gauges, point{mf.GetName(), m.GetGauge().GetValue(), labels})
			case dto.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				out.Counters = append(out.Counters, sample{mf.GetName(), uint64(v), v, v, labels})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				mean := 0.0
				if h.GetSampleCount() > 0 {
					mean = h.GetSampleSum() / float64(h.GetSampleCount())
				}
				out.Samples = append(out.Samples, sample{mf.GetName(), h.GetSampleCount(), h.GetSampleSum(), mean, labels})
			}
		}
	}
	sort.Slice(out.Gauges, func(i, j int) bool { return out.Gauges[i].Name < out.Gauges[j].Name })
	writeJSON(w, r, out)
}

// writeJSON writes v as JSON; ?pretty indents it as Consul does.
func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if _, ok := r.URL.Query()["pretty"]; ok {
		enc.SetIndent("", "    ")
	}
	if err := enc.Encode(v); err != nil {
		// Headers are gone; nothing more to tell the client.
		return
	}
}

// isTrue reads a Consul-style boolean query parameter: present with no
// value, or a value strconv.ParseBool accepts as true.
func isTrue(q map[string][]string, name string) bool {
	vs, ok := q[name]
	if !ok {
		return false
	}
	if len(vs) == 0 || vs[0] == "" {
		return true
	}
	b, err := strconv.ParseBool(vs[0])
	return err == nil && b
}
