package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/outrigger/outrigger/gossip"
	"github.com/outrigger/outrigger/httpapi"
	"github.com/outrigger/outrigger/kvstore"
	"github.com/outrigger/outrigger/rpcmux"
)

// server is the Raft side of a server agent: the server port, the K/V
// store, bootstrapping from gossip and keeping the Raft configuration in
// step with gossip membership (the leader's job).
type server struct {
	a      *Agent
	log    *slog.Logger
	mux    *rpcmux.Mux
	store  *kvstore.Store
	addr   string // our Raft address, advertise:server_port
	expect int
	client *http.Client // server-port HTTP to other servers

	// failedRemoveAfter is how long a server must have been failed in
	// gossip before the leader removes it from the Raft configuration.
	failedRemoveAfter time.Duration
	// cleanupDead enables removing failed servers at all.
	cleanupDead bool
	// minVoters is the size below which failed servers are not removed.
	minVoters int

	bootstrapOnce sync.Once
}

func newServer(a *Agent, advertise string) (s *server, err error) {
	cfg := a.cfg
	bind := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Ports.Server))
	adv := net.JoinHostPort(advertise, strconv.Itoa(cfg.Ports.Server))
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		return nil, fmt.Errorf("agent: server advertise address %s: %w", adv, err)
	}
	mux, err := rpcmux.Listen(bind, advAddr, a.log.With("component", "rpc"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			mux.Close()
		}
	}()
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:                mux.RaftLayer(),
		MaxPool:               3,
		Timeout:               10 * time.Second,
		Logger:                kvstore.HCLogger(a.log.With("component", "raft-net"), "raft-net"),
		ServerAddressProvider: &gossipAddrs{a: a},
	})
	kcfg := kvstore.DefaultConfig()
	kcfg.NodeID = a.nodeID
	kcfg.Advertise = adv
	kcfg.Transport = trans
	kcfg.Logger = a.log.With("component", "kvstore")
	kcfg.Registerer = a.reg
	if cfg.Dev {
		kcfg.InMemory = true
		kcfg.Timing = kvstore.FastTiming()
	} else {
		kcfg.DataDir = cfg.DataDir
	}
	if a.opts.fastRaft {
		kcfg.Timing = kvstore.FastTiming()
	}
	store, err := kvstore.New(kcfg)
	if err != nil {
		trans.Close()
		return nil, err
	}
	expect := cfg.BootstrapExpect
	deadAfter := cfg.Autopilot.DeadServerLastContactThreshold
	if a.opts.deadServerAfter > 0 {
		deadAfter = a.opts.deadServerAfter
	}
	return &server{
		a: a, log: a.log.With("component", "server"), mux: mux, store: store,
		addr: adv, expect: expect,
		client:            &http.Client{Transport: rpcmux.HTTPTransport(), Timeout: 5 * time.Second},
		failedRemoveAfter: deadAfter,
		cleanupDead:       cfg.Autopilot.CleanupDeadServers,
		minVoters:         max(expect, 1),
	}, nil
}

// ensureConsulService registers the "consul" service (the server port)
// on a server's node, as Consul's leader does, so that
// consul.service.consul and /v1/catalog/service/consul find the servers.
func (s *server) ensureConsulService(ctx context.Context, name, serverPort string, node *kvstore.NodeServices) {
	port, err := strconv.Atoi(serverPort)
	if err != nil {
		return
	}
	for _, svc := range node.Services {
		if svc.ID == "consul" && svc.Service == "consul" && svc.Port == port {
			return
		}
	}
	s.applyCatalog(ctx, &kvstore.Command{Type: kvstore.CmdCatalogRegister, Register: &kvstore.CatalogRegistration{
		Node:           kvstore.Node{Node: name},
		SkipNodeUpdate: true,
		Service:        &kvstore.NodeService{ID: "consul", Service: "consul", Port: port, Weights: kvstore.Weights{Passing: 1, Warning: 1}},
	}}, "consul service", name)
}

// gossipAddrs gives Raft each server's current address from gossip, by
// server ID: servers that restart together and come back on each other's
// addresses (containers) still reach each other to elect a leader, before
// the leader rewrites the Raft configuration. An ID gossip does not know
// falls back to the configuration's address.
type gossipAddrs struct {
	a *Agent

	mu      sync.Mutex
	byID    map[raft.ServerID]raft.ServerAddress
	fetched time.Time
}

// ServerAddr is called for every Raft RPC, so the scan of the members
// (thousands on a large cluster) is cached for a second, and redone at
// most every 200 ms for an ID it does not know.
func (g *gossipAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	age := time.Since(g.fetched)
	addr, ok := g.byID[id]
	if age > time.Second || !ok && age > 200*time.Millisecond {
		g.refreshLocked()
		addr, ok = g.byID[id]
	}
	if !ok {
		return "", fmt.Errorf("server %s not known by gossip yet", id)
	}
	return addr, nil
}

func (g *gossipAddrs) refreshLocked() {
	byID := map[raft.ServerID]raft.ServerAddress{}
	alive := map[raft.ServerID]bool{}
	for _, m := range g.a.gossip.Members() {
		if m.Tags[gossip.TagRole] != "consul" || m.Tags[gossip.TagServerPort] == "" || m.Addr == nil {
			continue
		}
		id := raft.ServerID(m.Tags[gossip.TagID])
		if alive[id] {
			continue
		}
		byID[id] = raft.ServerAddress(net.JoinHostPort(m.Addr.String(), m.Tags[gossip.TagServerPort]))
		alive[id] = m.Status == gossip.StatusAlive
	}
	g.byID, g.fetched = byID, time.Now()
}

// run serves forwarded HTTP on the server port, bootstraps when enough
// servers are seen, and reconciles membership while leader. It returns
// when ctx ends.
func (s *server) run(ctx context.Context) {
	go func() {
		if err := s.a.http.ServeInternal(ctx, s.mux.HTTPListener()); err != nil {
			s.log.Error("server-port HTTP stopped", "err", err)
		}
	}()
	events, cancel := s.a.gossip.Subscribe(64)
	defer cancel()
	if s.a.cfg.Dev {
		s.bootstrap(nil)
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	s.step(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-tick.C:
		}
		s.step(ctx)
	}
}

func (s *server) step(ctx context.Context) {
	if s.expect > 0 {
		s.maybeBootstrap(ctx)
	}
	if s.store.IsLeader() {
		s.reconcile(ctx)
		// The catalog invalidates the sessions of a node whose serfHealth
		// goes critical or that is deregistered, inside the FSM.
		s.reconcileCatalog(ctx)
	}
}

// Output of the serfHealth check, as Consul words it.
const (
	serfAliveOutput  = "Agent alive and reachable"
	serfFailedOutput = "Agent not live or unreachable"
)

// reconcileCatalog keeps every gossip member of our datacenter in the
// catalog with a serfHealth check that follows gossip: passing while
// alive, critical once failed (so its instances go critical cluster-wide),
// and the node deregistered once it left or was reaped.
func (s *server) reconcileCatalog(ctx context.Context) {
	state := s.store.State()
	seen := map[string]bool{}
	for _, m := range s.a.gossip.Members() {
		if m.Tags[gossip.TagDatacenter] != s.a.cfg.Datacenter || m.Addr == nil {
			continue
		}
		seen[strings.ToLower(m.Name)] = true
		node, _ := state.Node(m.Name)
		if m.Status == gossip.StatusLeft {
			if node != nil && node.Node != nil {
				s.applyCatalog(ctx, &kvstore.Command{Type: kvstore.CmdCatalogDeregister,
					Deregister: &kvstore.CatalogDeregistration{Node: m.Name}}, "deregistered departed node", m.Name)
			}
			continue
		}
		if m.Status == gossip.StatusAlive && m.Tags[gossip.TagRole] == "consul" && node != nil && node.Node != nil {
			s.ensureConsulService(ctx, m.Name, m.Tags[gossip.TagServerPort], node)
		}
		want, output := kvstore.HealthPassing, serfAliveOutput
		if m.Status == gossip.StatusFailed {
			want, output = kvstore.HealthCritical, serfFailedOutput
		}
		addr := m.Addr.String()
		nodeOK := node != nil && node.Node != nil && node.Node.Address == addr
		if nodeOK {
			checks, _ := state.NodeChecks(m.Name)
			current := ""
			for _, c := range checks {
				if c.CheckID == kvstore.SerfCheckID && c.ServiceID == "" {
					current = c.Status
				}
			}
			if current == want {
				continue
			}
		}
		reg := &kvstore.CatalogRegistration{
			Node:           kvstore.Node{ID: m.Tags[gossip.TagID], Node: m.Name, Address: addr, Datacenter: s.a.cfg.Datacenter},
			SkipNodeUpdate: nodeOK,
			Checks: []*kvstore.HealthCheck{{
				Node: m.Name, CheckID: kvstore.SerfCheckID, Name: "Serf Health Status",
				Status: want, Output: output, Type: "serf",
			}},
		}
		if node != nil && node.Node != nil && !nodeOK {
			// The node moved: keep its metadata, update the address.
			reg.Node.Meta = node.Node.Meta
			reg.Node.TaggedAddresses = node.Node.TaggedAddresses
		}
		s.applyCatalog(ctx, &kvstore.Command{Type: kvstore.CmdCatalogRegister, Register: reg}, "serfHealth "+want, m.Name)
	}
	// Nodes gossip no longer knows (reaped) leave the catalog too, but only
	// those the servers manage (with a serfHealth check).
	nodes, _ := state.Nodes()
	for _, n := range nodes {
		if seen[strings.ToLower(n.Node)] || n.Datacenter != "" && n.Datacenter != s.a.cfg.Datacenter {
			continue
		}
		checks, _ := state.NodeChecks(n.Node)
		for _, c := range checks {
			if c.CheckID == kvstore.SerfCheckID && c.ServiceID == "" {
				s.applyCatalog(ctx, &kvstore.Command{Type: kvstore.CmdCatalogDeregister,
					Deregister: &kvstore.CatalogDeregistration{Node: n.Node}}, "deregistered reaped node", n.Node)
				break
			}
		}
	}
}

func (s *server) applyCatalog(ctx context.Context, cmd *kvstore.Command, what, node string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.store.Apply(ctx, cmd); err != nil {
		s.log.Warn("catalog reconcile failed", "node", node, "action", what, "err", err)
		return
	}
	s.log.Debug("catalog reconciled", "node", node, "action", what)
}

func (s *server) shutdown() {
	if err := s.store.Shutdown(); err != nil {
		s.log.Warn("kvstore shutdown", "err", err)
	}
	s.mux.Close()
}

// leave takes a leaving leader out of the Raft configuration itself, so the
// others elect a new leader without waiting to notice it is gone. A
// leaving follower is removed by the leader when gossip reports it left.
func (s *server) leave(ctx context.Context) {
	if !s.store.IsLeader() {
		return
	}
	cfg, err := s.store.Configuration()
	if err != nil || len(cfg) < 2 {
		return
	}
	if err := s.store.RemoveServer(ctx, s.store.ID()); err != nil {
		s.log.Warn("leaving leader could not remove itself from the Raft configuration", "err", err)
		return
	}
	s.log.Info("removed ourselves from the Raft configuration before leaving")
}

// serverMember is a server as gossip sees it.
type serverMember struct {
	name, id, addr string
	status         gossip.Status
	expect         int
	since          time.Time
}

// servers lists the server members of our datacenter from gossip.
func (s *server) servers() []serverMember {
	var out []serverMember
	for _, m := range s.a.gossip.Members() {
		if m.Tags[gossip.TagRole] != "consul" || m.Tags[gossip.TagDatacenter] != s.a.cfg.Datacenter {
			continue
		}
		port := m.Tags[gossip.TagServerPort]
		if port == "" || m.Addr == nil {
			continue
		}
		expect, _ := strconv.Atoi(m.Tags[gossip.TagBootstrap])
		out = append(out, serverMember{
			name: m.Name, id: m.Tags[gossip.TagID], addr: net.JoinHostPort(m.Addr.String(), port),
			status: m.Status, expect: expect, since: m.Since,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (s *server) hasConfiguration() bool {
	cfg, err := s.store.Configuration()
	return err == nil && len(cfg) > 0
}

// maybeBootstrap forms the cluster once bootstrap_expect servers see each
// other — and never a second cluster: if any of them already belongs to
// a Raft cluster, we wait to be added instead.
func (s *server) maybeBootstrap(ctx context.Context) {
	if s.hasConfiguration() {
		return
	}
	var alive []serverMember
	for _, m := range s.servers() {
		if m.status != gossip.StatusAlive {
			continue
		}
		if m.expect != 0 && m.expect != s.expect {
			s.log.Error("servers disagree on bootstrap_expect; not bootstrapping", "server", m.name, "theirs", m.expect, "ours", s.expect)
			return
		}
		alive = append(alive, m)
	}
	if len(alive) < s.expect {
		return
	}
	for _, m := range alive {
		if m.addr == s.addr {
			continue
		}
		peers, err := s.peersOf(ctx, m.addr)
		if err != nil {
			s.log.Debug("bootstrap: cannot ask server for its peers yet", "server", m.name, "err", err)
			return
		}
		if len(peers) > 0 {
			s.log.Info("bootstrap: an existing Raft cluster was found; waiting to be added by its leader", "server", m.name, "peers", peers)
			return
		}
	}
	servers := make([]raft.Server, 0, len(alive))
	for _, m := range alive {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.id), Address: raft.ServerAddress(m.addr)})
	}
	s.bootstrap(servers)
}

func (s *server) bootstrap(servers []raft.Server) {
	s.bootstrapOnce.Do(func() {
		if err := s.store.Bootstrap(servers); err != nil {
			s.log.Error("bootstrap failed", "err", err)
			return
		}
		names := make([]string, 0, len(servers))
		for _, sv := range servers {
			names = append(names, string(sv.Address))
		}
		s.log.Info("bootstrapped the Raft cluster", "servers", names)
	})
}

// peersOf asks another server for its Raft peers over the server port.
func (s *server) peersOf(ctx context.Context, addr string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/status/peers?stale", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var peers []string
	if err := json.NewDecoder(resp.Body).Decode(&peers); err != nil {
		return nil, err
	}
	return peers, nil
}

// reconcile makes the Raft configuration follow gossip: alive servers are
// added, servers that left are removed, and servers failed for longer than
// failedRemoveAfter are removed while enough voters remain.
func (s *server) reconcile(ctx context.Context) {
	cfg, err := s.store.Configuration()
	if err != nil {
		return
	}
	inRaft := map[string]raft.Server{}
	for _, sv := range cfg {
		inRaft[string(sv.ID)] = sv
	}
	members := s.servers()
	byID := map[string]serverMember{}
	for _, m := range members {
		byID[m.id] = m
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	voters := len(cfg)
	for _, m := range members {
		sv, known := inRaft[m.id]
		switch m.status {
		case gossip.StatusAlive:
			if known && string(sv.Address) == m.addr {
				continue
			}
			// A server that came back with the same address and a new ID
			// replaces its old entry.
			for id, old := range inRaft {
				if string(old.Address) == m.addr && id != m.id {
					if err := s.store.RemoveServer(ctx, id); err == nil {
						s.log.Info("removed stale Raft server with the same address", "id", id, "addr", m.addr)
						voters--
					}
				}
			}
			if err := s.store.AddVoter(ctx, m.id, m.addr); err != nil {
				s.log.Warn("add Raft voter failed", "server", m.name, "err", err)
				continue
			}
			if !known {
				voters++
				s.log.Info("added server to the Raft cluster", "server", m.name, "addr", m.addr)
			}
		case gossip.StatusLeft:
			if !known || m.id == s.store.ID() {
				continue
			}
			if err := s.store.RemoveServer(ctx, m.id); err != nil {
				s.log.Warn("remove departed Raft server failed", "server", m.name, "err", err)
				continue
			}
			voters--
			s.log.Info("removed departed server from the Raft cluster", "server", m.name)
		case gossip.StatusFailed:
			if !s.cleanupDead || !known || m.id == s.store.ID() || time.Since(m.since) < s.failedRemoveAfter {
				continue
			}
			if voters-1 < s.minVoters {
				s.log.Warn("not removing failed server: the cluster would drop below bootstrap_expect voters", "server", m.name, "voters", voters)
				continue
			}
			if err := s.store.RemoveServer(ctx, m.id); err != nil {
				s.log.Warn("remove failed Raft server failed", "server", m.name, "err", err)
				continue
			}
			voters--
			s.log.Info("removed failed server from the Raft cluster", "server", m.name, "failed_for", time.Since(m.since).Round(time.Second))
		}
	}
}

// Leader implements httpapi.Status.
func (s *server) Leader() string {
	addr, _ := s.store.Leader()
	return addr
}

// Peers implements httpapi.Status.
func (s *server) Peers() []string {
	cfg, err := s.store.Configuration()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(cfg))
	for _, sv := range cfg {
		if sv.Suffrage == raft.Voter {
			out = append(out, string(sv.Address))
		}
	}
	return out
}

// holdTimeout is how long a request that needs the leader waits for one
// during an election before failing (Consul's rpc_hold_timeout is 7s).
const holdTimeout = 7 * time.Second

// route implements the server side of httpapi.Router. Without a known
// leader it holds the request for up to holdTimeout while one is elected.
func (s *server) route(ctx context.Context, mode httpapi.RouteMode) (string, error) {
	if mode == httpapi.RouteAnyServer || s.store.IsLeader() {
		return "", nil
	}
	addr, _ := s.store.Leader()
	if addr == "" {
		ctx, cancel := context.WithTimeout(ctx, holdTimeout)
		defer cancel()
		var err error
		if addr, _, err = s.store.WaitForLeader(ctx); err != nil {
			return "", httpapi.ErrNoLeader
		}
	}
	if addr == s.addr {
		return "", nil
	}
	return addr, nil
}

// leaderUnreachable is called when forwarding to the leader at addr could
// not connect: it waits (bounded) for Raft to move on from that leader.
func (s *server) leaderUnreachable(addr string) {
	deadline := time.Now().Add(holdTimeout)
	for time.Now().Before(deadline) {
		if cur, _ := s.store.Leader(); cur != "" && cur != addr {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
