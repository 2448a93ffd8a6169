package agent

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/gossip"
	"github.com/outrigger/outrigger/rpcmux"
)

// requestTimeout bounds a request to the servers that does not block
// (anti-entropy's reads and writes, a view's first read): long enough for
// a server to hold a write through an election (7s) and forward it, short
// enough that a server that stopped answering does not stall the agent.
// Blocking reads are bounded by the view itself.
const requestTimeout = 30 * time.Second

// newCatalog builds the agent's side of the catalog: the local state, the
// health checks reporting to it, the client that reaches the servers, the
// anti-entropy that copies the local state there, and the local view of
// the services the agent uses. Nothing runs until startSync.
func (a *Agent) newCatalog(advertise string) error {
	a.local = catalog.NewLocalState()
	a.sidecars = map[string]string{}
	var err error
	if a.checks, err = a.newHealth(); err != nil {
		return err
	}
	a.catalogClient = &catalog.HTTPClient{
		Transport: boundedTransport{rt: rpcmux.HTTPTransport(), timeout: requestTimeout},
		BaseURL:   a.serverBaseURL,
		Failed:    a.catalogServerFailed,
	}
	a.ae, err = catalog.NewAntiEntropy(catalog.AntiEntropyConfig{
		Node:        a.catalogNode(advertise),
		Local:       a.local,
		Client:      a.catalogClient,
		ClusterSize: func() int { return len(a.gossip.Members()) },
		Interval:    a.opts.syncInterval,
		Logger:      a.log.With("component", "catalog"),
		Registerer:  a.reg,
	})
	if err != nil {
		_ = a.checks.Close()
		return err
	}
	a.view, err = catalog.NewView(catalog.ViewConfig{
		Client:     a.catalogClient,
		Logger:     a.log.With("component", "view"),
		Registerer: a.reg,
	})
	if err != nil {
		_ = a.ae.Close()
		_ = a.checks.Close()
		return err
	}
	return nil
}

// closeCatalog stops what newCatalog built, in Consul's order: the view,
// anti-entropy, then the checks. startSync's goroutines must have ended.
func (a *Agent) closeCatalog() {
	_ = a.view.Close()
	_ = a.ae.Close()
	_ = a.checks.Close()
}

// catalogNode is this agent's node as anti-entropy registers it, with
// the tagged addresses Consul gives a node.
func (a *Agent) catalogNode(advertise string) catalog.Node {
	tagged := map[string]string{"lan": advertise, "wan": advertise}
	if ip := net.ParseIP(advertise); ip != nil {
		family := "ipv6"
		if ip.To4() != nil {
			family = "ipv4"
		}
		tagged["lan_"+family], tagged["wan_"+family] = advertise, advertise
	}
	return catalog.Node{
		ID:              a.nodeID,
		Node:            a.cfg.NodeName,
		Address:         advertise,
		Datacenter:      a.cfg.Datacenter,
		TaggedAddresses: tagged,
		Meta:            maps.Clone(a.cfg.NodeMeta),
	}
}

// serverBaseURL is the catalog client's BaseURL: the server port of a
// server to ask, as Route picks one for forwarded requests. A client picks
// a live server in turn. A server asks itself (its handlers forward to
// the leader), or the leader directly for a request that needs it.
func (a *Agent) serverBaseURL(stale bool) (string, error) {
	if a.server != nil {
		if !stale && !a.server.store.IsLeader() {
			if leader, _ := a.server.store.Leader(); leader != "" {
				return "http://" + leader, nil
			}
		}
		return "http://" + a.server.addr, nil
	}
	addr, err := a.liveServer()
	if err != nil {
		return "", err
	}
	return "http://" + addr, nil
}

// catalogServerFailed is the catalog client's Failed: steer away from a
// server that did not answer, as forwarded requests do.
func (a *Agent) catalogServerFailed(baseURL string, _ error) {
	addr := strings.TrimPrefix(baseURL, "http://")
	if a.server != nil && addr == a.server.addr {
		return // ourselves: shutting down
	}
	a.ServerFailed(addr)
}

// startSync starts anti-entropy, and a follower of gossip that asks it
// for a full sync whenever a server joins (the cluster forming, a server
// coming back, this agent rejoining after a partition). stopSync ends
// both.
func (a *Agent) startSync(ctx context.Context) {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	if a.syncDone != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.syncCancel, a.syncDone = cancel, done
	events, unsubscribe := a.gossip.Subscribe(64)
	go func() {
		defer close(done)
		defer unsubscribe()
		aeDone := make(chan struct{})
		go func() {
			defer close(aeDone)
			if err := a.ae.Run(ctx); err != nil {
				a.log.Error("anti-entropy", "err", err)
			}
		}()
		a.followServers(ctx, events)
		<-aeDone
	}()
}

// stopSync stops anti-entropy and waits for it: before a graceful leave
// (so that it cannot register the node again after the leader removed
// it) and at shutdown. Safe to call more than once, or before startSync.
func (a *Agent) stopSync() {
	a.syncMu.Lock()
	cancel, done := a.syncCancel, a.syncDone
	if done == nil {
		a.syncDone = closedChan // never start
	}
	a.syncMu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (a *Agent) followServers(ctx context.Context, events <-chan gossip.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			m := ev.Member
			if ev.Type == gossip.EventJoin && m.Name != a.cfg.NodeName &&
				m.Tags[gossip.TagRole] == "consul" && m.Tags[gossip.TagDatacenter] == a.cfg.Datacenter {
				a.log.Debug("server joined; full catalog sync", "server", m.Name)
				a.ae.TriggerFull()
			}
		}
	}
}

// boundedTransport gives requests that do not block (no ?index=, not the
// view's health watch) a deadline, so a server that accepted a connection and then went silent
// cannot stall anti-entropy.
type boundedTransport struct {
	rt      http.RoundTripper
	timeout time.Duration
}

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Get("index") != "" || r.URL.Path == catalog.HealthWatchPath {
		return t.rt.RoundTrip(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), t.timeout)
	resp, err := t.rt.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
