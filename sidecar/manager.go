package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Manager runs the sidecar and ingress listeners. Apply and ApplyIngress
// make the running listeners match what the agent wants; Close drains them.
// Safe for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu        sync.Mutex // serializes Apply, ApplyIngress and Close
	closed    bool
	listeners map[string]*listener   // by bind address "ip:port"
	draining  map[*listener]struct{} // removed, still draining
	clusters  map[string]*cluster    // by clusterKey, reference-counted
}

const (
	ownerSidecar = "sidecar"
	ownerIngress = "ingress"
)

// New checks cfg and returns a Manager with no listeners.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("sidecar: metrics: %w", err)
	}
	return &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   met,
		listeners: map[string]*listener{},
		draining:  map[*listener]struct{}{},
		clusters:  map[string]*cluster{},
	}, nil
}

// Apply makes the running sidecar listeners match spec: it opens new ones,
// closes removed ones (their connections drain for Config.DrainTimeout) and
// updates changed ones in place (the listening socket and its established
// connections stay; new connections and requests follow the new settings).
// It is all-or-nothing: it validates the spec and binds every new listener
// first, and on an error nothing changes and the error names the
// listener, port or field. Ingress listeners are not touched, but a sidecar
// listener clashing with one is an error.
func (m *Manager) Apply(ctx context.Context, spec Spec) error {
	proxies, err := spec.normalized()
	if err != nil {
		return err
	}
	var want []*listenerSpec
	for _, p := range proxies {
		want = append(want, sidecarListeners(p)...)
	}
	return m.apply(ctx, ownerSidecar, want)
}

// ApplyIngress makes the running ingress listeners match cfg (nil: no
// ingress), as Apply does for the sidecar ones: validated and bound first,
// all-or-nothing, changed listeners updated in place, so a route change
// takes effect on the next request without dropping connections.
func (m *Manager) ApplyIngress(ctx context.Context, cfg *IngressConfig) error {
	var want []*listenerSpec
	if cfg != nil {
		c := cfg.clone()
		if err := c.Validate(); err != nil {
			return err
		}
		for _, l := range c.Listeners {
			want = append(want, ingressListener(l))
		}
	}
	return m.apply(ctx, ownerIngress, want)
}

func (m *Manager) apply(ctx context.Context, owner string, want []*listenerSpec) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sidecar: apply: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	// Clash checks among everything that will run: what is wanted plus the
	// other owner's listeners.
	type named struct {
		key  bindKey
		name string
	}
	var all []named
	for _, l := range m.listeners {
		if l.spec.owner != owner {
			all = append(all, named{l.spec.bind, l.spec.owner + " listener " + strconv.Quote(l.spec.name)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	var errs []error
	seen := map[string]bool{}
	for _, w := range want {
		if seen[w.name] {
			errs = append(errs, &FieldError{Where: owner, Field: w.name, Msg: "listener name given twice"})
		}
		seen[w.name] = true
		for _, o := range all {
			if w.bind.clashes(o.key) {
				errs = append(errs, &FieldError{Where: owner, Field: w.name,
					Msg: fmt.Sprintf("%s clashes with %s on %s", w.bind, o.name, o.key)})
			}
		}
		all = append(all, named{w.bind, owner + " listener " + strconv.Quote(w.name)})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Bind new listeners first.
	bound := map[string]*net.TCPListener{}
	fail := func(err error) error {
		for _, ln := range bound {
			ln.Close()
		}
		return err
	}
	for _, w := range want {
		k := w.bind.String()
		if old, ok := m.listeners[k]; ok && old.spec.owner == owner {
			continue
		}
		lc := net.ListenConfig{KeepAlive: -1} // idle timeouts instead of a syscall per connection
		ln, err := lc.Listen(ctx, "tcp", k)
		if err != nil {
			return fail(fmt.Errorf("sidecar: %s listener %q on %s: %w: %w", owner, w.name, k, ErrListen, err))
		}
		bound[k] = ln.(*net.TCPListener)
	}
	// Commit: nothing below fails.
	wantByKey := map[string]*listenerSpec{}
	for _, w := range want {
		wantByKey[w.bind.String()] = w
	}
	for k, l := range m.listeners {
		if l.spec.owner != owner {
			continue
		}
		if _, ok := wantByKey[k]; !ok {
			delete(m.listeners, k)
			m.log.Info("sidecar: closing listener", "listener", l.spec.name, "addr", k)
			m.draining[l] = struct{}{}
			// Stop accepting before Apply returns; the drain goes on
			// in the background.
			l.ln.Close()
			go func() {
				l.shutdown(m.cfg.DrainTimeout)
				m.mu.Lock()
				delete(m.draining, l)
				m.mu.Unlock()
			}()
		}
	}
	for k, w := range wantByKey {
		if l, ok := m.listeners[k]; ok {
			if reflect.DeepEqual(l.spec, w) {
				continue
			}
			if l.name != w.name {
				// Renamed on the same address: metrics and logs keep
				// the first name until the listener is recreated.
				w.name = l.name
			}
			m.log.Info("sidecar: updating listener", "listener", w.name, "addr", k)
			l.update(w, m.newHandler(w))
			continue
		}
		l := newListener(m, w, bound[k], m.newHandler(w))
		m.listeners[k] = l
		m.log.Info("sidecar: listening", "listener", w.name, "addr", l.ln.Addr().String(), "protocol", w.protocol)
		go l.serve()
	}
	return nil
}

// Close stops accepting connections, lets established ones finish until ctx
// is done, then closes what is left. The Manager cannot be used again.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	ls := make([]*listener, 0, len(m.listeners))
	for _, l := range m.listeners {
		ls = append(ls, l)
	}
	m.listeners = map[string]*listener{}
	draining := make([]*listener, 0, len(m.draining))
	for l := range m.draining {
		draining = append(draining, l)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range draining {
		// Removed earlier and still draining: cut it short at ctx too.
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-l.shutDown:
			case <-ctx.Done():
				l.closeConns()
				<-l.shutDown
			}
		}()
	}
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.shutdownCtx(ctx)
		}()
	}
	wg.Wait()
	m.mu.Lock()
	for _, c := range m.clusters {
		c.close()
		c.closeAll()
	}
	m.clusters = map[string]*cluster{}
	m.mu.Unlock()
	return nil
}

// Addrs returns the running listeners by name with their bound addresses
// (useful with port 0 in tests and for the agent's status output).
func (m *Manager) Addrs() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.listeners))
	for _, l := range m.listeners {
		out[l.spec.name] = l.ln.Addr().String()
	}
	return out
}

// listenerSpec is what one listener does, built from a ProxySpec or an
// IngressListener; compared with reflect.DeepEqual to detect changes.
type listenerSpec struct {
	name     string
	owner    string
	bind     bindKey
	protocol string
	routes   []routeSpec // tcp: exactly one, matching everything
	up       Upstream    // settings: timeouts, limits, balancer...
}

type routeSpec struct {
	name       string
	hosts      []string
	pathPrefix string
	headers    map[string]string
	targets    []targetSpec
}

type targetSpec struct {
	service string // catalog service; "" with static
	static  string // fixed address (inbound)
	tag     string
	meta    map[string]string
	weight  int
}

func sidecarListeners(p ProxySpec) []*listenerSpec {
	var out []*listenerSpec
	if in := p.Inbound; in != nil {
		out = append(out, &listenerSpec{
			name:     p.ID + "/inbound",
			owner:    ownerSidecar,
			bind:     bindKey{net.ParseIP(in.BindAddress), in.BindPort},
			protocol: in.Protocol,
			routes: []routeSpec{{name: p.ID + "/inbound", pathPrefix: "/", targets: []targetSpec{{
				static: net.JoinHostPort(in.LocalServiceAddress, strconv.Itoa(in.LocalServicePort)), weight: 1}}}},
			up: Upstream{
				DestinationName: p.DestinationServiceName,
				Protocol:        in.Protocol,
				Balancer:        BalancerRoundRobin,
				HashOn:          HashOnClientIP,
				ConnectTimeout:  in.ConnectTimeout,
				IdleTimeout:     in.IdleTimeout,
				RequestTimeout:  in.RequestTimeout,
				MaxAttempts:     1,
				Outlier:         OutlierConfig{Disabled: true},
			},
		})
	}
	names := map[string]int{}
	for _, u := range p.Upstreams {
		names[u.DestinationName]++
	}
	for _, u := range p.Upstreams {
		// "<proxy>/<destination>", with the port when one destination
		// has several listeners.
		name := p.ID + "/" + u.DestinationName
		if names[u.DestinationName] > 1 {
			name += ":" + strconv.Itoa(u.LocalBindPort)
		}
		out = append(out, &listenerSpec{
			name:     name,
			owner:    ownerSidecar,
			bind:     bindKey{net.ParseIP(u.LocalBindAddress), u.LocalBindPort},
			protocol: u.Protocol,
			routes: []routeSpec{{name: name, pathPrefix: "/", targets: []targetSpec{{
				service: u.DestinationName, tag: u.Tag, meta: u.Meta, weight: 1}}}},
			up: u,
		})
	}
	return out
}

func ingressListener(l IngressListener) *listenerSpec {
	s := &listenerSpec{
		name:     l.Name,
		owner:    ownerIngress,
		bind:     bindKey{net.ParseIP(l.BindAddress), l.Port},
		protocol: l.Protocol,
		up:       l.Upstream,
	}
	s.up.Protocol = l.Protocol
	if l.Protocol == ProtocolTCP {
		t := l.Target
		s.routes = []routeSpec{{name: l.Name, pathPrefix: "/", targets: []targetSpec{{service: t.Service, tag: t.Tag, meta: t.Meta, weight: 1}}}}
		return s
	}
	for _, r := range l.Routes {
		rs := routeSpec{name: r.Name, pathPrefix: r.PathPrefix, headers: r.Headers}
		for _, h := range r.Hosts {
			rs.hosts = append(rs.hosts, strings.ToLower(h))
		}
		if len(r.Splits) == 0 {
			rs.targets = []targetSpec{{service: r.Target.Service, tag: r.Target.Tag, meta: r.Target.Meta, weight: 1}}
		}
		for _, sp := range r.Splits {
			rs.targets = append(rs.targets, targetSpec{service: sp.Service, tag: sp.Tag, meta: sp.Meta, weight: sp.Weight})
		}
		s.routes = append(s.routes, rs)
	}
	return s
}

func (c *IngressConfig) clone() *IngressConfig {
	out := &IngressConfig{Listeners: make([]IngressListener, len(c.Listeners))}
	for i, l := range c.Listeners {
		l.Routes = append([]IngressRoute(nil), l.Routes...)
		for j := range l.Routes {
			l.Routes[j].Splits = append([]IngressSplit(nil), l.Routes[j].Splits...)
			l.Routes[j].Hosts = append([]string(nil), l.Routes[j].Hosts...)
		}
		out.Listeners[i] = l
	}
	return out
}

// settings are an upstream's resolved settings, shared by a cluster.
type settings struct {
	connectTimeout time.Duration
	idleTimeout    time.Duration
	requestTimeout time.Duration
	maxAttempts    int
	balancer       string
	hashOn         string
	limits         Limits
	outlier        OutlierConfig
}

func resolve(u Upstream) settings {
	s := settings{
		connectTimeout: timeoutOr(u.ConnectTimeout, DefaultConnectTimeout),
		idleTimeout:    timeoutOr(u.IdleTimeout, DefaultIdleTimeout),
		requestTimeout: timeoutOr(u.RequestTimeout, DefaultRequestTimeout),
		maxAttempts:    u.MaxAttempts,
		balancer:       u.Balancer,
		hashOn:         u.HashOn,
		limits:         u.Limits,
		outlier:        u.Outlier.filled(),
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = DefaultMaxAttempts
	}
	if s.balancer == "" {
		s.balancer = BalancerRoundRobin
	}
	if s.hashOn == "" {
		s.hashOn = HashOnClientIP
	}
	return s
}

// newHandler builds what serves a listener's connections: routes with their
// targets' clusters. Called with m.mu held.
func (m *Manager) newHandler(w *listenerSpec) *handler {
	st := resolve(w.up)
	h := &handler{spec: w, settings: st, protocol: w.protocol}
	for _, r := range w.routes {
		rt := &route{spec: r, metrics: m.metrics.route(w.name, r.name)}
		for _, t := range r.targets {
			c := m.acquireCluster(t, st)
			rt.targets = append(rt.targets, weighted{c: c, weight: t.weight})
			rt.total += t.weight
		}
		h.routes = append(h.routes, rt)
	}
	return h
}

func clusterKey(t targetSpec, st settings) string {
	var b strings.Builder
	if t.static != "" {
		b.WriteString("static:" + t.static)
	} else {
		b.WriteString(strings.ToLower(t.service))
	}
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
	fmt.Fprintf(&b, "|%+v", st)
	return b.String()
}

// acquireCluster returns the shared cluster for a target and settings,
// starting it if needed. Called with m.mu held.
func (m *Manager) acquireCluster(t targetSpec, st settings) *cluster {
	k := clusterKey(t, st)
	if c, ok := m.clusters[k]; ok {
		c.refs++
		return c
	}
	c := newCluster(m, k, t, st)
	c.refs = 1
	m.clusters[k] = c
	return c
}

// releaseHandler drops a handler's references to its clusters.
func (m *Manager) releaseHandler(h *handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseHandlerLocked(h)
}

func (m *Manager) releaseHandlerLocked(h *handler) {
	for _, r := range h.routes {
		for _, t := range r.targets {
			t.c.refs--
			if t.c.refs == 0 {
				if m.clusters[t.c.key] == t.c {
					delete(m.clusters, t.c.key)
				}
				t.c.close()
				if m.closed {
					t.c.closeAll()
				}
			}
		}
	}
}
