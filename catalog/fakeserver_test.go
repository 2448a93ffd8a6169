package catalog

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeServers is an in-memory stand-in for the servers' HTTP API: the
// handful of catalog and health endpoints anti-entropy and the view use,
// with Consul's shapes and real blocking-query semantics (per-service
// index, ?index and ?wait). down makes every request fail, as if the
// servers were gone; BaseURL then points at a closed port so requests
// are refused at the TCP level.
type fakeServers struct {
	t   *testing.T
	srv *httptest.Server
	// deadAddr is a port nothing listens on.
	deadAddr string

	mu       sync.Mutex
	index    uint64
	nodes    map[string]Node                   // by fold(node)
	services map[string]map[string]Service     // fold(node) -> fold(id)
	checks   map[string]map[string]HealthCheck // fold(node) -> fold(id)
	svcIndex map[string]uint64                 // fold(service name) -> index
	changed  chan struct{}                     // closed and replaced on every write
	down     bool
	refuse   map[string]bool   // service names whose registration gets a 400
	requests map[string]int    // "METHOD path" -> count
	inflight map[string]int    // blocking reads waiting, by path
	writes   []RegisterRequest // every accepted registration
	queries  map[string]string // path -> last raw query
	headers  http.Header       // of the last request
}

func newFakeServers(t *testing.T) *fakeServers {
	f := &fakeServers{
		t:        t,
		nodes:    map[string]Node{},
		services: map[string]map[string]Service{},
		checks:   map[string]map[string]HealthCheck{},
		svcIndex: map[string]uint64{},
		changed:  make(chan struct{}),
		refuse:   map[string]bool{},
		requests: map[string]int{},
		inflight: map[string]int{},
		queries:  map[string]string{},
		index:    10,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/catalog/register", f.register)
	mux.HandleFunc("PUT /v1/catalog/deregister", f.deregister)
	mux.HandleFunc("GET /v1/catalog/node/{node}", f.catalogNode)
	mux.HandleFunc("GET /v1/health/node/{node}", f.healthNode)
	mux.HandleFunc("GET /v1/health/service/{name}", f.healthService)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests[r.Method+" "+r.URL.Path]++
		f.queries[r.URL.Path] = r.URL.RawQuery
		f.headers = r.Header.Clone()
		down := f.down
		f.mu.Unlock()
		if down {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.deadAddr = ln.Addr().String()
	ln.Close()
	return f
}

// client returns an HTTPClient for the fake: refused connections while
// down.
func (f *fakeServers) client() *HTTPClient {
	return &HTTPClient{BaseURL: func(bool) (string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			return "http://" + f.deadAddr, nil
		}
		return f.srv.URL, nil
	}}
}

func (f *fakeServers) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	f.broadcastLocked() // waiting blocking reads fail, as their server went away
}

func (f *fakeServers) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[key]
}

func (f *fakeServers) query(path string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[path]
}

func (f *fakeServers) waiting(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight[path]
}

func (f *fakeServers) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// touchNodeLocked moves the index of every service on node (and of the
// named extra services).
func (f *fakeServers) touchNodeLocked(nk string, extra ...string) {
	for _, s := range f.services[nk] {
		f.svcIndex[fold(s.Service)] = f.index
	}
	for _, n := range extra {
		f.svcIndex[fold(n)] = f.index
	}
}

func (f *fakeServers) register(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Service != nil && f.refuse[req.Service.Service] {
		http.Error(w, "refused by test", http.StatusBadRequest)
		return
	}
	nk := fold(req.Node)
	if req.Node == "" {
		http.Error(w, "Must provide node", http.StatusBadRequest)
		return
	}
	if _, ok := f.nodes[nk]; !ok && req.SkipNodeUpdate {
		http.Error(w, "node does not exist", http.StatusBadRequest)
		return
	}
	f.index++
	var names []string
	if !req.SkipNodeUpdate {
		f.nodes[nk] = Node{ID: req.ID, Node: req.Node, Address: req.Address, Datacenter: req.Datacenter,
			TaggedAddresses: req.TaggedAddresses, Meta: req.NodeMeta, CreateIndex: f.index, ModifyIndex: f.index}
	}
	if f.services[nk] == nil {
		f.services[nk] = map[string]Service{}
		f.checks[nk] = map[string]HealthCheck{}
	}
	if s := req.Service; s != nil {
		if old, ok := f.services[nk][fold(s.ID)]; ok {
			names = append(names, old.Service)
		}
		sc := *s
		sc.CreateIndex, sc.ModifyIndex = f.index, f.index
		f.services[nk][fold(s.ID)] = sc
		names = append(names, s.Service)
	}
	for _, c := range req.Checks {
		if c.ServiceID != "" {
			s, ok := f.services[nk][fold(c.ServiceID)]
			if !ok {
				http.Error(w, fmt.Sprintf("unknown service ID %q for check %q", c.ServiceID, c.CheckID), http.StatusBadRequest)
				return
			}
			c.ServiceName, c.ServiceTags = s.Service, s.Tags
			names = append(names, s.Service)
		}
		c.CreateIndex, c.ModifyIndex = f.index, f.index
		f.checks[nk][fold(c.CheckID)] = c
	}
	f.touchNodeLocked(nk, names...)
	f.writes = append(f.writes, req)
	f.broadcastLocked()
	w.Write([]byte("true"))
}

func (f *fakeServers) deregister(w http.ResponseWriter, r *http.Request) {
	var req DeregisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deregisterLocked(req)
	w.Write([]byte("true"))
}

func (f *fakeServers) deregisterLocked(req DeregisterRequest) {
	nk := fold(req.Node)
	f.index++
	f.touchNodeLocked(nk)
	switch {
	case req.ServiceID == "" && req.CheckID == "":
		delete(f.nodes, nk)
		delete(f.services, nk)
		delete(f.checks, nk)
	default:
		if req.ServiceID != "" {
			delete(f.services[nk], fold(req.ServiceID))
			for k, c := range f.checks[nk] {
				if fold(c.ServiceID) == fold(req.ServiceID) {
					delete(f.checks[nk], k)
				}
			}
		}
		if req.CheckID != "" {
			delete(f.checks[nk], fold(req.CheckID))
		}
	}
	f.broadcastLocked()
}

func (f *fakeServers) catalogNode(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nk := fold(r.PathValue("node"))
	n, ok := f.nodes[nk]
	w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
	if !ok {
		w.Write([]byte("null"))
		return
	}
	out := struct {
		Node     Node
		Services map[string]Service
	}{n, map[string]Service{}}
	for _, s := range f.services[nk] {
		out.Services[s.ID] = s
	}
	json.NewEncoder(w).Encode(out)
}

func (f *fakeServers) healthNode(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []HealthCheck{}
	for _, c := range f.checks[fold(r.PathValue("node"))] {
		out = append(out, c)
	}
	json.NewEncoder(w).Encode(out)
}

// entriesLocked builds /v1/health/service/:name's answer.
func (f *fakeServers) entriesLocked(name string) []ServiceEntry {
	out := []ServiceEntry{}
	for _, nk := range slices.Sorted(maps.Keys(f.services)) {
		for _, id := range slices.Sorted(maps.Keys(f.services[nk])) {
			s := f.services[nk][id]
			if fold(s.Service) != fold(name) {
				continue
			}
			e := ServiceEntry{Node: f.nodes[nk], Service: s, Checks: []HealthCheck{}}
			for _, ck := range slices.Sorted(maps.Keys(f.checks[nk])) {
				c := f.checks[nk][ck]
				if c.ServiceID == "" || fold(c.ServiceID) == id {
					e.Checks = append(e.Checks, c)
				}
			}
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeServers) healthService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	minIndex, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait := 5 * time.Minute
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			http.Error(w, "bad wait", http.StatusBadRequest)
			return
		}
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	f.mu.Lock()
	f.inflight[r.URL.Path]++
	defer func() { f.inflight[r.URL.Path]--; f.mu.Unlock() }()
	for {
		if f.down {
			http.Error(w, "server went away", http.StatusServiceUnavailable)
			return
		}
		idx := max(f.svcIndex[fold(name)], 1)
		if minIndex == 0 || idx > minIndex {
			break
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
			f.mu.Lock()
			continue
		case <-deadline.C:
		case <-r.Context().Done():
		}
		f.mu.Lock()
		break
	}
	idx := max(f.svcIndex[fold(name)], 1)
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("X-Consul-LastContact", "7")
	w.Header().Set("X-Consul-KnownLeader", "true")
	json.NewEncoder(w).Encode(f.entriesLocked(name))
}

// put registers an instance directly, as another agent would.
func (f *fakeServers) put(node, addr string, svc Service, checks ...HealthCheck) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nk := fold(node)
	f.index++
	f.nodes[nk] = Node{Node: node, Address: addr, Datacenter: "dc1"}
	if f.services[nk] == nil {
		f.services[nk] = map[string]Service{}
		f.checks[nk] = map[string]HealthCheck{}
	}
	if svc.ID == "" {
		svc.ID = svc.Service
	}
	if svc.Service != "" {
		f.services[nk][fold(svc.ID)] = svc
	}
	for _, c := range checks {
		c.Node = node
		f.checks[nk][fold(c.CheckID)] = c
	}
	f.touchNodeLocked(nk, svc.Service)
	f.broadcastLocked()
}

func (f *fakeServers) remove(node, serviceID, checkID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deregisterLocked(DeregisterRequest{Node: node, ServiceID: serviceID, CheckID: checkID})
}

// resetIndex makes every index start over low, as a cluster rebuilt from
// scratch would.
func (f *fakeServers) resetIndex(to uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = to
	for k := range f.svcIndex {
		f.svcIndex[k] = to
	}
	f.broadcastLocked()
}

// service returns what the servers hold for one service ID of node.
func (f *fakeServers) service(node, id string) (Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[fold(node)][fold(id)]
	return s, ok
}

func (f *fakeServers) check(node, id string) (HealthCheck, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.checks[fold(node)][fold(id)]
	return c, ok
}

func (f *fakeServers) node(name string) (Node, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[fold(name)]
	return n, ok
}

func (f *fakeServers) registrations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes)
}
