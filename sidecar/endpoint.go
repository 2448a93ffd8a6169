package sidecar

import (
	"sync"
	"sync/atomic"
	"time"
)

// endpoint is one instance address of a cluster: its load, its outlier
// state, the connections to it (for draining) and, for http, its idle
// keep-alive connections.
type endpoint struct {
	addr string
	id   string
	c    *cluster

	active atomic.Int64 // connections (tcp) or requests (http) in flight

	// Outlier state.
	fails        atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix ns; 0 = not ejected
	ejections    atomic.Int32 // back-off multiplier
	lastFail     atomic.Int64 // unix ns

	removed atomic.Bool

	mu         sync.Mutex
	conns      map[*tracked]struct{} // live connections to it
	idle       []*upConn             // http keep-alive pool, most recent last
	drainTimer *time.Timer
}

// tracked is a connection (or a pair) that draining may close.
type tracked struct {
	close func()
	// idle, if set, is called when draining starts: it closes the
	// connection if it is idle (an event loop's pooled upstream
	// connection; the net path's pool is e.idle).
	idle func()
}

func (e *endpoint) track(t *tracked) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.conns[t] = struct{}{}
	return true
}

func (e *endpoint) untrack(t *tracked) {
	e.mu.Lock()
	delete(e.conns, t)
	e.mu.Unlock()
}

// drain takes the endpoint out of service: idle pooled connections close
// now, connections in use close after timeout (unless they end first).
func (e *endpoint) drain(timeout time.Duration, gone func()) {
	e.removed.Store(true)
	e.mu.Lock()
	idle := e.idle
	e.idle = nil
	var idleHooks []func()
	for t := range e.conns {
		if t.idle != nil {
			idleHooks = append(idleHooks, t.idle)
		}
	}
	if e.drainTimer != nil {
		e.drainTimer.Stop()
	}
	e.drainTimer = time.AfterFunc(timeout, func() {
		e.mu.Lock()
		if !e.removed.Load() {
			e.mu.Unlock()
			return
		}
		var list []*tracked
		for t := range e.conns {
			list = append(list, t)
		}
		e.mu.Unlock()
		if len(list) > 0 {
			e.c.m.log.Info("sidecar: drain time over; closing connections", "upstream", e.c.name, "instance", e.id, "connections", len(list))
		}
		for _, t := range list {
			t.close()
		}
		gone()
	})
	e.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
	for _, f := range idleHooks {
		f()
	}
}

// undrain puts a draining endpoint back in service.
func (e *endpoint) undrain() {
	e.mu.Lock()
	if e.drainTimer != nil {
		e.drainTimer.Stop()
		e.drainTimer = nil
	}
	e.removed.Store(false)
	e.mu.Unlock()
}

// failure counts a connect failure or (http) a 5xx answer, and ejects the
// instance when it has had MaxFailures in a row.
func (c *cluster) failure(e *endpoint) {
	o := &c.st.outlier
	now := c.m.cfg.Now().UnixNano()
	e.lastFail.Store(now)
	n := e.fails.Add(1)
	if o.Disabled || int(n) < o.MaxFailures {
		return
	}
	if e.ejectedUntil.Load() > now {
		return
	}
	if o.EnforcingConsecutive5xx < 100 && int(randN(100)) >= o.EnforcingConsecutive5xx {
		e.fails.Store(0)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.set.Load()
	ejected := 0
	for _, x := range set.eps {
		if x.ejectedUntil.Load() > now {
			ejected++
		}
	}
	allowed := len(set.eps) * o.MaxEjectionPercent / 100
	if allowed == 0 && o.MaxEjectionPercent > 0 {
		allowed = 1
	}
	if ejected >= allowed {
		return
	}
	mult := e.ejections.Add(1)
	d := o.BaseEjectionTime * time.Duration(mult)
	e.ejectedUntil.Store(now + int64(d))
	e.fails.Store(0)
	c.met.ejections.Inc()
	c.met.ejected.Inc()
	time.AfterFunc(d, func() { c.met.ejected.Dec() })
	c.m.log.Warn("sidecar: instance ejected", "upstream", c.name, "instance", e.id, "addr", e.addr, "for", d, "times", mult)
}

// success resets the failure count; an instance without failures for an
// Interval has its back-off multiplier lowered.
func (c *cluster) success(e *endpoint) {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
	}
	if e.ejections.Load() > 0 {
		now := c.m.cfg.Now().UnixNano()
		last := e.lastFail.Load()
		if now-last > int64(c.st.outlier.Interval) && now > e.ejectedUntil.Load() {
			if e.lastFail.CompareAndSwap(last, now) {
				e.ejections.Add(-1)
			}
		}
	}
}

// limiter bounds connections with a queue of bounded length.
type limiter struct {
	sem        chan struct{} // nil: no limit
	maxPending int64
	pending    atomic.Int64
}

func (l *limiter) init(max, maxPending int) {
	if max > 0 {
		l.sem = make(chan struct{}, max)
	}
	l.maxPending = int64(maxPending)
}

// acquire takes a slot, waiting up to wait when all are taken and fewer
// than maxPending wait already. It reports whether it got one.
func (l *limiter) acquire(wait time.Duration) bool {
	if l.sem == nil {
		return true
	}
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	if l.pending.Add(1) > l.maxPending {
		l.pending.Add(-1)
		return false
	}
	defer l.pending.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// tryAcquire takes a slot if one is free now.
func (l *limiter) tryAcquire() bool {
	if l.sem == nil {
		return true
	}
	select {
	case l.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *limiter) release() {
	if l.sem != nil {
		<-l.sem
	}
}
