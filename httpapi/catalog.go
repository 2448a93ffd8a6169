package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/outrigger/outrigger/kvstore"
)

// maxCatalogBody bounds a /v1/catalog/register or deregister body.
const maxCatalogBody = 1 << 20

// catalogAPI serves /v1/catalog and /v1/health from the catalog held in
// the Raft store. Reads block on the granular indexes of the store (per
// service, per node, per check state) and carry the same headers and
// consistency modes as the K/V reads; writes go to the leader.
type catalogAPI struct {
	*kvAPI
	// entries shares encoded service entries among health-watch answers.
	entries entryCache
}

// catalogRoutes registers the catalog and health endpoints.
func (s *Server) catalogRoutes() {
	a := &catalogAPI{kvAPI: s.newKVAPI()}
	m := s.mux
	m.HandleFunc("GET /v1/catalog/services", s.routed(a.catalogServices))
	m.HandleFunc("GET /v1/catalog/service/{name...}", s.routed(a.catalogService))
	m.HandleFunc("GET /v1/catalog/nodes", s.routed(a.catalogNodes))
	m.HandleFunc("GET /v1/catalog/node/{node...}", s.routed(a.catalogNode))
	// Answered by every agent from its own configuration: one datacenter.
	m.HandleFunc("GET /v1/catalog/datacenters", a.catalogDatacenters)
	m.HandleFunc("PUT /v1/catalog/register", s.routed(a.catalogRegister))
	m.HandleFunc("PUT /v1/catalog/deregister", s.routed(a.catalogDeregister))

	m.HandleFunc("GET /v1/health/service/{name...}", s.routed(a.healthService))
	m.HandleFunc("GET /v1/health/checks/{name...}", s.routed(a.healthChecks))
	m.HandleFunc("GET /v1/health/node/{node...}", s.routed(a.healthNode))
	m.HandleFunc("GET /v1/health/state/{state...}", s.routed(a.healthState))
	s.healthWatchRoutes(a)
}

// Blocking specs of the catalog reads.

func serviceWatch(st *kvstore.StateStore, name string) watchSpec {
	return watchSpec{
		index: func() uint64 { return st.ServiceIndex(name) },
		wait: func(ctx context.Context, min uint64) (uint64, error) {
			return st.WaitService(ctx, name, min)
		},
	}
}

func servicesWatch(st *kvstore.StateStore) watchSpec {
	return watchSpec{index: st.ServicesIndex, wait: st.WaitServices}
}

func nodesWatch(st *kvstore.StateStore) watchSpec {
	return watchSpec{index: st.NodesIndex, wait: st.WaitNodes}
}

func nodeWatch(st *kvstore.StateStore, name string) watchSpec {
	return watchSpec{
		index: func() uint64 { return st.NodeIndex(name) },
		wait: func(ctx context.Context, min uint64) (uint64, error) {
			return st.WaitNode(ctx, name, min)
		},
	}
}

func checksInStateWatch(st *kvstore.StateStore, state string) watchSpec {
	return watchSpec{
		index: func() uint64 { return st.ChecksInStateIndex(state) },
		wait: func(ctx context.Context, min uint64) (uint64, error) {
			return st.WaitChecksInState(ctx, state, min)
		},
	}
}

// read serves one catalog read: the agent's store, the read options, the
// leadership check and blocking on watch, then get's result (never a JSON
// null unless get returns one on purpose) with get's index in the headers.
func (a *catalogAPI) read(w http.ResponseWriter, r *http.Request, watch func(*kvstore.StateStore) watchSpec, get func(*kvstore.StateStore) (any, uint64)) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	q := r.URL.Query()
	filter, rerr := parseFilter(q)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	o, rerr := parseReadOptions(q)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	state := st.State()
	if !a.prepareRead(w, r, st, o, watch(state)) {
		return
	}
	v, idx := get(state)
	// /v1/catalog/services filters its instances itself (its result, tags
	// per name, has nothing to select on).
	if _, perName := v.(map[string][]string); !perName {
		if v, rerr = filter.apply(v); rerr != nil {
			writeRequestError(w, rerr)
			return
		}
	}
	setReadMeta(w, st, o.mode, idx)
	writeJSON(w, r, v)
}

// parseNodeMeta reads the repeatable ?node-meta=key:value filter; a pair
// without a colon filters on an empty value, as in Consul. nil when absent.
func parseNodeMeta(q url.Values) map[string]string {
	pairs := q["node-meta"]
	if len(pairs) == 0 {
		return nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, ":")
		out[k] = v
	}
	return out
}

func metaMatches(meta, filter map[string]string) bool {
	for k, v := range filter {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Consul's JSON shapes. Maps and lists are never null, as in Consul's
// answers (and so clients in any language can iterate them).

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type weightsJSON struct {
	Passing int
	Warning int
}

// agentServiceJSON is Consul's AgentService, as /v1/catalog/node and
// /v1/health/service show a service.
type agentServiceJSON struct {
	Kind              string `json:",omitempty"`
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	TaggedAddresses   map[string]kvstore.ServiceAddress `json:",omitempty"`
	Weights           weightsJSON
	EnableTagOverride bool
	Proxy             json.RawMessage `json:",omitempty"`
	CreateIndex       uint64
	ModifyIndex       uint64
}

// catalogServiceJSON is one flat entry of /v1/catalog/service.
type catalogServiceJSON struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]kvstore.ServiceAddress `json:",omitempty"`
	ServiceWeights           weightsJSON
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	ServiceProxy             json.RawMessage `json:",omitempty"`
	CreateIndex              uint64
	ModifyIndex              uint64
}

type healthCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Definition  json.RawMessage
	CreateIndex uint64
	ModifyIndex uint64
}

func strMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func strList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// rawObject returns stored opaque JSON for output, or def when there is
// none (or, defensively, when it is not valid JSON).
func rawObject(b []byte, def json.RawMessage) json.RawMessage {
	if len(b) == 0 || !json.Valid(b) {
		return def
	}
	return b
}

func toNodeJSON(n *kvstore.Node) nodeJSON {
	return nodeJSON{
		ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
		TaggedAddresses: strMap(n.TaggedAddresses), Meta: strMap(n.Meta),
		CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex,
	}
}

func toAgentServiceJSON(s *kvstore.NodeService) agentServiceJSON {
	return agentServiceJSON{
		Kind: s.Kind, ID: s.ID, Service: s.Service, Tags: strList(s.Tags), Meta: strMap(s.Meta),
		Port: s.Port, Address: s.Address, TaggedAddresses: s.TaggedAddresses,
		Weights:           weightsJSON{s.Weights.Passing, s.Weights.Warning},
		EnableTagOverride: s.EnableTagOverride, Proxy: rawObject(s.Proxy, nil),
		CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
}

func toCatalogServiceJSON(sn *kvstore.ServiceNode) catalogServiceJSON {
	n, s := sn.Node, sn.Service
	return catalogServiceJSON{
		ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
		TaggedAddresses: strMap(n.TaggedAddresses), NodeMeta: strMap(n.Meta),
		ServiceKind: s.Kind, ServiceID: s.ID, ServiceName: s.Service, ServiceTags: strList(s.Tags),
		ServiceAddress: s.Address, ServiceTaggedAddresses: s.TaggedAddresses,
		ServiceWeights: weightsJSON{s.Weights.Passing, s.Weights.Warning},
		ServiceMeta:    strMap(s.Meta), ServicePort: s.Port, ServiceEnableTagOverride: s.EnableTagOverride,
		ServiceProxy: rawObject(s.Proxy, nil), CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
}

var emptyObject = json.RawMessage("{}")

func toHealthCheckJSON(c *kvstore.HealthCheck) healthCheckJSON {
	return healthCheckJSON{
		Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
		ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: strList(c.ServiceTags), Type: c.Type,
		Definition: rawObject(c.Definition, emptyObject), CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex,
	}
}

func toHealthChecksJSON(in []*kvstore.HealthCheck) []healthCheckJSON {
	out := make([]healthCheckJSON, len(in))
	for i, c := range in {
		out[i] = toHealthCheckJSON(c)
	}
	return out
}

// Reads.

func (a *catalogAPI) catalogServices(w http.ResponseWriter, r *http.Request) {
	meta := parseNodeMeta(r.URL.Query())
	filter, _ := parseFilter(r.URL.Query()) // read reports a bad one
	a.read(w, r, servicesWatch, func(st *kvstore.StateStore) (any, uint64) {
		if filter != nil {
			return servicesMatching(st, meta, filter)
		}
		if meta != nil {
			return st.ServicesByNodeMeta(meta)
		}
		return st.Services()
	})
}

// servicesMatching is /v1/catalog/services with ?filter: the names and
// tags of the instances (in /v1/catalog/service's shape, as Consul filters
// them) that match, and ?node-meta. An expression that does not fit the
// instances matches none.
func servicesMatching(st *kvstore.StateStore, meta map[string]string, filter *readFilter) (map[string][]string, uint64) {
	names, idx := st.Services()
	out := map[string][]string{}
	for name := range names {
		sns, _ := st.ServiceNodes(name, nil)
		items := make([]catalogServiceJSON, 0, len(sns))
		for _, sn := range sns {
			if meta == nil || metaMatches(sn.Node.Meta, meta) {
				items = append(items, toCatalogServiceJSON(sn))
			}
		}
		kept, rerr := filter.apply(items)
		if rerr != nil {
			continue
		}
		for _, it := range kept.([]catalogServiceJSON) {
			tags := out[it.ServiceName]
			if tags == nil {
				tags = []string{}
			}
			for _, t := range it.ServiceTags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
			out[it.ServiceName] = tags
		}
	}
	return out, idx
}

func (a *catalogAPI) catalogService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" {
		Error(w, http.StatusBadRequest, "Missing service name: GET /v1/catalog/service/<name>")
		return
	}
	q := r.URL.Query()
	tags, meta := q["tag"], parseNodeMeta(q)
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return serviceWatch(st, name) }, func(st *kvstore.StateStore) (any, uint64) {
		sns, idx := st.ServiceNodes(name, tags)
		out := make([]catalogServiceJSON, 0, len(sns))
		for _, sn := range sns {
			if meta == nil || metaMatches(sn.Node.Meta, meta) {
				out = append(out, toCatalogServiceJSON(sn))
			}
		}
		return out, idx
	})
}

func (a *catalogAPI) catalogNodes(w http.ResponseWriter, r *http.Request) {
	meta := parseNodeMeta(r.URL.Query())
	a.read(w, r, nodesWatch, func(st *kvstore.StateStore) (any, uint64) {
		nodes, idx := st.Nodes()
		out := make([]nodeJSON, 0, len(nodes))
		for _, n := range nodes {
			if meta == nil || metaMatches(n.Meta, meta) {
				out = append(out, toNodeJSON(n))
			}
		}
		return out, idx
	})
}

// catalogNode answers {"Node": {...}, "Services": {"id": {...}}}, or null
// for an unknown node, as Consul does.
func (a *catalogAPI) catalogNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if node == "" {
		Error(w, http.StatusBadRequest, "Missing node name: GET /v1/catalog/node/<node>")
		return
	}
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return nodeWatch(st, node) }, func(st *kvstore.StateStore) (any, uint64) {
		ns, idx := st.Node(node)
		if ns == nil {
			return nil, idx
		}
		out := struct {
			Node     nodeJSON
			Services map[string]agentServiceJSON
		}{toNodeJSON(ns.Node), make(map[string]agentServiceJSON, len(ns.Services))}
		for _, s := range ns.Services {
			out.Services[s.ID] = toAgentServiceJSON(s)
		}
		return out, idx
	})
}

func (a *catalogAPI) catalogDatacenters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, []string{a.s.cfg.Agent.Self().Datacenter})
}

// Writes.

// registerBody is Consul's catalog registration (api.CatalogRegistration).
// Fields the Go client sends that we do not keep (Partition, Locality,
// a service's ContentHash, ...) are ignored.
type registerBody struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	Service         *registerServiceBody
	Check           *registerCheckBody
	Checks          []*registerCheckBody
	SkipNodeUpdate  bool
}

type registerServiceBody struct {
	Kind              string
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]kvstore.ServiceAddress
	Meta              map[string]string
	Port              int
	Weights           *kvstore.Weights
	EnableTagOverride bool
	Proxy             json.RawMessage
}

type registerCheckBody struct {
	Node       string
	CheckID    string
	Name       string
	Status     string
	Notes      string
	Output     string
	ServiceID  string
	Type       string
	Definition json.RawMessage
}

// decodeRegistration parses and checks a registration body. dc is this
// agent's datacenter: a registration for another one has no path there.
func decodeRegistration(body []byte, dc string) (*kvstore.CatalogRegistration, *requestError) {
	var in registerBody
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("Request decode failed: %v", err)
	}
	if in.Datacenter != "" && in.Datacenter != dc {
		return nil, &requestError{code: http.StatusInternalServerError, msg: "No path to datacenter"}
	}
	if in.Node == "" {
		return nil, badRequest(`Missing node name: the body needs a "Node"`)
	}
	if in.Address == "" && !in.SkipNodeUpdate {
		return nil, badRequest(`Missing node address: the body needs an "Address" unless "SkipNodeUpdate" is true`)
	}
	if in.ID != "" && !isUUID(in.ID) {
		return nil, badRequest(`Invalid node ID %q ("ID"): must be a UUID`, in.ID)
	}
	reg := &kvstore.CatalogRegistration{
		Node: kvstore.Node{ID: in.ID, Node: in.Node, Address: in.Address, Datacenter: dc,
			TaggedAddresses: in.TaggedAddresses, Meta: in.NodeMeta},
		SkipNodeUpdate: in.SkipNodeUpdate,
	}
	if s := in.Service; s != nil {
		if s.Service == "" {
			return nil, badRequest(`Missing service name: "Service.Service" is required`)
		}
		if s.Port < 0 || s.Port > 65535 {
			return nil, badRequest(`Invalid service port %d ("Service.Port"): want 0 to 65535`, s.Port)
		}
		proxy, rerr := jsonObject(s.Proxy, "Service.Proxy")
		if rerr != nil {
			return nil, rerr
		}
		svc := &kvstore.NodeService{
			ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address, TaggedAddresses: s.TaggedAddresses,
			Meta: s.Meta, Port: s.Port, Kind: s.Kind, Proxy: proxy, EnableTagOverride: s.EnableTagOverride,
			Weights: kvstore.Weights{Passing: 1, Warning: 1},
		}
		// The Go client always sends Weights; all zero means unset.
		if w := s.Weights; w != nil && *w != (kvstore.Weights{}) {
			if w.Passing < 0 || w.Warning < 0 {
				return nil, badRequest(`Invalid service weights ("Service.Weights"): Passing and Warning must not be negative`)
			}
			svc.Weights = *w
		}
		reg.Service = svc
	}
	type namedCheck struct {
		field string
		c     *registerCheckBody
	}
	var checks []namedCheck
	if in.Check != nil {
		checks = append(checks, namedCheck{"Check", in.Check})
	}
	for i, c := range in.Checks {
		if c != nil {
			checks = append(checks, namedCheck{fmt.Sprintf("Checks[%d]", i), c})
		}
	}
	for _, nc := range checks {
		c, f := nc.c, nc.field
		id := c.CheckID
		if id == "" {
			id = c.Name
		}
		if id == "" {
			return nil, badRequest(`Missing check ID: %q needs a "CheckID" or a "Name"`, f)
		}
		if c.Node != "" && !strings.EqualFold(c.Node, in.Node) {
			return nil, badRequest(`Invalid check %q: its node %q (%s.Node) is not the node being registered, %q`, id, c.Node, f, in.Node)
		}
		switch c.Status {
		case "", kvstore.HealthPassing, kvstore.HealthWarning, kvstore.HealthCritical:
		default:
			return nil, badRequest(`Invalid check status %q for check %q (%s.Status): want "passing", "warning" or "critical"`, c.Status, id, f)
		}
		def, rerr := jsonObject(c.Definition, f+".Definition")
		if rerr != nil {
			return nil, rerr
		}
		reg.Checks = append(reg.Checks, &kvstore.HealthCheck{
			CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
			ServiceID: c.ServiceID, Type: c.Type, Definition: compactDefinition(def),
		})
	}
	return reg, nil
}

// jsonObject returns a JSON object given for an opaque field, nil for
// none or null, and an error naming the field for anything else.
func jsonObject(raw json.RawMessage, field string) ([]byte, *requestError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, badRequest("Invalid %q: want a JSON object", field)
	}
	return raw, nil
}

// compactDefinition drops the zero-valued fields of a check definition
// (the Go client sends every field, "0s" durations included), so an empty
// definition takes no room in the store; nil when nothing is left.
func compactDefinition(def []byte) []byte {
	if def == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(def, &m); err != nil {
		return def
	}
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if x == "" || x == "0s" {
				delete(m, k)
			}
		case bool:
			if !x {
				delete(m, k)
			}
		case float64:
			if x == 0 {
				delete(m, k)
			}
		case map[string]any:
			if len(x) == 0 {
				delete(m, k)
			}
		case []any:
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
	if len(m) == 0 {
		return nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return def
	}
	return out
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func (a *catalogAPI) catalogRegister(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	body, ok := a.catalogBody(w, r)
	if !ok {
		return
	}
	reg, rerr := decodeRegistration(body, a.s.cfg.Agent.Self().Datacenter)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	a.apply(w, r, st, &kvstore.Command{Type: kvstore.CmdCatalogRegister, Register: reg}, body)
}

// deregisterBody is Consul's api.CatalogDeregistration.
type deregisterBody struct {
	Node       string
	Datacenter string
	ServiceID  string
	CheckID    string
}

func (a *catalogAPI) catalogDeregister(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	body, ok := a.catalogBody(w, r)
	if !ok {
		return
	}
	var in deregisterBody
	if err := json.Unmarshal(body, &in); err != nil {
		Error(w, http.StatusBadRequest, "Request decode failed: %v", err)
		return
	}
	if in.Datacenter != "" && in.Datacenter != a.s.cfg.Agent.Self().Datacenter {
		Error(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}
	if in.Node == "" {
		Error(w, http.StatusBadRequest, `Missing node name: the body needs a "Node"`)
		return
	}
	cmd := &kvstore.Command{Type: kvstore.CmdCatalogDeregister, Deregister: &kvstore.CatalogDeregistration{
		Node: in.Node, ServiceID: in.ServiceID, CheckID: in.CheckID}}
	a.apply(w, r, st, cmd, body)
}

// catalogBody reads a write's body, answering the client itself when it
// is missing or too large.
func (a *catalogAPI) catalogBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, ok, err := readBody(r, maxCatalogBody)
	switch {
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the body: %v", err)
		return nil, false
	case !ok:
		Error(w, http.StatusRequestEntityTooLarge, "Request body too large: at most %d bytes", maxCatalogBody)
		return nil, false
	case len(bytes.TrimSpace(body)) == 0:
		Error(w, http.StatusBadRequest, "Missing request body: a JSON object is required")
		return nil, false
	}
	return body, true
}

// apply proposes a catalog command and answers true, as Consul does, or
// the error: the store's own validation and the registration's relations
// to what is stored (a check of an unknown service, a missing node) are
// the client's mistakes.
func (a *catalogAPI) apply(w http.ResponseWriter, r *http.Request, st *kvstore.Store, cmd *kvstore.Command, body []byte) {
	if err := cmd.Validate(); err != nil {
		a.storeError(w, r, err, body)
		return
	}
	_, err := st.Apply(r.Context(), cmd)
	switch {
	case err == nil:
		writeJSON(w, r, true)
	case errors.Is(err, kvstore.ErrUnknownService), errors.Is(err, kvstore.ErrMissingNode):
		Error(w, http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "kvstore: apply "+cmd.Type.String()+": "))
	case errors.Is(err, kvstore.ErrNodeConflict):
		Error(w, http.StatusConflict, "%s", strings.TrimPrefix(err.Error(), "kvstore: apply "+cmd.Type.String()+": "))
	default:
		a.storeError(w, r, err, body)
	}
}

// parseBoolParam reads a Consul-style boolean flag: absent is false,
// present without a value is true, otherwise strconv.ParseBool decides.
func parseBoolParam(q url.Values, name string) (bool, *requestError) {
	vs, ok := q[name]
	if !ok {
		return false, nil
	}
	if len(vs) == 0 || vs[0] == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, badRequest("Invalid value for ?%s: %q: want true or false", name, vs[0])
	}
	return b, nil
}
