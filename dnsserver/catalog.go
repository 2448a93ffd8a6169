package dnsserver

import "context"

// Catalog is everything the DNS server reads: the agent's local, read-only
// view of the catalog. Every answer comes from it, so an implementation
// must answer from memory once it has the data (no server round trip per
// query) and may block only the first time a name is asked for, within
// ctx.
//
// Names are passed lowercased; a Catalog should match them without regard
// to case, as Consul does. Only names that are valid DNS labels reach it.
//
// Returned slices, pointers and maps are shared: the server never modifies
// them, and an implementation must not modify them after returning them
// (replace, don't mutate), so that a query needs no copy.
type Catalog interface {
	// Service returns every instance of the named service in the local
	// datacenter, whatever its health: the server filters by Status.
	// found is false when the catalog knows no such service. stale is
	// true when the data is the last known but the catalog has lost
	// contact with the servers; it is still served, and counted. A
	// non-nil err means the catalog cannot answer at all (for example the
	// first fetch of a service failed): the client gets SERVFAIL.
	Service(ctx context.Context, name string) (instances []Instance, found, stale bool, err error)

	// Node returns a node's address and metadata, with found, stale and
	// err as for Service.
	Node(ctx context.Context, name string) (node *Node, found, stale bool, err error)
}

// Aggregated health of an instance: the worst of its node's and its own
// checks (maintenance counts as critical). Instance.Status holds one of
// them; anything else is treated as critical.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Instance is one registered instance of a service, as the catalog last
// saw it.
type Instance struct {
	// Node is the name of the node the instance runs on, and NodeAddress
	// that node's address (an IP, or a host name).
	Node        string
	NodeAddress string
	// ServiceID and ServiceName identify the instance.
	ServiceID   string
	ServiceName string
	// Address is the instance's own address (an IP, or a host name); ""
	// means the node's. SRV answers point at <hex-ip>.addr.<dc>.<domain>
	// when it differs from NodeAddress, at <node>.node.<dc>.<domain>
	// otherwise.
	Address string
	Port    int
	Tags    []string
	// Status is the aggregated health: StatusPassing, StatusWarning or
	// StatusCritical.
	Status string
	// Weights are the SRV weights for a passing and a warning instance.
	// A zero Passing weight means unset: both weights are then 1,
	// Consul's default.
	Weights Weights
}

// Weights are an instance's SRV weights by health (Consul's Weights).
type Weights struct {
	Passing int
	Warning int
}

// Node is a catalog node.
type Node struct {
	Name string
	// Address is an IP or a host name.
	Address string
	// Meta is the node metadata, answered as TXT records "key=value".
	Meta map[string]string
}
