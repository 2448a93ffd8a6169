// Package agent wires the parts of an Outrigger agent together: it turns a
// validated config.Config into running components (gossip, HTTP API, the
// K/V store and catalog on servers; on every agent the local services and
// their health checks, anti-entropy with the servers and the local view of
// the catalog; later DNS and the proxy), starts them in order and stops
// them in reverse. It owns lifecycle only; each job lives in its own
// package.
package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/dnsserver"
	"github.com/outrigger/outrigger/gossip"
	"github.com/outrigger/outrigger/health"
	"github.com/outrigger/outrigger/httpapi"
	"github.com/outrigger/outrigger/internal/version"
	"github.com/outrigger/outrigger/rpcmux"
	"github.com/outrigger/outrigger/sidecar"
)

// Agent is one running agent.
type Agent struct {
	cfg    config.Config
	log    *slog.Logger
	reg    *prometheus.Registry
	nodeID string

	gossip *gossip.Gossip
	http   *httpapi.Server
	server *server // nil on client agents
	opts   options

	// The agent's own services and checks, and its side of the catalog
	// (see local.go and sync.go).
	local         *catalog.LocalState
	checks        *health.Checks
	catalogClient *catalog.HTTPClient
	ae            *catalog.AntiEntropy
	view          *catalog.View
	proxy         *sidecar.Manager
	ingress       *ingress // nil unless ingress_name is set
	dns           *dnsserver.Server
	// regMu keeps LocalState and the health checks in step across a
	// registration; sidecars maps a folded service ID to its sidecar's.
	regMu          sync.Mutex
	sidecars       map[string]string
	configServices []*catalog.ServiceDefinition
	configChecks   []health.CheckDefinition

	syncMu     sync.Mutex
	syncCancel context.CancelFunc
	syncDone   chan struct{}

	rrMu   sync.Mutex
	rrNext int                  // round robin over servers for forwarding
	avoid  map[string]time.Time // servers that refused a connection, until when

	stopOnce sync.Once
	stopped  chan struct{} // closed when the agent must stop (leave or shutdown)
	leaving  sync.Once
}

// Option adjusts how New builds an agent beyond what config.Config says;
// tests use them to shorten timings.
type Option func(*options)

type options struct {
	gossipProfile string
	fastRaft      bool
	// deadServerAfter, if non-zero, overrides the autopilot threshold.
	deadServerAfter time.Duration
	// syncInterval, if non-zero, overrides anti-entropy's full-sync
	// interval.
	syncInterval time.Duration
}

// WithGossipProfile selects memberlist timings ("lan", "local").
func WithGossipProfile(p string) Option { return func(o *options) { o.gossipProfile = p } }

// WithDeadServerCleanup overrides autopilot's dead-server threshold
// (tests use seconds; configuration allows no less than a minute).
func WithDeadServerCleanup(d time.Duration) Option {
	return func(o *options) { o.deadServerAfter = d }
}

// WithFastRaft uses Raft timings that elect in about a second (tests).
func WithFastRaft() Option { return func(o *options) { o.fastRaft = true } }

// WithSyncInterval overrides anti-entropy's full-sync interval (one
// minute, plus a stagger that grows with the cluster): tests use seconds.
func WithSyncInterval(d time.Duration) Option {
	return func(o *options) { o.syncInterval = d }
}

// New builds an agent from cfg, binding every listener so that a port
// conflict fails here, before anything runs. On error nothing is left
// running.
func New(cfg config.Config, logger *slog.Logger, opts ...Option) (_ *Agent, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	// a is not the named result: the cleanups below use it after a
	// `return nil, err`.
	a := &Agent{
		cfg:     cfg,
		log:     logger,
		reg:     prometheus.NewRegistry(),
		stopped: make(chan struct{}),
	}
	for _, o := range opts {
		o(&a.opts)
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cleanup := []func(){}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	if a.nodeID, err = loadNodeID(cfg); err != nil {
		return nil, err
	}

	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return nil, err
	}
	var key []byte
	if cfg.Encrypt != "" {
		if key, err = gossip.DecodeKey(cfg.Encrypt); err != nil {
			return nil, fmt.Errorf("agent: encrypt: %w", err)
		}
	}
	gcfg := gossip.DefaultConfig()
	gcfg.NodeName = cfg.NodeName
	gcfg.BindAddr = cfg.BindAddr
	gcfg.BindPort = cfg.Ports.SerfLAN
	gcfg.AdvertiseAddr = advertise
	gcfg.AdvertisePort = cfg.Ports.SerfLAN
	gcfg.Tags = a.tags()
	gcfg.SecretKey = key
	gcfg.RetryJoin = cfg.RetryJoin
	if cfg.RetryInterval > 0 {
		gcfg.RetryInterval = cfg.RetryInterval
	}
	gcfg.RetryMax = cfg.RetryMax
	if cfg.ReconnectTimeout > 0 {
		gcfg.ReapFailed = cfg.ReconnectTimeout
	}
	gcfg.Logger = logger.With("component", "gossip")
	gcfg.Registerer = a.reg
	if cfg.Dev {
		gcfg.Profile = gossip.ProfileLocal
	} else {
		gcfg.DataDir = cfg.DataDir
	}
	if a.opts.gossipProfile != "" {
		gcfg.Profile = a.opts.gossipProfile
	}
	if a.gossip, err = gossip.New(gcfg); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { _ = a.gossip.Shutdown() })

	var status httpapi.Status
	if cfg.Server {
		if a.server, err = newServer(a, advertise); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, a.server.shutdown)
		status = a.server
	}

	if err = a.newCatalog(advertise); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, a.closeCatalog)
	if err = a.newProxy(); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { a.closeProxy(context.Background()) })
	if err = a.loadConfigServices(); err != nil {
		return nil, err
	}
	// Services from the configuration enter the local state (and their
	// proxies bind) before anti-entropy's first full sync, so it carries
	// them, and a port clash fails the start.
	if err = a.registerConfigServices(); err != nil {
		return nil, err
	}
	a.restorePersisted()
	if err = a.newIngress(); err != nil {
		return nil, err
	}

	dcfg, err := a.dnsConfig()
	if err != nil {
		return nil, err
	}
	if a.dns, err = dnsserver.New(dcfg, newDNSCatalog(a.view, a.gossip)); err != nil {
		return nil, err
	}
	if err = a.dns.Start(); err != nil {
		return nil, fmt.Errorf("agent: dns: %w", err)
	}
	cleanup = append(cleanup, func() { _ = a.dns.Shutdown(context.Background()) })

	httpAddr := net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.HTTP))
	hcfg := httpapi.Config{
		Addr:             httpAddr,
		Agent:            a,
		Status:           status,
		Router:           a,
		ForwardTransport: rpcmux.NewTransport(),
		Registry:         a.reg,
		Logger:           logger.With("component", "http"),
	}
	if a.server != nil {
		hcfg.Store = a.server.store
	}
	a.http, err = httpapi.New(hcfg)
	if err != nil {
		return nil, err
	}
	a.registerIngressAPI()
	return a, nil
}

// tags are the gossip metadata other agents and tools read about us.
func (a *Agent) tags() map[string]string {
	cfg := a.cfg
	t := map[string]string{
		gossip.TagRole:       "node",
		gossip.TagDatacenter: cfg.Datacenter,
		gossip.TagBuild:      version.Version,
		gossip.TagVersion:    strconv.Itoa(version.Protocol),
		gossip.TagID:         a.nodeID,
		gossip.TagHTTPPort:   strconv.Itoa(cfg.Ports.HTTP),
		gossip.TagDNSPort:    strconv.Itoa(cfg.Ports.DNS),
	}
	if cfg.Server {
		t[gossip.TagRole] = "consul"
		t[gossip.TagServerPort] = strconv.Itoa(cfg.Ports.Server)
		if cfg.BootstrapExpect > 0 {
			t[gossip.TagBootstrap] = strconv.Itoa(cfg.BootstrapExpect)
		}
	}
	return t
}

// Run starts the components and blocks until ctx ends, Leave completes or
// a component fails. It always stops every component before returning.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ip, port := a.gossip.Addr()
	a.log.Info("agent started",
		"node", a.cfg.NodeName, "id", a.nodeID, "datacenter", a.cfg.Datacenter,
		"server", a.cfg.Server, "version", version.Version)
	if a.cfg.EnableScriptChecks {
		a.log.Warn("script checks are enabled: anyone who can reach the HTTP API can run commands as this agent's user")
	}
	a.log.Info("listening", "http", a.http.Addr().String(),
		"gossip", net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		"dns", a.dns.Addr())

	a.gossip.Start(ctx)
	if a.server != nil {
		go a.server.run(ctx)
	}
	a.startSync(ctx)
	a.startIngress(ctx)
	httpErr := make(chan error, 1)
	go func() { httpErr <- a.http.Serve(ctx) }()
	// The configuration's watches and templates, against the API just
	// started; a bad one stops the agent with the error.
	wtErr := a.runWatchesAndTemplates(ctx)

	var err error
	select {
	case <-ctx.Done():
	case <-a.stopped:
		err = wtErr
	case err = <-httpErr:
		if err != nil {
			err = fmt.Errorf("agent: http: %w", err)
		}
	}
	a.shutdown()
	return err
}

// Leave leaves the cluster gracefully, then makes Run return.
func (a *Agent) Leave(ctx context.Context) error {
	var err error
	a.leaving.Do(func() {
		a.log.Info("leaving the cluster")
		// Anti-entropy stops first: once the leader has removed this node
		// from the catalog, nothing may register it again.
		a.stopSync()
		if a.server != nil {
			a.server.leave(ctx)
		}
		err = a.gossip.Leave(ctx)
		if err != nil {
			a.log.Error("graceful leave failed", "err", err)
		} else {
			a.log.Info("left the cluster")
		}
		a.Stop()
	})
	return err
}

// Stop makes Run return without leaving (others will see this agent fail).
func (a *Agent) Stop() {
	a.stopOnce.Do(func() { close(a.stopped) })
}

func (a *Agent) shutdown() {
	a.stopSync()
	// The proxy first: in-flight connections finish (up to
	// proxy.drain_timeout) while discovery still works.
	pctx, pcancel := context.WithTimeout(context.Background(), a.cfg.Proxy.DrainTimeout)
	a.closeProxy(pctx)
	pcancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	if err := a.dns.Shutdown(ctx); err != nil {
		a.log.Warn("dns shutdown", "err", err)
	}
	a.closeCatalog()
	if a.server != nil {
		a.server.shutdown()
	}
	if err := a.gossip.Shutdown(); err != nil {
		a.log.Warn("gossip shutdown", "err", err)
	}
	a.log.Info("agent stopped")
}

// HTTPAddr is the HTTP API's bound address.
func (a *Agent) HTTPAddr() net.Addr { return a.http.Addr() }

// GossipAddr is the bound gossip address "ip:port".
func (a *Agent) GossipAddr() string {
	ip, port := a.gossip.Addr()
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// Members implements httpapi.Agent.
func (a *Agent) Members() []gossip.Member { return a.gossip.Members() }

// LocalMember implements httpapi.Agent.
func (a *Agent) LocalMember() gossip.Member { return a.gossip.LocalMember() }

// Join implements httpapi.Agent.
func (a *Agent) Join(ctx context.Context, addrs []string) (int, error) {
	n, err := a.gossip.Join(ctx, addrs)
	if err != nil {
		a.log.Error("join failed", "addrs", addrs, "err", err)
	} else {
		a.log.Info("joined", "addrs", addrs, "contacted", n)
		a.ae.TriggerFull()
	}
	return n, err
}

// Self implements httpapi.Agent.
func (a *Agent) Self() httpapi.Self {
	return httpapi.Self{
		Datacenter: a.cfg.Datacenter,
		NodeName:   a.cfg.NodeName,
		NodeID:     a.nodeID,
		Server:     a.cfg.Server,
		Version:    version.Version,
		Revision:   version.Revision,
	}
}

// Route implements httpapi.Router: a server answers or forwards to the
// leader; a client forwards to a live server of its datacenter, in turn.
func (a *Agent) Route(r *http.Request, mode httpapi.RouteMode) (string, error) {
	if a.server != nil {
		return a.server.route(r.Context(), mode)
	}
	return a.liveServer()
}

// LeaderContext implements httpapi.LeaderTracker: on a server, the
// leader's server address as Raft last knew it and a context that ends
// when another leader is known; on client agents "" and a context that
// never ends.
func (a *Agent) LeaderContext() (string, context.Context) {
	if a.server == nil {
		return "", context.Background()
	}
	return a.server.store.LeaderContext()
}

// liveServer picks the server port of a live server of our datacenter, in
// turn, skipping for a while those that recently refused a connection.
func (a *Agent) liveServer() (string, error) {
	var servers []string
	for _, m := range a.gossip.Members() {
		if m.Status != gossip.StatusAlive || m.Tags[gossip.TagRole] != "consul" ||
			m.Tags[gossip.TagDatacenter] != a.cfg.Datacenter || m.Tags[gossip.TagServerPort] == "" || m.Addr == nil {
			continue
		}
		servers = append(servers, net.JoinHostPort(m.Addr.String(), m.Tags[gossip.TagServerPort]))
	}
	if len(servers) == 0 {
		return "", httpapi.ErrNoServers
	}
	a.rrMu.Lock()
	defer a.rrMu.Unlock()
	now := time.Now()
	usable := servers[:0:0]
	for _, s := range servers {
		if until, ok := a.avoid[s]; !ok || now.After(until) {
			usable = append(usable, s)
		}
	}
	if len(usable) == 0 {
		usable = servers // all recently failed: try anyway
	}
	a.rrNext++
	return usable[a.rrNext%len(usable)], nil
}

// ServerFailed implements httpapi.FailureReporter: a server that refused a
// connection is skipped for a few seconds, until gossip catches up.
func (a *Agent) ServerFailed(addr string) {
	if a.server != nil {
		a.server.leaderUnreachable(addr)
		return
	}
	a.rrMu.Lock()
	defer a.rrMu.Unlock()
	if a.avoid == nil {
		a.avoid = map[string]time.Time{}
	}
	a.avoid[addr] = time.Now().Add(10 * time.Second)
}

// Registry is the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// View is the agent's demand-driven view of the services it uses, kept
// fresh from the servers: for DNS and the sidecar proxy.
func (a *Agent) View() *catalog.View { return a.view }

// CatalogClient reaches the servers' catalog and health endpoints through
// a live server (the view's and anti-entropy's client).
func (a *Agent) CatalogClient() *catalog.HTTPClient { return a.catalogClient }

// loadNodeID reads DataDir/node-id, creating it with a fresh UUID on first
// start, so a node keeps its identity across restarts. -dev gets a fresh
// one each run.
func loadNodeID(cfg config.Config) (string, error) {
	if cfg.Dev || cfg.DataDir == "" {
		return newUUID()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return "", fmt.Errorf("agent: data_dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !validUUID(id) {
			return "", fmt.Errorf("agent: %s: %q is not a UUID; remove the file to get a new node ID", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent: read node ID: %w", err)
	}
	id, err := newUUID()
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent: write node ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("agent: write node ID: %w", err)
	}
	return id, nil
}

func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("agent: node ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// advertiseAddr picks the address others reach us on: advertise_addr if
// set, else bind_addr unless it is unspecified, else the host's first
// private IPv4 address (Consul's rule).
func advertiseAddr(cfg config.Config) (string, error) {
	if cfg.AdvertiseAddr != "" {
		return cfg.AdvertiseAddr, nil
	}
	ip := net.ParseIP(cfg.BindAddr)
	if ip != nil && !ip.IsUnspecified() {
		return cfg.BindAddr, nil
	}
	priv, err := sockaddr.GetPrivateIP()
	if err != nil {
		return "", fmt.Errorf("agent: advertise_addr: finding a private IP: %w", err)
	}
	if priv == "" {
		return "", errors.New("agent: advertise_addr: bind_addr is 0.0.0.0 and no private IPv4 address was found; set -advertise")
	}
	return priv, nil
}

var _ httpapi.Agent = (*Agent)(nil)
