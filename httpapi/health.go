package httpapi

import (
	"net/http"
	"strings"

	"github.com/outrigger/outrigger/kvstore"
)

// serviceEntryJSON is one entry of /v1/health/service: an instance with
// its node and checks (the node-level ones, serfHealth among them,
// included).
type serviceEntryJSON struct {
	Node    nodeJSON
	Service agentServiceJSON
	Checks  []healthCheckJSON
}

// healthService answers /v1/health/service/:name. ?tag (repeatable) keeps
// instances with every tag; ?passing keeps those whose every check passes
// (warning is not passing); ?node-meta filters on the node's metadata.
// Prometheus and Traefik call it without ?passing and aggregate the
// checks themselves.
func (a *catalogAPI) healthService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" {
		Error(w, http.StatusBadRequest, "Missing service name: GET /v1/health/service/<name>")
		return
	}
	q := r.URL.Query()
	passing, rerr := parseBoolParam(q, "passing")
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	tags, meta := q["tag"], parseNodeMeta(q)
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return serviceWatch(st, name) }, func(st *kvstore.StateStore) (any, uint64) {
		entries, idx := st.CheckServiceNodes(name, tags, passing)
		out := make([]serviceEntryJSON, 0, len(entries))
		for _, e := range entries {
			if meta != nil && !metaMatches(e.Node.Meta, meta) {
				continue
			}
			out = append(out, toServiceEntryJSON(e))
		}
		return out, idx
	})
}

// toServiceEntryJSON is one entry of /v1/health/service/:name (and of a
// health-watch answer).
func toServiceEntryJSON(e *kvstore.CheckServiceNode) serviceEntryJSON {
	return serviceEntryJSON{
		Node:    toNodeJSON(e.Node),
		Service: toAgentServiceJSON(e.Service),
		Checks:  toHealthChecksJSON(e.Checks),
	}
}

// healthChecks answers /v1/health/checks/:service: the checks of the
// service's instances.
func (a *catalogAPI) healthChecks(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" {
		Error(w, http.StatusBadRequest, "Missing service name: GET /v1/health/checks/<service>")
		return
	}
	meta := parseNodeMeta(r.URL.Query())
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return serviceWatch(st, name) }, func(st *kvstore.StateStore) (any, uint64) {
		checks, idx := st.ServiceChecks(name)
		return toHealthChecksJSON(filterChecksByNodeMeta(st, checks, meta)), idx
	})
}

// healthNode answers /v1/health/node/:node: every check of the node.
func (a *catalogAPI) healthNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if node == "" {
		Error(w, http.StatusBadRequest, "Missing node name: GET /v1/health/node/<node>")
		return
	}
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return nodeWatch(st, node) }, func(st *kvstore.StateStore) (any, uint64) {
		checks, idx := st.NodeChecks(node)
		return toHealthChecksJSON(checks), idx
	})
}

// healthState answers /v1/health/state/:state for any, passing, warning
// or critical. Traefik's watch mode blocks on /v1/health/state/any.
func (a *catalogAPI) healthState(w http.ResponseWriter, r *http.Request) {
	state := r.PathValue("state")
	switch state {
	case kvstore.HealthAny, kvstore.HealthPassing, kvstore.HealthWarning, kvstore.HealthCritical:
	case "":
		Error(w, http.StatusBadRequest, "Missing check state: GET /v1/health/state/<any|passing|warning|critical>")
		return
	default:
		Error(w, http.StatusBadRequest, "Invalid check state %q: want any, passing, warning or critical", state)
		return
	}
	meta := parseNodeMeta(r.URL.Query())
	a.read(w, r, func(st *kvstore.StateStore) watchSpec { return checksInStateWatch(st, state) }, func(st *kvstore.StateStore) (any, uint64) {
		checks, idx := st.ChecksInState(state)
		return toHealthChecksJSON(filterChecksByNodeMeta(st, checks, meta)), idx
	})
}

// filterChecksByNodeMeta keeps the checks whose node's Meta matches meta
// (all of them when meta is nil).
func filterChecksByNodeMeta(st *kvstore.StateStore, checks []*kvstore.HealthCheck, meta map[string]string) []*kvstore.HealthCheck {
	if meta == nil {
		return checks
	}
	nodes, _ := st.Nodes()
	match := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		match[strings.ToLower(n.Node)] = metaMatches(n.Meta, meta)
	}
	out := checks[:0:0]
	for _, c := range checks {
		if match[strings.ToLower(c.Node)] {
			out = append(out, c)
		}
	}
	return out
}
