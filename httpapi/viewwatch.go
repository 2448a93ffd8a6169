package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger/outrigger/kvstore"
)

// HealthWatchPath is the internal endpoint a catalog View uses to follow
// many services with one blocking request instead of one per service.
const HealthWatchPath = "/v1/internal/outrigger/health-watch"

// Limits of a health-watch request.
const (
	// maxHealthWatchBody bounds the request body: 100,000 services with
	// names of 40 bytes fit.
	maxHealthWatchBody = 8 << 20
	// maxHealthWatchServices bounds the services of one request.
	maxHealthWatchServices = 100_000
	// maxServiceNameLen bounds one service name.
	maxServiceNameLen = 512
)

// healthWatchRequest is the body of POST /v1/internal/outrigger/health-watch.
type healthWatchRequest struct {
	// Services maps each service name to the index the caller holds (the
	// Index of its last answer, 0 for none).
	Services map[string]uint64
	// Wait bounds the blocking ("60s"); empty means the default 5m, more
	// than 10m means 10m, as for ?wait.
	Wait string
}

// healthWatchService is one changed service of the answer: the entries
// /v1/health/service/:name returns, and their index.
type healthWatchService struct {
	Index   uint64
	Entries []serviceEntryJSON
}

type healthWatchResponse struct {
	// Services holds only the services whose index passed the caller's,
	// under the names the caller sent.
	Services map[string]healthWatchService
}

// parseHealthWatch reads and checks a health-watch body: a JSON object
// with Services (required, 1 to maxHealthWatchServices names, each
// non-empty and at most maxServiceNameLen bytes) and an optional Wait
// duration. Unknown fields are refused.
func parseHealthWatch(body []byte) (healthWatchRequest, time.Duration, *requestError) {
	var req healthWatchRequest
	bad := func(format string, args ...any) (healthWatchRequest, time.Duration, *requestError) {
		return healthWatchRequest{}, 0, badRequest("Invalid health-watch body: "+format, args...)
	}
	var raw struct {
		Services json.RawMessage
		Wait     json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field"); ok {
			return bad("unknown field%s (want Services and Wait)", msg)
		}
		return bad("%v (want {\"Services\": {\"name\": index, ...}, \"Wait\": \"60s\"})", err)
	}
	if dec.More() {
		return bad("data after the JSON object")
	}
	var services map[string]json.RawMessage
	if err := json.Unmarshal(raw.Services, &services); len(raw.Services) > 0 && err != nil {
		return bad("Services: want an object of service name → index, got %.40s", raw.Services)
	}
	if len(services) == 0 {
		return bad("Services: missing or empty (want {\"name\": index, ...})")
	}
	if len(services) > maxHealthWatchServices {
		return bad("Services: %d services, at most %d", len(services), maxHealthWatchServices)
	}
	req.Services = make(map[string]uint64, len(services))
	for name, v := range services {
		switch {
		case name == "":
			return bad("Services: empty service name")
		case len(name) > maxServiceNameLen:
			return bad("Services: service name %.40q... is %d bytes, at most %d", name, len(name), maxServiceNameLen)
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return bad("Services[%q]: index %.40s is not a non-negative integer", name, v)
		}
		req.Services[name] = n
	}
	wait := defaultWait
	if len(raw.Wait) > 0 && string(raw.Wait) != "null" {
		if err := json.Unmarshal(raw.Wait, &req.Wait); err != nil {
			return bad("Wait: want a duration string such as \"60s\", got %.40s", raw.Wait)
		}
	}
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		if err != nil {
			return bad("Wait: %q is not a duration with a unit, e.g. 10s or 5m", req.Wait)
		}
		switch {
		case d <= 0:
		case d > maxWait:
			wait = maxWait
		default:
			wait = d
		}
	}
	return req, wait, nil
}

// healthWatchMode routes a health-watch like a read: ?stale to any
// server, otherwise to the leader.
func healthWatchMode(r *http.Request) RouteMode {
	if _, ok := r.URL.Query()["stale"]; ok {
		return RouteAnyServer
	}
	return RouteLeader
}

// healthWatch answers POST /v1/internal/outrigger/health-watch: it blocks
// until the index of any listed service passes the one given for it (at
// once if one already has), or Wait (plus jitter) elapses, and returns the
// listed services whose index passed — with the entries of
// /v1/health/service/:name — and nothing for the others. X-Consul-Index
// is the highest index of the listed services; X-Consul-LastContact,
// KnownLeader and ?stale / ?consistent are as for any read.
func (a *catalogAPI) healthWatch(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	o, rerr := parseReadOptions(r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHealthWatchBody+1))
	if err != nil {
		Error(w, http.StatusBadRequest, "Reading the health-watch body: %v", err)
		return
	}
	if len(body) > maxHealthWatchBody {
		writeRequestError(w, tooLarge("Health-watch body larger than %d bytes", maxHealthWatchBody))
		return
	}
	req, wait, rerr := parseHealthWatch(body)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	if o.mode != modeStale {
		if err := verifyLeader(r.Context(), st); err != nil {
			a.storeError(w, r, err, nil)
			return
		}
	}
	state := st.State()
	names := make([]string, 0, len(req.Services))
	for n := range req.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	min := make([]uint64, len(names))
	for i, n := range names {
		min[i] = req.Services[n]
	}
	if !anyPassed(state, names, min) {
		if j := wait / jitterFraction; j > 0 {
			wait += rand.N(j)
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		a.blocked.Inc()
		_ = state.WaitServicesAny(ctx, names, min) // ends with ctx or a change
		a.blocked.Dec()
		cancel()
		if r.Context().Err() != nil {
			return
		}
		if o.mode != modeStale {
			if err := verifyLeader(r.Context(), st); err != nil {
				a.storeError(w, r, err, nil)
				return
			}
		}
	}
	var changed []changedService
	var top uint64
	for i, n := range names {
		idx := max(state.ServiceIndex(n), 1)
		if idx <= min[i] {
			top = max(top, idx)
			continue
		}
		e := a.entries.get(state, n, idx, a.s.healthWatchEncodings.Inc)
		top = max(top, e.idx)
		changed = append(changed, changedService{name: n, e: e})
	}
	setReadMeta(w, st, o.mode, top)
	w.Header().Set("X-Outrigger-Services-Changed", strconv.Itoa(len(changed)))
	writeHealthWatch(w, r, changed)
}

// anyPassed reports whether the index of some names[i] is above min[i].
// An unknown service has index 1, as /v1/health/service reports it.
func anyPassed(state *kvstore.StateStore, names []string, min []uint64) bool {
	for i, n := range names {
		if max(state.ServiceIndex(n), 1) > min[i] {
			return true
		}
	}
	return false
}

// healthWatchRoutes registers the health-watch endpoint.
func (s *Server) healthWatchRoutes(a *catalogAPI) {
	s.mux.HandleFunc("POST "+HealthWatchPath, s.routedAs(healthWatchMode, a.healthWatch))
}
