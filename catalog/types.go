package catalog

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// Check statuses, as in Consul.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
	// StatusMaintenance is never a check's status: AggregatedStatus
	// reports it for an entry with a maintenance check.
	StatusMaintenance = "maintenance"
)

// Reserved IDs, as in Consul.
const (
	// SerfCheckID is the node-level check the servers keep for every
	// gossip member. Anti-entropy never removes it.
	SerfCheckID = "serfHealth"
	// NodeMaintCheckID is the check that puts the whole node in
	// maintenance.
	NodeMaintCheckID = "_node_maintenance"
	// ServiceMaintCheckPrefix, followed by a service ID, is the check that
	// puts one service in maintenance.
	ServiceMaintCheckPrefix = "_service_maintenance:"
	// ServerServiceID is the service the servers register for themselves
	// ("consul", as Consul names it). Anti-entropy never removes it.
	ServerServiceID = "consul"
)

// Node is a catalog node in Consul's JSON shape. An AntiEntropy is given
// its own node's; /v1/health/service entries carry the instance's.
type Node struct {
	// ID is the node's UUID.
	ID   string
	Node string
	// Address is what DNS and clients use for the node's services when a
	// service has no address of its own.
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64 `json:",omitempty"`
	ModifyIndex     uint64 `json:",omitempty"`
}

// ServiceAddress is a tagged address of a service.
type ServiceAddress struct {
	Address string
	Port    int
}

// Weights are a service instance's DNS SRV weights when its checks pass
// or warn.
type Weights struct {
	Passing int
	Warning int
}

// DefaultWeights are the weights of a service registered without any.
var DefaultWeights = Weights{Passing: 1, Warning: 1}

// Service is one service instance in Consul's NodeService/AgentService
// JSON shape: what the agent registers in the catalog and what
// /v1/catalog/node and /v1/health/service return.
type Service struct {
	// Kind is "" for a typical service, or "connect-proxy", a gateway kind.
	Kind string `json:",omitempty"`
	// ID is unique per node; it defaults to the service name.
	ID      string
	Service string
	Tags    []string
	// Address, when empty, means the node's address.
	Address         string
	TaggedAddresses map[string]ServiceAddress `json:",omitempty"`
	Meta            map[string]string
	Port            int
	Weights         Weights
	// EnableTagOverride lets tools outside the agent change the tags in
	// the catalog; anti-entropy then adopts the catalog's tags.
	EnableTagOverride bool
	// Proxy is the proxy configuration as opaque JSON, or nil.
	Proxy       json.RawMessage `json:",omitempty"`
	CreateIndex uint64          `json:",omitempty"`
	ModifyIndex uint64          `json:",omitempty"`
}

// Clone returns a deep copy.
func (s Service) Clone() Service {
	s.Tags = slices.Clone(s.Tags)
	s.TaggedAddresses = maps.Clone(s.TaggedAddresses)
	s.Meta = maps.Clone(s.Meta)
	s.Proxy = slices.Clone(s.Proxy)
	return s
}

// HealthCheck is one check of a node (ServiceID "") or of one of its
// service instances, in Consul's JSON shape.
type HealthCheck struct {
	Node    string
	CheckID string
	Name    string
	// Status is StatusPassing, StatusWarning or StatusCritical.
	Status string
	Notes  string
	Output string
	// ServiceID names the instance on the same node the check belongs to.
	ServiceID   string
	ServiceName string
	ServiceTags []string
	// Type is the kind of check ("http", "ttl", "maintenance", ...),
	// informative.
	Type string
	// Definition is the check's definition as opaque JSON (Consul's
	// HealthCheckDefinition: HTTP, Interval, ...), or nil.
	Definition  json.RawMessage `json:",omitempty"`
	CreateIndex uint64          `json:",omitempty"`
	ModifyIndex uint64          `json:",omitempty"`
}

// Clone returns a deep copy.
func (c HealthCheck) Clone() HealthCheck {
	c.ServiceTags = slices.Clone(c.ServiceTags)
	c.Definition = slices.Clone(c.Definition)
	return c
}

// ServiceEntry is one instance of a service with its node and checks (the
// node-level ones, serfHealth among them, and its own), as
// /v1/health/service returns it.
type ServiceEntry struct {
	Node    Node
	Service Service
	Checks  []HealthCheck
}

// AggregatedStatus is the entry's status as Consul's API client computes
// it: maintenance if any maintenance check is present, else the worst
// status of its checks (critical, warning, passing); passing when it has
// no checks. An unknown status counts as critical.
func (e ServiceEntry) AggregatedStatus() string {
	var warning, critical bool
	for _, c := range e.Checks {
		if isMaintenanceCheck(c.CheckID) {
			return StatusMaintenance
		}
		switch c.Status {
		case StatusPassing:
		case StatusWarning:
			warning = true
		default:
			critical = true
		}
	}
	switch {
	case critical:
		return StatusCritical
	case warning:
		return StatusWarning
	}
	return StatusPassing
}

func isMaintenanceCheck(id string) bool {
	return id == NodeMaintCheckID || strings.HasPrefix(id, ServiceMaintCheckPrefix)
}

// RegisterRequest is the body of PUT /v1/catalog/register (Consul's
// structs.RegisterRequest): an upsert of the node, unless SkipNodeUpdate,
// then of the service, then of each check.
type RegisterRequest struct {
	Datacenter      string            `json:",omitempty"`
	ID              string            `json:",omitempty"`
	Node            string            // required
	Address         string            // required unless SkipNodeUpdate
	TaggedAddresses map[string]string `json:",omitempty"`
	NodeMeta        map[string]string `json:",omitempty"`
	Service         *Service          `json:",omitempty"`
	Checks          []HealthCheck     `json:",omitempty"`
	SkipNodeUpdate  bool              `json:",omitempty"`
}

// DeregisterRequest is the body of PUT /v1/catalog/deregister. With
// neither ServiceID nor CheckID it removes the whole node.
type DeregisterRequest struct {
	Datacenter string `json:",omitempty"`
	Node       string
	ServiceID  string `json:",omitempty"`
	CheckID    string `json:",omitempty"`
}

// NodeServices is what the servers hold for one node. Node is nil when
// the servers do not know the node.
type NodeServices struct {
	Node     *Node
	Services []Service
	Checks   []HealthCheck
}

// fold lowers ASCII letters. Catalog IDs and names are case-insensitive
// as in Consul (and in kvstore, which folds the same way): local state
// and subscriptions are keyed by the folded form, so "Web" and "web" are
// one service here as they are on the servers.
func fold(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if c := b[j]; 'A' <= c && c <= 'Z' {
			b[j] = c + ('a' - 'A')
		}
	}
	return string(b)
}
