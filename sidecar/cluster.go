package sidecar

import (
	"context"
	"errors"
	"hash/maphash"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/catalog"
)

var (
	errNoInstance = errors.New("no healthy instance")
	errOverflow   = errors.New("upstream limit reached")
)

// cluster is the live set of instances one target sends to: a service
// (filtered by tag and meta) as the Source sees it, or a fixed address. It is
// shared by every route and listener with the same target and settings.
type cluster struct {
	m    *Manager
	key  string
	name string // for logs and metrics: "api", "api[tag=canary]", "127.0.0.1:8080"
	t    targetSpec
	st   settings
	bal  balancer
	refs int // guarded by m.mu

	set   atomic.Pointer[endpointSet]
	ready chan struct{} // closed after the first load

	mu  sync.Mutex
	all map[string]*endpoint // by address, draining ones included

	conns    limiter
	requests atomic.Int64 // in flight (http)
	retries  atomic.Int64 // retries in flight
	met      *clusterMetrics

	lastNoInstanceLog atomic.Int64 // unix ns

	stop   context.CancelFunc
	done   chan struct{}
	closed atomic.Bool
}

// endpointSet is an immutable snapshot of a cluster's healthy instances.
type endpointSet struct {
	eps  []*endpoint
	ring []ringEntry // hash balancer only
}

func newCluster(m *Manager, key string, t targetSpec, st settings) *cluster {
	c := &cluster{
		m:     m,
		key:   key,
		t:     t,
		st:    st,
		bal:   newBalancer(st.balancer),
		ready: make(chan struct{}),
		all:   map[string]*endpoint{},
		done:  make(chan struct{}),
	}
	c.name = displayName(t)
	c.conns.init(st.limits.MaxConnections, st.limits.MaxPendingRequests)
	c.met = m.metrics.cluster(c.name)
	c.set.Store(&endpointSet{})
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	if t.static != "" {
		c.update([]instance{{addr: t.static, id: t.static}})
		close(c.ready)
		close(c.done)
		return c
	}
	go c.watch(ctx)
	return c
}

func displayName(t targetSpec) string {
	if t.static != "" {
		return t.static
	}
	var b strings.Builder
	b.WriteString(t.service)
	if t.tag != "" {
		b.WriteString("[tag=" + t.tag + "]")
	}
	keys := make([]string, 0, len(t.meta))
	for k := range t.meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("[" + k + "=" + t.meta[k] + "]")
	}
	return b.String()
}

func (c *cluster) close() {
	if c.closed.Swap(true) {
		return
	}
	c.stop()
	<-c.done
}

// closeAll stops drain timers and closes every connection left (the
// Manager is closing).
func (c *cluster) closeAll() {
	c.mu.Lock()
	eps := make([]*endpoint, 0, len(c.all))
	for _, e := range c.all {
		eps = append(eps, e)
	}
	c.mu.Unlock()
	for _, e := range eps {
		e.mu.Lock()
		if e.drainTimer != nil {
			e.drainTimer.Stop()
		}
		var list []*tracked
		for t := range e.conns {
			list = append(list, t)
		}
		idle := e.idle
		e.idle = nil
		e.mu.Unlock()
		for _, uc := range idle {
			uc.close()
		}
		for _, t := range list {
			t.close()
		}
	}
}

// watch follows the service and its sidecars until ctx ends.
func (c *cluster) watch(ctx context.Context) {
	defer close(c.done)
	src := c.m.cfg.Source
	svcCh, stopSvc := src.Watch(c.t.service)
	defer stopSvc()
	proxyName := c.t.service + catalog.SidecarSuffix
	proxyCh, stopProxy := src.Watch(proxyName)
	defer stopProxy()
	first := true
	for {
		c.refresh(ctx, proxyName)
		if first {
			close(c.ready)
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-svcCh:
		case <-proxyCh:
		}
	}
}

type instance struct {
	addr string // host:port to dial
	id   string // node/serviceID, for logs
}

func (c *cluster) refresh(ctx context.Context, proxyName string) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	snap, err := c.m.cfg.Source.Service(rctx, c.t.service)
	if err != nil {
		if ctx.Err() == nil {
			c.m.log.Warn("sidecar: reading service", "service", c.t.service, "err", err)
		}
		// Keep what we have: a view that cannot reach the servers
		// keeps its last result anyway.
		if c.set.Load() != nil && len(c.set.Load().eps) > 0 {
			return
		}
	}
	entries := snap.Healthy(false)
	if c.t.tag != "" {
		entries = catalog.WithTags(entries, c.t.tag)
	}
	// Sidecars of the instances, by node and destination service ID.
	sidecars := map[string]string{}
	if psnap, err := c.m.cfg.Source.Service(rctx, proxyName); err == nil {
		for _, p := range psnap.Healthy(false) {
			if p.Service.Kind != catalog.KindConnectProxy || p.Service.Port == 0 {
				continue
			}
			dest := proxyDestinationID(p.Service.Proxy)
			if dest == "" {
				continue
			}
			sidecars[strings.ToLower(p.Node.Node)+"/"+strings.ToLower(dest)] =
				net.JoinHostPort(p.Address(), strconv.Itoa(p.Service.Port))
		}
	}
	var insts []instance
	for i := range entries {
		e := &entries[i]
		if !metaMatches(e.Service.Meta, c.t.meta) {
			continue
		}
		id := e.Node.Node + "/" + e.Service.ID
		addr, ok := sidecars[strings.ToLower(e.Node.Node)+"/"+strings.ToLower(e.Service.ID)]
		if !ok {
			if e.Service.Port == 0 {
				continue
			}
			addr = net.JoinHostPort(e.Address(), strconv.Itoa(e.Service.Port))
		}
		insts = append(insts, instance{addr: addr, id: id})
	}
	c.update(insts)
}

func metaMatches(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// proxyDestinationID reads DestinationServiceID from a sidecar's Proxy JSON
// (either spelling).
func proxyDestinationID(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	o, err := readObject("", raw)
	if err != nil {
		return ""
	}
	s, _, _ := o.str("destination_service_id")
	return s
}

// update installs a new set of instances: new ones start, those gone are
// drained, those kept keep their state and connections.
func (c *cluster) update(insts []instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.m.cfg.Now()
	keep := make(map[string]bool, len(insts))
	eps := make([]*endpoint, 0, len(insts))
	for _, in := range insts {
		if keep[in.addr] {
			continue // two instances behind one address: one endpoint
		}
		keep[in.addr] = true
		e, ok := c.all[in.addr]
		if !ok {
			e = &endpoint{addr: in.addr, id: in.id, c: c, conns: map[*tracked]struct{}{}}
			c.all[in.addr] = e
			c.m.log.Info("sidecar: instance added", "upstream", c.name, "instance", in.id, "addr", in.addr)
		} else if e.removed.Load() {
			e.undrain()
			c.m.log.Info("sidecar: instance back", "upstream", c.name, "instance", in.id, "addr", in.addr)
		}
		eps = append(eps, e)
	}
	for addr, e := range c.all {
		if keep[addr] || e.removed.Load() {
			continue
		}
		c.m.log.Info("sidecar: instance removed; draining its connections", "upstream", c.name, "instance", e.id, "addr", addr, "drain", c.m.cfg.DrainTimeout)
		e.drain(c.m.cfg.DrainTimeout, func() {
			c.mu.Lock()
			if c.all[addr] == e && e.removed.Load() {
				delete(c.all, addr)
			}
			c.mu.Unlock()
		})
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].addr < eps[j].addr })
	set := &endpointSet{eps: eps}
	if c.st.balancer == BalancerHash {
		set.ring = buildRing(eps)
	}
	c.set.Store(set)
	c.met.instances.Set(float64(len(eps)))
	_ = now
}

// waitReady waits for the first load of the instances (a new cluster's
// Source read), up to d.
func (c *cluster) waitReady(d time.Duration) {
	select {
	case <-c.ready:
		return
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ready:
	case <-t.C:
	}
}

// pickReq is one selection: the hash key and the instances already tried.
type pickReq struct {
	key    uint64
	now    int64
	tried  [8]*endpoint
	ntried int
	// anyEjected lets ejected instances be picked (panic mode: all of
	// them are ejected).
	ignoreEjection bool
}

func (p *pickReq) ok(e *endpoint) bool {
	if !p.ignoreEjection && e.ejectedUntil.Load() > p.now {
		return false
	}
	for i := 0; i < p.ntried; i++ {
		if p.tried[i] == e {
			return false
		}
	}
	return true
}

func (p *pickReq) tryAdd(e *endpoint) {
	if p.ntried < len(p.tried) {
		p.tried[p.ntried] = e
		p.ntried++
	}
}

// pick chooses an instance not tried yet, preferring ones not ejected.
func (c *cluster) pick(p *pickReq) *endpoint {
	set := c.set.Load()
	if len(set.eps) == 0 {
		return nil
	}
	p.now = c.m.cfg.Now().UnixNano()
	p.ignoreEjection = false
	if e := c.balance(set, p); e != nil {
		return e
	}
	p.ignoreEjection = true
	return c.balance(set, p)
}

// balance calls the balancer with static dispatch, so that p stays on the
// caller's stack (an interface call would move it to the heap).
func (c *cluster) balance(set *endpointSet, p *pickReq) *endpoint {
	switch b := c.bal.(type) {
	case *roundRobin:
		return b.pick(set, p)
	case leastConn:
		return b.pick(set, p)
	case p2c:
		return b.pick(set, p)
	case ringHash:
		return b.pick(set, p)
	}
	return nil // newBalancer returns only the four above
}

var hashSeed = maphash.MakeSeed()

func hashString(s string) uint64 { return maphash.String(hashSeed, s) }

func hashBytes(b []byte) uint64 { return maphash.Bytes(hashSeed, b) }

// dial connects to an instance, trying others on failure (up to
// maxAttempts), and reports failures to outlier detection.
func (c *cluster) dial(ctx context.Context, p *pickReq) (*net.TCPConn, *endpoint, error) {
	c.waitReady(c.st.connectTimeout)
	var lastErr error = errNoInstance
	for attempt := 0; attempt < c.st.maxAttempts; attempt++ {
		e := c.pick(p)
		if e == nil {
			break
		}
		if attempt > 0 {
			c.met.retries.Inc()
		}
		conn, err := e.dial(ctx, c.st.connectTimeout)
		if err == nil {
			return conn, e, nil
		}
		lastErr = err
		c.met.connectFailures.Inc()
		c.m.log.Debug("sidecar: connect failed", "upstream", c.name, "instance", e.id, "addr", e.addr, "err", err)
		c.failure(e)
		p.tryAdd(e)
	}
	return nil, nil, lastErr
}

// dial connects to the endpoint. TCP keep-alive probes are off: idle
// timeouts close dead connections, and each probe setting is a syscall per
// connection.
func (e *endpoint) dial(ctx context.Context, timeout time.Duration) (*net.TCPConn, error) {
	// Not Dialer.DialTCP: with a zero local address it binds the socket
	// before connecting, a syscall and an early port allocation per
	// connection.
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// retryAllowed takes a slot of the retry budget; release it with
// retries.Add(-1).
func (c *cluster) retryAllowed() bool {
	budget := c.requests.Load() * int64(c.m.cfg.RetryBudgetPercent) / 100
	if min := int64(c.m.cfg.MinRetries); budget < min {
		budget = min
	}
	if c.retries.Add(1) > budget {
		c.retries.Add(-1)
		c.met.retryOverflows.Inc()
		return false
	}
	return true
}

// logNoInstance rate-limits the "no healthy instance" log line to one per
// cluster every 10 seconds (the metric counts every one).
func (c *cluster) logNoInstance() bool {
	now := time.Now().UnixNano()
	last := c.lastNoInstanceLog.Load()
	return now-last > int64(10*time.Second) && c.lastNoInstanceLog.CompareAndSwap(last, now)
}
