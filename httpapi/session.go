package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/outrigger/outrigger/kvstore"
)

// Session defaults, as Consul's.
const (
	defaultLockDelay = 15 * time.Second
	// serfHealth is the node check every session depends on by default.
	serfHealth = "serfHealth"
	// lockDelayThreshold: Consul reads a LockDelay below 1000 (a number,
	// or a duration string below 1µs) as seconds.
	lockDelayThreshold = 1000
	// maxSessionBody bounds a session create body.
	maxSessionBody = 64 << 10
)

// originNodeHeader carries, when a session create is forwarded, the node
// name of the agent the client called: a session belongs to that node by
// default, not to the server that applies it.
const originNodeHeader = "X-Outrigger-Origin-Node"

// sessionJSON is Consul's session entry.
type sessionJSON struct {
	ID        string
	Name      string
	Node      string
	LockDelay time.Duration // nanoseconds
	Behavior  kvstore.SessionBehavior
	// TTL is a duration string such as "30s", or "" without a TTL.
	TTL           string
	NodeChecks    []string
	ServiceChecks []kvstore.ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

func toSessionJSON(s *kvstore.Session) sessionJSON {
	checks := s.NodeChecks
	if checks == nil {
		checks = []string{}
	}
	var svc []kvstore.ServiceCheck
	if len(s.ServiceChecks) > 0 {
		svc = s.ServiceChecks
	}
	b := s.Behavior
	if b == "" {
		b = kvstore.BehaviorRelease
	}
	return sessionJSON{
		ID: s.ID, Name: s.Name, Node: s.Node, LockDelay: s.LockDelay, Behavior: b,
		TTL: formatTTL(s.TTL), NodeChecks: checks, ServiceChecks: svc,
		CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
}

func formatTTL(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

func toSessionsJSON(in []*kvstore.Session) []sessionJSON {
	out := make([]sessionJSON, len(in))
	for i, s := range in {
		out[i] = toSessionJSON(s)
	}
	return out
}

// sessionCreateJSON is the body of PUT /v1/session/create. Checks is
// Consul's deprecated spelling of NodeChecks.
type sessionCreateJSON struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	Checks        []string
	NodeChecks    []string
	ServiceChecks []kvstore.ServiceCheck
}

// decodeSessionCreate applies a create body over Consul's defaults
// (LockDelay 15s, NodeChecks ["serfHealth"], Behavior release, no TTL)
// and checks it. node is the default node name. The store checks the TTL
// against its bounds.
func decodeSessionCreate(body []byte, node string) (kvstore.Session, *requestError) {
	in := sessionCreateJSON{Checks: []string{serfHealth}, NodeChecks: []string{serfHealth}}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return kvstore.Session{}, badRequest("Request decode failed: %v", err)
		}
	}
	out := kvstore.Session{Name: in.Name, Node: in.Node, ServiceChecks: in.ServiceChecks, LockDelay: defaultLockDelay}
	if out.Node == "" {
		out.Node = node
	}
	if len(in.LockDelay) > 0 && string(in.LockDelay) != "null" {
		d, err := parseLockDelay(in.LockDelay)
		if err != nil {
			return out, err
		}
		out.LockDelay = d
	}
	switch b := kvstore.SessionBehavior(in.Behavior); b {
	case "", kvstore.BehaviorRelease:
		out.Behavior = kvstore.BehaviorRelease
	case kvstore.BehaviorDelete:
		out.Behavior = b
	default:
		return out, badRequest("Invalid Behavior setting %q: want %q or %q", in.Behavior, kvstore.BehaviorRelease, kvstore.BehaviorDelete)
	}
	if in.TTL != "" {
		ttl, err := time.ParseDuration(in.TTL)
		if err != nil {
			return out, badRequest("Session TTL %q invalid: %v", in.TTL, err)
		}
		if ttl < 0 || ttl > kvstore.MaxSessionTTL {
			return out, badRequest("Invalid Session TTL %q: must be at most %s", in.TTL, formatTTL(kvstore.MaxSessionTTL))
		}
		out.TTL = ttl
	}
	out.NodeChecks = mergeChecks(in.Checks, in.NodeChecks)
	return out, nil
}

// mergeChecks resolves the deprecated Checks against NodeChecks the way
// Consul does: an empty Checks means no node checks at all; Checks left
// at its default defers to NodeChecks; an empty NodeChecks drops Checks.
// What remains of both is the session's node checks.
func mergeChecks(checks, nodeChecks []string) []string {
	switch {
	case len(checks) == 0:
		return []string{}
	case len(checks) == 1 && checks[0] == serfHealth:
		checks = nil
	case len(nodeChecks) == 0:
		checks = nil
	}
	out := []string{}
	seen := map[string]bool{}
	for _, c := range append(append([]string(nil), nodeChecks...), checks...) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// parseLockDelay reads a LockDelay given as a duration string ("15s") or
// a number of nanoseconds; values below 1000 mean seconds, as in Consul.
func parseLockDelay(raw json.RawMessage) (time.Duration, *requestError) {
	var d time.Duration
	var str string
	var num float64
	switch {
	case json.Unmarshal(raw, &str) == nil:
		v, err := time.ParseDuration(str)
		if err != nil {
			return 0, badRequest("Invalid LockDelay %q: %v", str, err)
		}
		d = v
	case json.Unmarshal(raw, &num) == nil:
		if num < 0 || num > float64(kvstore.MaxLockDelay) {
			return 0, badRequest("Invalid LockDelay %s: must be between 0 and %s", raw, kvstore.MaxLockDelay)
		}
		d = time.Duration(num)
	default:
		return 0, badRequest("Invalid LockDelay %s: want a duration string such as \"15s\" or a number", raw)
	}
	if d >= 0 && d < lockDelayThreshold {
		d *= time.Second
	}
	if d < 0 || d > kvstore.MaxLockDelay {
		return 0, badRequest("Invalid LockDelay %s: must be between 0 and %s", d, kvstore.MaxLockDelay)
	}
	return d, nil
}

// withOriginNode records, on the first hop, which agent's node a session
// created through it belongs to by default.
func (a *kvAPI) withOriginNode(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(hopsHeader) == "" {
			r.Header.Set(originNodeHeader, a.s.cfg.Agent.Self().NodeName)
		}
		h(w, r)
	}
}

func (a *kvAPI) sessionCreate(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	body, ok, err := readBody(r, maxSessionBody)
	switch {
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the body: %v", err)
		return
	case !ok:
		Error(w, http.StatusRequestEntityTooLarge, "Request body too large: at most %d bytes", maxSessionBody)
		return
	}
	node := r.Header.Get(originNodeHeader)
	if node == "" {
		node = a.s.cfg.Agent.Self().NodeName
	}
	sess, rerr := decodeSessionCreate(body, node)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	res, err := st.Apply(r.Context(), &kvstore.Command{Type: kvstore.CmdSessionCreate, Session: sess})
	if err != nil {
		a.storeError(w, r, err, body)
		return
	}
	if res.Session == nil {
		Error(w, http.StatusInternalServerError, "session create: the store returned no session")
		return
	}
	writeJSON(w, r, struct{ ID string }{res.Session.ID})
}

func (a *kvAPI) sessionDestroy(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	id := r.PathValue("id")
	if id == "" {
		Error(w, http.StatusBadRequest, "Missing session")
		return
	}
	// Destroying an unknown session succeeds, as in Consul.
	if _, err := st.Apply(r.Context(), &kvstore.Command{Type: kvstore.CmdSessionDestroy, Session: kvstore.Session{ID: id}}); err != nil {
		a.storeError(w, r, err, nil)
		return
	}
	writeJSON(w, r, true)
}

func (a *kvAPI) sessionRenew(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	id := r.PathValue("id")
	if id == "" {
		Error(w, http.StatusBadRequest, "Missing session")
		return
	}
	sess, err := st.RenewSession(r.Context(), id)
	switch {
	case errors.Is(err, kvstore.ErrSessionNotFound):
		// The Go client reads a 404 as "the session is gone".
		Error(w, http.StatusNotFound, "Session id %q not found", id)
		return
	case err != nil:
		a.storeError(w, r, err, nil)
		return
	}
	writeJSON(w, r, []sessionJSON{toSessionJSON(sess)})
}

// sessionRead serves the session reads: consistency, blocking on the
// session table, headers, and always a JSON array.
func (a *kvAPI) sessionRead(w http.ResponseWriter, r *http.Request, get func(*kvstore.StateStore) ([]*kvstore.Session, uint64)) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	o, rerr := parseReadOptions(r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	state := st.State()
	if !a.prepareRead(w, r, st, o, sessionsWatch(state)) {
		return
	}
	sessions, idx := get(state)
	setReadMeta(w, st, o.mode, idx)
	writeJSON(w, r, toSessionsJSON(sessions))
}

func (a *kvAPI) sessionInfo(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" {
		Error(w, http.StatusBadRequest, "Missing session")
		return
	}
	a.sessionRead(w, r, func(st *kvstore.StateStore) ([]*kvstore.Session, uint64) {
		s, idx := st.Session(id)
		if s == nil {
			return nil, idx
		}
		return []*kvstore.Session{s}, idx
	})
}

func (a *kvAPI) sessionNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	if node == "" {
		Error(w, http.StatusBadRequest, "Missing node name")
		return
	}
	a.sessionRead(w, r, func(st *kvstore.StateStore) ([]*kvstore.Session, uint64) {
		return st.NodeSessions(node)
	})
}

func (a *kvAPI) sessionList(w http.ResponseWriter, r *http.Request) {
	a.sessionRead(w, r, (*kvstore.StateStore).Sessions)
}
