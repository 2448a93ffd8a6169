package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/dnsserver"
	"github.com/outrigger/outrigger/gossip"
)

// dnsCatalog answers the DNS server from the agent's local state: service
// instances from the demand-driven catalog View (no server round trip once
// a service is subscribed), nodes from gossip membership, which every
// agent holds.
type dnsCatalog struct {
	view   *catalog.View
	gossip *gossip.Gossip

	// cache holds the converted instances per service name, for the
	// view's index they came from: read without a lock on every query.
	cache   sync.Map // string -> *dnsCacheEntry
	entries atomic.Int64
}

type dnsCacheEntry struct {
	index     uint64
	instances []dnsserver.Instance
}

// maxDNSCache bounds the cache; beyond it, it starts over (the view's own
// idle timeout bounds the names in use, so this is only a backstop).
const maxDNSCache = 1 << 16

func newDNSCatalog(view *catalog.View, g *gossip.Gossip) *dnsCatalog {
	return &dnsCatalog{view: view, gossip: g}
}

// Service implements dnsserver.Catalog.
func (c *dnsCatalog) Service(ctx context.Context, name string) ([]dnsserver.Instance, bool, bool, error) {
	snap, err := c.view.Service(ctx, name)
	if err != nil {
		return nil, false, false, err
	}
	stale := snap.Stale
	if v, ok := c.cache.Load(name); ok {
		if ce := v.(*dnsCacheEntry); ce.index == snap.Index && snap.Index != 0 {
			return ce.instances, len(ce.instances) > 0, stale, nil
		}
	}
	out := make([]dnsserver.Instance, 0, len(snap.Entries))
	for _, e := range snap.Entries {
		status := e.AggregatedStatus()
		if status == catalog.StatusMaintenance {
			status = dnsserver.StatusCritical
		}
		out = append(out, dnsserver.Instance{
			Node: e.Node.Node, NodeAddress: e.Node.Address,
			ServiceID: e.Service.ID, ServiceName: e.Service.Service,
			Address: e.Service.Address, Port: e.Service.Port, Tags: e.Service.Tags,
			Status:  status,
			Weights: dnsserver.Weights{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning},
		})
	}
	if c.entries.Load() >= maxDNSCache { // drop everything rather than track LRU
		c.cache.Clear()
		c.entries.Store(0)
	}
	if _, loaded := c.cache.Swap(name, &dnsCacheEntry{index: snap.Index, instances: out}); !loaded {
		c.entries.Add(1)
	}
	return out, len(out) > 0, stale, nil
}

// Node implements dnsserver.Catalog from gossip: alive members only.
func (c *dnsCatalog) Node(_ context.Context, name string) (*dnsserver.Node, bool, bool, error) {
	for _, m := range c.gossip.Members() {
		if m.Status != gossip.StatusAlive || !strings.EqualFold(m.Name, name) || m.Addr == nil {
			continue
		}
		return &dnsserver.Node{Name: m.Name, Address: m.Addr.String()}, true, false, nil
	}
	return nil, false, false, nil
}

var _ dnsserver.Catalog = (*dnsCatalog)(nil)

// dnsConfig builds the DNS server's configuration from the agent's:
// client_addr and ports.dns, datacenter, and Consul's domain, alt_domain,
// recursors and dns_config keys (kept raw in Config.Extra).
func (a *Agent) dnsConfig() (dnsserver.Config, error) {
	cfg := a.cfg
	d := dnsserver.DefaultConfig()
	d.Addr = net.JoinHostPort(cfg.ClientAddr, strconv.Itoa(cfg.Ports.DNS))
	d.Datacenter = cfg.Datacenter
	d.Logger = a.log.With("component", "dns")
	d.Registerer = a.reg
	var errs []error
	str := func(key string, v any) string {
		s, ok := v.(string)
		if !ok {
			errs = append(errs, fmt.Errorf("config: %s: %v is not a string", key, v))
		}
		return s
	}
	dur := func(key string, v any) time.Duration {
		x, err := time.ParseDuration(str(key, v))
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %v", key, err))
		}
		return x
	}
	if v, ok := cfg.Extra["domain"]; ok {
		d.Domain = dns.Fqdn(str("domain", v))
	}
	if v, ok := cfg.Extra["alt_domain"]; ok {
		d.AltDomain = dns.Fqdn(str("alt_domain", v))
	}
	if v, ok := cfg.Extra["recursors"].([]any); ok {
		for i, r := range v {
			addr := str(fmt.Sprintf("recursors[%d]", i), r)
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(addr, "53")
			}
			d.Recursors = append(d.Recursors, addr)
		}
	}
	if m, ok := cfg.Extra["dns_config"].(map[string]any); ok {
		for k, v := range m {
			key := "dns_config." + k
			switch k {
			case "only_passing", "enable_truncate":
				b, ok := v.(bool)
				if !ok {
					errs = append(errs, fmt.Errorf("config: %s: %v is not a boolean", key, v))
				}
				if k == "only_passing" {
					d.OnlyPassing = b
				} else {
					d.EnableTruncate = b
				}
			case "a_record_limit", "udp_answer_limit":
				n, ok := v.(int)
				if !ok || n < 0 {
					errs = append(errs, fmt.Errorf("config: %s: %v is not a non-negative integer", key, v))
				}
				if k == "a_record_limit" {
					d.ARecordLimit = n
				} else {
					d.UDPAnswerLimit = n
				}
			case "node_ttl":
				d.NodeTTL = dur(key, v)
			case "service_ttl":
				tm, ok := v.(map[string]any)
				if !ok {
					errs = append(errs, fmt.Errorf("config: %s: want an object of name → duration", key))
					continue
				}
				d.ServiceTTL = map[string]time.Duration{}
				for name, t := range tm {
					d.ServiceTTL[name] = dur(key+"."+name, t)
				}
			case "allow_stale", "max_stale":
				// Answers always come from the local view; accepted for Consul compatibility.
			default:
				errs = append(errs, fmt.Errorf("config: %s: unknown key", key))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return d, err
	}
	return d, d.Validate()
}

// LocalServiceHealth implements httpapi.LocalViewer: with no server
// reachable, a client agent answers service health reads from the last
// result its view holds for that service.
func (a *Agent) LocalServiceHealth(_ context.Context, name string, passing bool, tags []string) (any, uint64, time.Duration, bool) {
	if a.server != nil || a.view == nil {
		return nil, 0, 0, false
	}
	snap, ok := a.view.Peek(name)
	if !ok || snap.Index == 0 {
		return nil, 0, 0, false
	}
	entries := catalog.WithTags(snap.Entries, tags...)
	if passing {
		entries = catalog.Healthy(entries, true)
	}
	if entries == nil {
		entries = []catalog.ServiceEntry{}
	}
	return entries, snap.Index, snap.Age(time.Now()), true
}

// UseService implements httpapi.LocalViewer: it subscribes the view to
// name in the background (a no-op when already subscribed).
func (a *Agent) UseService(name string) {
	if a.server != nil || a.view == nil {
		return
	}
	if _, ok := a.view.Peek(name); ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = a.view.Service(ctx, name)
	}()
}
