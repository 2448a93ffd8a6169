package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/health"
)

// LocalAgent is what the endpoints of the agent's own services and checks
// need: /v1/agent/service/..., /v1/agent/check/..., /v1/agent/services,
// /v1/agent/checks and the maintenance switches. Config.Agent provides
// them when it also implements LocalAgent (the real agent does); with an
// Agent that does not, these endpoints are not served.
//
// Reads and maintenance go to the LocalState directly; registrations go
// through the agent, which keeps the LocalState and the running health
// checks in step.
type LocalAgent interface {
	// LocalState holds the services and checks the agent owns.
	LocalState() *catalog.LocalState
	// RegisterService adds or replaces a service with its checks and
	// starts the checks. Errors for a bad definition wrap
	// catalog.ErrInvalidDefinition or health.ErrInvalidDefinition.
	RegisterService(def *catalog.ServiceDefinition, replaceExistingChecks bool) error
	// DeregisterService removes a service and its checks; an unknown ID
	// wraps catalog.ErrUnknownService.
	DeregisterService(id string) error
	// RegisterCheck adds or replaces a check and starts it; a ServiceID
	// the agent does not have wraps catalog.ErrUnknownService.
	RegisterCheck(def health.CheckDefinition) error
	// DeregisterCheck removes a check; an unknown ID wraps
	// catalog.ErrUnknownCheck.
	DeregisterCheck(id string) error
	// UpdateTTL sets a TTL check's status and output; an unknown ID wraps
	// catalog.ErrUnknownCheck, another kind of check health.ErrNotTTL.
	UpdateTTL(id, status, output string) error
}

// maxAgentBody bounds a registration body.
const maxAgentBody = 1 << 20

// localAPI serves the agent's own services and checks. Nothing here is
// forwarded: the agent that owns a service answers for it, and
// anti-entropy carries the changes to the servers.
type localAPI struct {
	s *Server
	a LocalAgent
}

// localRoutes registers the endpoints of the agent's own services and
// checks, when the agent has them.
func (s *Server) localRoutes() {
	la, ok := s.cfg.Agent.(LocalAgent)
	if !ok {
		return
	}
	h := &localAPI{s: s, a: la}
	m := s.mux
	m.HandleFunc("GET /v1/agent/services", h.services)
	m.HandleFunc("GET /v1/agent/service/{id...}", h.service)
	m.HandleFunc("GET /v1/agent/checks", h.checks)
	m.HandleFunc("PUT /v1/agent/service/register", h.serviceRegister)
	m.HandleFunc("PUT /v1/agent/service/deregister/{id...}", h.serviceDeregister)
	m.HandleFunc("PUT /v1/agent/check/register", h.checkRegister)
	m.HandleFunc("PUT /v1/agent/check/deregister/{id...}", h.checkDeregister)
	m.HandleFunc("PUT /v1/agent/check/pass/{id...}", h.checkTTL(health.StatusPassing))
	m.HandleFunc("PUT /v1/agent/check/warn/{id...}", h.checkTTL(health.StatusWarning))
	m.HandleFunc("PUT /v1/agent/check/fail/{id...}", h.checkTTL(health.StatusCritical))
	m.HandleFunc("PUT /v1/agent/check/update/{id...}", h.checkUpdate)
	m.HandleFunc("PUT /v1/agent/maintenance", h.nodeMaintenance)
	m.HandleFunc("PUT /v1/agent/service/maintenance/{id...}", h.serviceMaintenance)
}

// Consul's AgentService and AgentCheck shapes. Lists and maps are never
// null.

type localServiceJSON struct {
	Kind              string `json:",omitempty"`
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	TaggedAddresses   map[string]catalog.ServiceAddress `json:",omitempty"`
	Weights           catalog.Weights
	EnableTagOverride bool
	Proxy             json.RawMessage `json:",omitempty"`
	ContentHash       string          `json:",omitempty"`
	Datacenter        string
}

type localCheckJSON struct {
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
	Interval    string
	Timeout     string
	ExposedPort int
	Definition  json.RawMessage
}

func (h *localAPI) serviceJSON(svc catalog.Service) localServiceJSON {
	return localServiceJSON{
		Kind: svc.Kind, ID: svc.ID, Service: svc.Service, Tags: strList(svc.Tags), Meta: strMap(svc.Meta),
		Port: svc.Port, Address: svc.Address, TaggedAddresses: svc.TaggedAddresses, Weights: svc.Weights,
		EnableTagOverride: svc.EnableTagOverride, Proxy: rawObject(svc.Proxy, nil),
		Datacenter: h.s.cfg.Agent.Self().Datacenter,
	}
}

func (h *localAPI) checkJSON(c catalog.HealthCheck, node string) localCheckJSON {
	def := rawObject(c.Definition, emptyObject)
	var timing struct{ Interval, Timeout string }
	_ = json.Unmarshal(def, &timing) // a non-string duration leaves them empty
	return localCheckJSON{
		Node: node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
		ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: strList(c.ServiceTags), Type: c.Type,
		Interval: timing.Interval, Timeout: timing.Timeout, Definition: def,
	}
}

// Reads.

func (h *localAPI) services(w http.ResponseWriter, r *http.Request) {
	filter, rerr := parseFilter(r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	h.hashRead(w, r, func() (any, *requestError) {
		out := map[string]localServiceJSON{}
		for _, svc := range h.a.LocalState().Services() {
			out[svc.ID] = h.serviceJSON(svc)
		}
		return filter.apply(out)
	}, nil)
}

func (h *localAPI) service(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.hashRead(w, r, func() (any, *requestError) {
		svc, ok := h.a.LocalState().Service(id)
		if !ok {
			return nil, &requestError{code: http.StatusNotFound, msg: "unknown service ID: " + id}
		}
		return h.serviceJSON(svc), nil
	}, func(v any, hash string) any {
		s := v.(localServiceJSON)
		s.ContentHash = hash
		return s
	})
}

func (h *localAPI) checks(w http.ResponseWriter, r *http.Request) {
	filter, rerr := parseFilter(r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	node := h.s.cfg.Agent.Self().NodeName
	h.hashRead(w, r, func() (any, *requestError) {
		out := map[string]localCheckJSON{}
		for _, c := range h.a.LocalState().Checks() {
			out[c.CheckID] = h.checkJSON(c, node)
		}
		return filter.apply(out)
	}, nil)
}

// hashRead answers a read of the agent's own state with Consul's
// content-hash blocking: the answer carries X-Consul-ContentHash, and a
// request with ?hash= equal to the current hash waits (up to ?wait, 5
// minutes by default, plus jitter) until the state changes. get renders
// the answer; withHash, if set, puts the hash into it.
func (h *localAPI) hashRead(w http.ResponseWriter, r *http.Request, get func() (any, *requestError), withHash func(any, string) any) {
	q := r.URL.Query()
	o, rerr := parseReadOptions(q)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	want := q.Get("hash")
	var changed <-chan struct{}
	var timeout <-chan time.Time
	if want != "" {
		ch, stop := h.a.LocalState().Watch()
		defer stop()
		changed = ch
		wait := o.wait
		if j := wait / jitterFraction; j > 0 {
			wait += rand.N(j)
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		v, rerr := get()
		if rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		hash := contentHash(v)
		if want == "" || hash != want || timeout == nil {
			if withHash != nil {
				v = withHash(v, hash)
			}
			w.Header().Set("X-Consul-ContentHash", hash)
			// The Consul Go client reads no header after a missing
			// X-Consul-LastContact; the agent answers itself.
			w.Header().Set("X-Consul-LastContact", "0")
			writeJSON(w, r, v)
			return
		}
		select {
		case <-changed:
		case <-timeout:
			timeout = nil // answer with the unchanged state
		case <-r.Context().Done():
			return
		}
	}
}

// contentHash is an opaque digest of an answer, for ?hash= blocking.
func contentHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Writes.

// body reads a registration body, answering the client itself when it is
// missing or too large.
func (h *localAPI) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, ok, err := readBody(r, maxAgentBody)
	switch {
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the body: %v", err)
		return nil, false
	case !ok:
		Error(w, http.StatusRequestEntityTooLarge, "Request body too large: at most %d bytes", maxAgentBody)
		return nil, false
	case len(bytes.TrimSpace(body)) == 0:
		Error(w, http.StatusBadRequest, "Missing request body: a JSON object is required")
		return nil, false
	}
	return body, true
}

func (h *localAPI) serviceRegister(w http.ResponseWriter, r *http.Request) {
	replace, rerr := parseBoolParam(r.URL.Query(), "replace-existing-checks")
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	def, err := catalog.ParseServiceDefinition(body)
	if err != nil {
		h.error(w, err, http.StatusBadRequest)
		return
	}
	if err := h.a.RegisterService(def, replace); err != nil {
		h.error(w, err, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *localAPI) serviceDeregister(w http.ResponseWriter, r *http.Request) {
	if err := h.a.DeregisterService(r.PathValue("id")); err != nil {
		h.error(w, err, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *localAPI) checkRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	def, err := health.ParseCheckDefinition(body)
	if err != nil {
		h.error(w, err, http.StatusBadRequest)
		return
	}
	if err := h.a.RegisterCheck(def); err != nil {
		// A ServiceID the agent does not have is a mistake in the body.
		h.error(w, err, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *localAPI) checkDeregister(w http.ResponseWriter, r *http.Request) {
	if err := h.a.DeregisterCheck(r.PathValue("id")); err != nil {
		h.error(w, err, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// checkTTL serves PUT /v1/agent/check/pass|warn|fail/:id?note=.
func (h *localAPI) checkTTL(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.a.UpdateTTL(r.PathValue("id"), status, r.URL.Query().Get("note")); err != nil {
			h.error(w, err, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

// checkUpdate serves PUT /v1/agent/check/update/:id with {"Status",
// "Output"}.
func (h *localAPI) checkUpdate(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	var in struct{ Status, Output string }
	if err := json.Unmarshal(body, &in); err != nil {
		Error(w, http.StatusBadRequest, "Request decode failed: %v", err)
		return
	}
	switch in.Status {
	case health.StatusPassing, health.StatusWarning, health.StatusCritical:
	default:
		Error(w, http.StatusBadRequest, `Invalid check status %q ("Status"): want "passing", "warning" or "critical"`, in.Status)
		return
	}
	if err := h.a.UpdateTTL(r.PathValue("id"), in.Status, in.Output); err != nil {
		h.error(w, err, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// maintenanceParams reads ?enable (required) and ?reason.
func maintenanceParams(w http.ResponseWriter, r *http.Request) (enable bool, reason string, ok bool) {
	q := r.URL.Query()
	if _, given := q["enable"]; !given || q.Get("enable") == "" {
		Error(w, http.StatusBadRequest, "Missing value for enable: ?enable=true or ?enable=false")
		return false, "", false
	}
	enable, rerr := parseBoolParam(q, "enable")
	if rerr != nil {
		writeRequestError(w, rerr)
		return false, "", false
	}
	return enable, q.Get("reason"), true
}

func (h *localAPI) nodeMaintenance(w http.ResponseWriter, r *http.Request) {
	enable, reason, ok := maintenanceParams(w, r)
	if !ok {
		return
	}
	if enable {
		h.a.LocalState().EnableNodeMaintenance(reason)
	} else {
		h.a.LocalState().DisableNodeMaintenance()
	}
	w.WriteHeader(http.StatusOK)
}

func (h *localAPI) serviceMaintenance(w http.ResponseWriter, r *http.Request) {
	enable, reason, ok := maintenanceParams(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	var err error
	if enable {
		err = h.a.LocalState().EnableServiceMaintenance(id, reason)
	} else {
		err = h.a.LocalState().DisableServiceMaintenance(id)
	}
	if err != nil {
		h.error(w, err, http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// error answers an error of the local agent: a bad definition or
// registration is 400, an unknown service or check is unknownCode (404
// when the path names it, 400 when the body does), anything else 500.
// The message is the error's own: it names the field and the value.
func (h *localAPI) error(w http.ResponseWriter, err error, unknownCode int) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, catalog.ErrUnknownService), errors.Is(err, catalog.ErrUnknownCheck),
		errors.Is(err, health.ErrUnknownCheck):
		code = unknownCode
	case errors.Is(err, catalog.ErrInvalidDefinition), errors.Is(err, health.ErrInvalidDefinition),
		errors.Is(err, catalog.ErrInvalidRegistration), errors.Is(err, catalog.ErrInvalidStatus),
		errors.Is(err, health.ErrInvalidStatus), errors.Is(err, health.ErrNotTTL),
		errors.Is(err, catalog.ErrUnsupported), errors.Is(err, health.ErrUnsupported):
		code = http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return
	}
	if code == http.StatusInternalServerError {
		h.s.log.Warn("agent request failed", "err", err)
	}
	Error(w, code, "%s", strings.TrimSpace(err.Error()))
}
