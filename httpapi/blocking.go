package httpapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/outrigger/outrigger/kvstore"
)

// Blocking-query limits, as in Consul.
const (
	// defaultWait is the wait of a blocking query without ?wait (or with a
	// wait of zero or less).
	defaultWait = 5 * time.Minute
	// maxWait caps ?wait.
	maxWait = 10 * time.Minute
	// jitterFraction: a blocking query waits up to wait/jitterFraction
	// longer, so watchers started together do not return together.
	jitterFraction = 16
	// verifyTimeout bounds one leadership confirmation.
	verifyTimeout = 10 * time.Second
)

// consistencyMode is a read's consistency, from ?stale and ?consistent.
type consistencyMode int

const (
	// modeDefault: the leader answers after confirming it still leads.
	modeDefault consistencyMode = iota
	// modeConsistent: as modeDefault; Consul confirms with a quorum only
	// here, we do for both so that a default read right after a failover
	// is not stale.
	modeConsistent
	// modeStale: any server answers from its own state, also without a
	// leader.
	modeStale
)

// String is the X-Consul-Effective-Consistency value.
func (m consistencyMode) String() string {
	switch m {
	case modeConsistent:
		return "consistent"
	case modeStale:
		return "stale"
	}
	return "leader"
}

// readOptions are the consistency and blocking parameters of a read.
type readOptions struct {
	mode consistencyMode
	// index is ?index: block while the result's index is at most this.
	// Zero does not block.
	index uint64
	// wait is ?wait resolved: defaultWait when absent or not positive,
	// at most maxWait. Jitter is added when blocking.
	wait time.Duration
}

// requestError is a client mistake: a status code and a message naming
// what was wrong.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) *requestError {
	return &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(format, args...)}
}

func writeRequestError(w http.ResponseWriter, e *requestError) {
	Error(w, e.code, "%s", e.msg)
}

// parseReadOptions reads ?stale, ?consistent, ?index and ?wait. Like
// Consul, a flag counts when present, whatever its value, and an empty
// ?index or ?wait is ignored.
func parseReadOptions(q url.Values) (readOptions, *requestError) {
	o := readOptions{wait: defaultWait}
	_, stale := q["stale"]
	_, consistent := q["consistent"]
	switch {
	case stale && consistent:
		return o, badRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
	case stale:
		o.mode = modeStale
	case consistent:
		o.mode = modeConsistent
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, badRequest("Invalid index %q: want a non-negative integer (the X-Consul-Index of an earlier response)", v)
		}
		o.index = n
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, badRequest("Invalid wait time %q: want a duration with a unit, e.g. 10s or 5m", v)
		}
		switch {
		case d <= 0:
			// Consul: a non-positive wait means the default.
		case d > maxWait:
			o.wait = maxWait
		default:
			o.wait = d
		}
	}
	return o, nil
}

// watchSpec is what a blocking read watches: the current index of its
// result, and a wait that returns once that index exceeds a minimum (only
// writes to the watched key, prefix or table wake it).
type watchSpec struct {
	index func() uint64
	wait  func(ctx context.Context, minIndex uint64) (uint64, error)
}

func keyWatch(st *kvstore.StateStore, key string) watchSpec {
	return watchSpec{
		index: func() uint64 { return st.KeyIndex(key) },
		wait: func(ctx context.Context, min uint64) (uint64, error) {
			return st.WaitKey(ctx, key, min)
		},
	}
}

func prefixWatch(st *kvstore.StateStore, prefix string) watchSpec {
	return watchSpec{
		index: func() uint64 { return st.PrefixIndex(prefix) },
		wait: func(ctx context.Context, min uint64) (uint64, error) {
			return st.WaitPrefix(ctx, prefix, min)
		},
	}
}

func sessionsWatch(st *kvstore.StateStore) watchSpec {
	return watchSpec{
		index: func() uint64 {
			// Session of any ID reports the session table's index.
			_, idx := st.Session("")
			return idx
		},
		wait: st.WaitSessions,
	}
}

// prepareRead runs the consistency and blocking part of a read. Unless the
// read is stale it confirms leadership (VerifyLeader: a quorum round that
// began after the request, and every earlier term's entries applied), so
// what the caller reads next is linearizable. With ?index it then waits
// until the watched index passes it or the wait (plus jitter) ends, and
// confirms leadership again if it waited. It returns false when it has
// answered the request itself (an error) or the client went away.
func (a *kvAPI) prepareRead(w http.ResponseWriter, r *http.Request, st *kvstore.Store, o readOptions, spec watchSpec) bool {
	if o.mode != modeStale {
		if err := verifyLeader(r.Context(), st); err != nil {
			a.storeError(w, r, err, nil)
			return false
		}
	}
	if o.index == 0 || spec.index() > o.index {
		return true
	}
	wait := o.wait
	if j := wait / jitterFraction; j > 0 {
		wait += rand.N(j)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	a.blocked.Inc()
	_, _ = spec.wait(ctx, o.index) // at the timeout: answer with the same index
	a.blocked.Dec()
	if r.Context().Err() != nil {
		return false
	}
	if o.mode != modeStale {
		// Leadership may have moved while we waited; what we hold could
		// then miss newer writes.
		if err := verifyLeader(r.Context(), st); err != nil {
			a.storeError(w, r, err, nil)
			return false
		}
	}
	return true
}

func verifyLeader(ctx context.Context, st *kvstore.Store) error {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	return st.VerifyLeader(ctx)
}

// setReadMeta sets the headers every read carries. The Consul Go client
// fails to parse a response without X-Consul-LastContact, so it is always
// set (0 on the leader).
func setReadMeta(w http.ResponseWriter, st *kvstore.Store, mode consistencyMode, index uint64) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	leader, _ := st.Leader()
	h.Set("X-Consul-KnownLeader", strconv.FormatBool(leader != ""))
	h.Set("X-Consul-LastContact", strconv.FormatInt(st.LastContact().Milliseconds(), 10))
	h.Set("X-Consul-Effective-Consistency", mode.String())
}
