package catalog

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// HealthWatchPath is the servers' internal endpoint that answers many
// services' health with one blocking request (httpapi.HealthWatchPath).
const HealthWatchPath = "/v1/internal/outrigger/health-watch"

// ErrHealthWatchUnsupported: the servers do not have the health-watch
// endpoint (an older version answered 404 or 405); the View then follows
// each service with its own blocking /v1/health/service read.
var ErrHealthWatchUnsupported = errors.New("servers do not support " + HealthWatchPath)

// ServiceHealthResult is one service of a MultiHealthClient answer.
type ServiceHealthResult struct {
	// Index is the service's index (X-Consul-Index of
	// /v1/health/service/:name).
	Index uint64
	// Entries are what /v1/health/service/:name returns.
	Entries []ServiceEntry
}

// MultiHealthClient is a HealthClient that can also follow many services
// with one blocking request. A View whose Client implements it holds one
// outstanding request for all its services instead of one per service.
type MultiHealthClient interface {
	HealthClient
	// ServicesHealth blocks until the index of some service passes the
	// one given for it (0: at once) or q.Wait passes, and returns the
	// services whose index passed, keyed by the names given. QueryMeta.Index
	// is the highest index of the services. It returns an error wrapping
	// ErrHealthWatchUnsupported if the servers lack the endpoint.
	ServicesHealth(ctx context.Context, services map[string]uint64, q QueryOptions) (map[string]ServiceHealthResult, QueryMeta, error)
}

// ServicesHealth implements MultiHealthClient with POST
// /v1/internal/outrigger/health-watch.
func (c *HTTPClient) ServicesHealth(ctx context.Context, services map[string]uint64, q QueryOptions) (map[string]ServiceHealthResult, QueryMeta, error) {
	v := url.Values{}
	if q.Stale {
		v.Set("stale", "")
	}
	var top uint64
	for _, i := range services {
		top = max(top, i)
	}
	if top > 0 {
		// Ignored by the servers; says "this request blocks" to
		// transports that bound the others (as for ?index reads).
		v.Set("index", strconv.FormatUint(top, 10))
	}
	body := struct {
		Services map[string]uint64
		Wait     string `json:",omitempty"`
	}{Services: services}
	if q.Wait > 0 {
		body.Wait = strconv.FormatInt(q.Wait.Milliseconds(), 10) + "ms"
	}
	var out struct {
		Services map[string]ServiceHealthResult
	}
	h, err := c.do(ctx, http.MethodPost, HealthWatchPath, v, body, q.Stale, &out)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusMethodNotAllowed) {
			return nil, QueryMeta{}, errors.Join(ErrHealthWatchUnsupported, err)
		}
		return nil, QueryMeta{}, err
	}
	if out.Services == nil {
		out.Services = map[string]ServiceHealthResult{}
	}
	return out.Services, parseQueryMeta(h), nil
}

var _ MultiHealthClient = (*HTTPClient)(nil)

// Multiplexing: one goroutine (viewMux.run) owns the requests. A new
// subscription goes to pending; a short request (every index 0, so the
// servers answer at once) fetches the pending ones, which then join the
// active set. One blocking request follows the active set with their
// indexes. When the active set grows while it waits, it is cancelled and
// re-issued with the new set, at most once per muxReissueMin, so that a
// burst of new names costs a few re-issues, not one per name. Expired
// subscriptions are dropped from the set at the next issue.

// muxReissueMin bounds how often the blocking request is cancelled and
// re-issued because the set of services grew.
var muxReissueMin = time.Second

type viewMux struct {
	v      *View
	client MultiHealthClient
	kick   chan struct{} // buffered 1: something was added to pending

	mu      sync.Mutex
	pending []*subscription
}

// muxCall is one request in flight.
type muxCall struct {
	subs   map[string]*subscription // by the name sent
	req    map[string]uint64
	cancel context.CancelFunc
	issued time.Time // real time: the servers' wait is real
	done   chan muxResult
	poll   bool // the blocking request (false: a fetch of new services)
}

type muxResult struct {
	res  map[string]ServiceHealthResult
	meta QueryMeta
	err  error
	took time.Duration
}

func newViewMux(v *View, c MultiHealthClient) *viewMux {
	return &viewMux{v: v, client: c, kick: make(chan struct{}, 1)}
}

// add queues a new subscription for its first fetch.
func (m *viewMux) add(s *subscription) {
	m.mu.Lock()
	m.pending = append(m.pending, s)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *viewMux) takePending() []*subscription {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pending
	m.pending = nil
	return p
}

// start issues a request for subs with the given indexes.
func (m *viewMux) start(subs map[string]*subscription, req map[string]uint64, poll bool) *muxCall {
	v := m.v
	wait := v.cfg.Wait
	ctx, cancel := context.WithTimeout(v.ctx, wait+wait/16+requestSlack)
	c := &muxCall{subs: subs, req: req, cancel: cancel, issued: time.Now(), done: make(chan muxResult, 1), poll: poll}
	q := QueryOptions{Wait: wait, Stale: !v.cfg.RequireLeader}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		res, meta, err := m.client.ServicesHealth(ctx, req, q)
		c.done <- muxResult{res: res, meta: meta, err: err, took: time.Since(c.issued)}
	}()
	return c
}

// run follows every subscription until the View closes, or until the
// servers turn out not to support the endpoint: it then hands every
// subscription to its own follow loop.
func (m *viewMux) run() {
	v := m.v
	defer v.wg.Done()
	active := map[*subscription]uint64{} // index held per subscription
	var poll, fetch *muxCall
	var pollFailures, fetchFailures int
	var pollAt, fetchAt time.Time // clock times before which not to issue (back-off)
	grown := false                // active grew since poll was issued
	defer func() {
		for _, c := range []*muxCall{poll, fetch} {
			if c != nil {
				c.cancel()
			}
		}
	}()
	var retry []*subscription // pending ones whose fetch failed
	for {
		now := v.cfg.clock.Now()
		if fetch == nil && !now.Before(fetchAt) {
			batch := append(retry, m.takePending()...)
			retry = nil
			subs, req := map[string]*subscription{}, map[string]uint64{}
			for _, s := range batch {
				if s.ctx.Err() == nil {
					subs[s.name], req[s.name] = s, 0
				}
			}
			if len(req) > 0 {
				fetch = m.start(subs, req, false)
			}
		}
		if poll != nil && grown && time.Since(poll.issued) >= muxReissueMin {
			poll.cancel()
			poll = nil
		}
		if poll == nil && !now.Before(pollAt) {
			subs, req := map[string]*subscription{}, map[string]uint64{}
			for s, idx := range active {
				if s.ctx.Err() != nil {
					delete(active, s)
					continue
				}
				subs[s.name], req[s.name] = s, idx
			}
			if len(req) > 0 {
				poll = m.start(subs, req, true)
				grown = false
			}
		}

		// Wake for: a new subscription, a result, a back-off's end, or
		// the time to re-issue a grown set.
		var wake time.Duration = -1
		next := func(d time.Duration) {
			if wake < 0 || d < wake {
				wake = max(d, 0)
			}
		}
		if fetch == nil && now.Before(fetchAt) {
			next(fetchAt.Sub(now)) // new subscriptions may be queued meanwhile
		}
		if poll == nil && len(active) > 0 {
			next(pollAt.Sub(now))
		}
		if poll != nil && grown {
			next(muxReissueMin - time.Since(poll.issued))
		}
		var timerC <-chan time.Time
		var t timer
		if wake >= 0 {
			t = v.cfg.clock.NewTimer(wake)
			timerC = t.C()
		}
		var pollDone, fetchDone chan muxResult
		if poll != nil {
			pollDone = poll.done
		}
		if fetch != nil {
			fetchDone = fetch.done
		}
		var c *muxCall
		var r muxResult
		select {
		case <-v.ctx.Done():
		case <-m.kick:
		case <-timerC:
		case r = <-pollDone:
			c, poll = poll, nil
		case r = <-fetchDone:
			c, fetch = fetch, nil
		}
		if t != nil {
			t.Stop()
		}
		if v.ctx.Err() != nil {
			return
		}
		if c == nil {
			continue
		}
		c.cancel()
		if v.ctx.Err() != nil {
			return
		}
		v.metrics.fetches.WithLabelValues(result(r.err)).Inc()
		if errors.Is(r.err, ErrHealthWatchUnsupported) {
			v.log.Info("view: the servers have no health-watch endpoint; following each service with its own blocking read", "err", r.err)
			m.fallBack()
			return
		}
		if r.err != nil {
			failures := &pollFailures
			if !c.poll {
				failures = &fetchFailures
			}
			*failures++
			if *failures == 1 {
				v.log.Warn("view: read failed; serving the last results", "services", len(c.subs), "err", r.err)
			}
			for _, s := range c.subs {
				if s.ctx.Err() != nil {
					continue
				}
				v.fail(s, r.err)
				if c.poll {
					active[s] = 0 // start over: the answer after recovery comes at once
				} else {
					retry = append(retry, s)
				}
			}
			at := v.cfg.clock.Now().Add(v.backoff(*failures))
			if c.poll {
				pollAt = at
			} else {
				fetchAt = at
			}
			continue
		}
		if c.poll {
			if pollFailures > 0 {
				v.log.Info("view: reads succeed again", "after_failures", pollFailures)
			}
			pollFailures = 0
		} else {
			fetchFailures = 0
		}
		for name, s := range c.subs {
			if s.ctx.Err() != nil {
				delete(active, s)
				continue
			}
			res, changed := r.res[name]
			if !changed {
				if c.poll {
					v.touch(s, r.meta)
				} else if _, ok := active[s]; !ok {
					active[s], grown = 0, poll != nil // not answered: the next poll gets it at once
				}
				continue
			}
			meta := r.meta
			meta.Index = res.Index
			v.succeed(s, res.Entries, meta)
			if _, ok := active[s]; !ok && poll != nil {
				grown = true
			}
			active[s] = res.Index
		}
		if c.poll && len(r.res) == 0 && r.took < v.cfg.Wait/4 {
			// Nothing new and no blocking: do not spin.
			pollAt = v.cfg.clock.Now().Add(v.cfg.RetryMin)
		}
	}
}

// fallBack hands every subscription to its own follow loop; from now on
// new subscriptions start one too.
func (m *viewMux) fallBack() {
	v := m.v
	v.mu.Lock()
	defer v.mu.Unlock()
	v.perService = true
	if v.closed {
		return
	}
	for _, s := range v.subs {
		if s.ctx.Err() == nil {
			v.wg.Add(1)
			go v.follow(s)
		}
	}
}

// touch records that the servers answered without a change for s: it
// ends its staleness and refreshes the contact information, allocating
// only when something a reader sees changed.
func (v *View) touch(s *subscription, meta QueryMeta) {
	old := s.state.Load()
	if old == nil || !old.have {
		return
	}
	o := old.snap
	lc := o.LastContact - meta.LastContact
	if !o.Stale && o.KnownLeader == meta.KnownLeader && lc < time.Second && lc > -time.Second {
		return
	}
	st := *old
	st.snap.Stale, st.snap.Err = false, nil
	st.snap.Fetched = v.cfg.clock.Now()
	st.snap.LastContact, st.snap.KnownLeader = meta.LastContact, meta.KnownLeader
	s.state.Store(&st)
}
