package dnsserver

import (
	"net/netip"
	"sync"
)

// targetCache keeps the SRV targets answers use ("<node>.node.dc1.consul.",
// "<hex-ip>.addr.dc1.consul."), so that a query does not build (and the
// garbage collector does not later collect) the same strings each time:
// at 100,000 queries/s the collections they caused were most of the
// agent's DNS tail latency. Bounded: past maxTargets entries it starts
// over.
type targetCache struct {
	mu    sync.RWMutex
	nodes map[string]string
	addrs map[netip.Addr]string
}

const maxTargets = 1 << 16

func newTargetCache() *targetCache {
	return &targetCache{nodes: map[string]string{}, addrs: map[netip.Addr]string{}}
}

// node returns node + suffix.
func (c *targetCache) node(node, suffix string) string {
	c.mu.RLock()
	t, ok := c.nodes[node]
	c.mu.RUnlock()
	if ok {
		return t
	}
	t = node + suffix
	c.mu.Lock()
	if len(c.nodes) >= maxTargets {
		c.nodes = map[string]string{}
	}
	c.nodes[node] = t
	c.mu.Unlock()
	return t
}

// addr returns hexAddr(ip) + suffix.
func (c *targetCache) addr(ip netip.Addr, suffix string) string {
	c.mu.RLock()
	t, ok := c.addrs[ip]
	c.mu.RUnlock()
	if ok {
		return t
	}
	t = hexAddr(ip) + suffix
	c.mu.Lock()
	if len(c.addrs) >= maxTargets {
		c.addrs = map[netip.Addr]string{}
	}
	c.addrs[ip] = t
	c.mu.Unlock()
	return t
}
