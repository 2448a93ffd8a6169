package dnsserver

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// MemCatalog is an in-memory Catalog, for tests and examples. Lookups
// ignore case. The zero value is not usable: call NewMemCatalog.
type MemCatalog struct {
	mu       sync.RWMutex
	services map[string][]Instance
	nodes    map[string]*Node
	stale    bool
	err      error
}

// NewMemCatalog returns an empty MemCatalog.
func NewMemCatalog() *MemCatalog {
	return &MemCatalog{services: make(map[string][]Instance), nodes: make(map[string]*Node)}
}

// SetService replaces the instances of a service (none: the service
// exists with no instances). The instances are copied.
func (c *MemCatalog) SetService(name string, instances ...Instance) {
	cp := make([]Instance, len(instances))
	for i, in := range instances {
		in.Tags = slices.Clone(in.Tags)
		cp[i] = in
	}
	c.mu.Lock()
	c.services[strings.ToLower(name)] = cp
	c.mu.Unlock()
}

// DeleteService removes a service.
func (c *MemCatalog) DeleteService(name string) {
	c.mu.Lock()
	delete(c.services, strings.ToLower(name))
	c.mu.Unlock()
}

// SetNode adds or replaces a node. It is copied.
func (c *MemCatalog) SetNode(n Node) {
	meta := make(map[string]string, len(n.Meta))
	for k, v := range n.Meta {
		meta[k] = v
	}
	n.Meta = meta
	c.mu.Lock()
	c.nodes[strings.ToLower(n.Name)] = &n
	c.mu.Unlock()
}

// SetStale makes every lookup report stale data (servers unreachable).
func (c *MemCatalog) SetStale(stale bool) {
	c.mu.Lock()
	c.stale = stale
	c.mu.Unlock()
}

// SetErr makes every lookup fail with err (nil: succeed again).
func (c *MemCatalog) SetErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Service implements Catalog.
func (c *MemCatalog) Service(ctx context.Context, name string) ([]Instance, bool, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.err != nil {
		return nil, false, false, c.err
	}
	insts, ok := c.services[strings.ToLower(name)]
	return insts, ok, c.stale, nil
}

// Node implements Catalog.
func (c *MemCatalog) Node(ctx context.Context, name string) (*Node, bool, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.err != nil {
		return nil, false, false, c.err
	}
	n, ok := c.nodes[strings.ToLower(name)]
	return n, ok, c.stale, nil
}

var _ Catalog = (*MemCatalog)(nil)
