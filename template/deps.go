package template

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/outrigger/outrigger/watch"
)

// depKind is what a dependency reads.
type depKind int

const (
	depKey depKind = iota
	depTree
	depService
	depServices
	depNodes
	depNode
	depSelf
)

// dep is one piece of data a template uses, followed by one blocking
// query. It is comparable: templates that use the same data share it.
type dep struct {
	kind depKind
	// name is the key, prefix, service or node.
	name string
	tag  string
	dc   string
	// passing asks the server for passing instances only (the service
	// function's default filter).
	passing bool
}

// String names a dependency in logs and warnings, as a user wrote it.
func (d dep) String() string {
	dc := ""
	if d.dc != "" {
		dc = "@" + d.dc
	}
	switch d.kind {
	case depKey:
		return fmt.Sprintf("key %q", d.name+dc)
	case depTree:
		return fmt.Sprintf("tree %q", d.name+dc)
	case depService:
		s := d.name
		if d.tag != "" {
			s = d.tag + "." + s
		}
		return fmt.Sprintf("service %q", s+dc)
	case depServices:
		return "services" + dc
	case depNodes:
		return "nodes" + dc
	case depNode:
		return fmt.Sprintf("node %q", d.name+dc)
	case depSelf:
		return "agent self"
	}
	return "unknown"
}

func escapeKey(s string) string {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// query is the endpoint that d follows.
func (d dep) query() watch.Query {
	q := watch.Query{Params: url.Values{}}
	switch d.kind {
	case depKey:
		q.Path = "/v1/kv/" + escapeKey(d.name)
	case depTree:
		q.Path = "/v1/kv/" + escapeKey(treePrefix(d.name))
		q.Params.Set("recurse", "")
	case depService:
		q.Path = "/v1/health/service/" + url.PathEscape(d.name)
		if d.tag != "" {
			q.Params.Set("tag", d.tag)
		}
		if d.passing {
			q.Params.Set("passing", "")
		}
	case depServices:
		q.Path = "/v1/catalog/services"
	case depNodes:
		q.Path = "/v1/catalog/nodes"
	case depNode:
		q.Path = "/v1/catalog/node/" + url.PathEscape(d.name)
	case depSelf:
		q.Path = "/v1/agent/self"
	}
	if d.dc != "" {
		q.Params.Set("dc", d.dc)
	}
	return q
}

// treePrefix is the prefix queried for ls and tree: "app" lists "app/…",
// not "apple"; "" is the whole store.
func treePrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// depData is the latest answer for a dependency, decoded.
type depData struct {
	found bool
	value any
}

// KeyPair is one key of ls and tree.
type KeyPair struct {
	// Path is the full key; Key is relative to the prefix asked for.
	Path, Key, Value string
	CreateIndex      uint64
	ModifyIndex      uint64
	LockIndex        uint64
	Flags            uint64
	Session          string
}

// ServiceTags are a service's tags.
type ServiceTags []string

// Contains reports whether the tags hold s: {{ if .Tags.Contains "v1" }}.
func (t ServiceTags) Contains(s string) bool {
	for _, x := range t {
		if x == s {
			return true
		}
	}
	return false
}

// HealthCheck is one check of a service instance.
type HealthCheck struct {
	Node, CheckID, Name, Status, Notes, Output, ServiceID, ServiceName string
	ServiceTags                                                        ServiceTags
}

// Weights are an instance's DNS/balancing weights.
type Weights struct{ Passing, Warning int }

// HealthService is one instance of a service, as the service function
// returns it (consul-template's fields).
type HealthService struct {
	Node                string
	NodeID              string
	NodeAddress         string
	NodeDatacenter      string
	NodeTaggedAddresses map[string]string
	NodeMeta            map[string]string
	ServiceMeta         map[string]string
	// Address is the service's address, or the node's when the service
	// registered none.
	Address string
	ID      string
	Name    string
	Tags    ServiceTags
	Checks  []*HealthCheck
	// Status aggregates the checks: critical, then maintenance, then
	// warning, else passing.
	Status  string
	Port    int
	Weights Weights
}

// CatalogSnippet is one entry of services.
type CatalogSnippet struct {
	Name string
	Tags ServiceTags
}

// Node is one entry of nodes.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// CatalogNodeService is one service of node.
type CatalogNodeService struct {
	ID      string
	Service string
	Tags    ServiceTags
	Meta    map[string]string
	Port    int
	Address string
}

// CatalogNode is what node returns.
type CatalogNode struct {
	Node     *Node
	Services []*CatalogNodeService
}

type apiKV struct {
	Key         string
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Session     string
}

type apiHealthEntry struct {
	Node struct {
		ID              string
		Node            string
		Address         string
		Datacenter      string
		TaggedAddresses map[string]string
		Meta            map[string]string
	}
	Service struct {
		ID      string
		Service string
		Tags    []string
		Address string
		Port    int
		Meta    map[string]string
		Weights Weights
	}
	Checks []*HealthCheck
}

type apiCatalogNode struct {
	Node     *Node
	Services map[string]*CatalogNodeService
}

// decode turns an answer into the value the template functions use.
func (d dep) decode(res watch.Result) (depData, error) {
	out := depData{found: res.Found}
	if !res.Found {
		switch d.kind {
		case depTree:
			out.value = []apiKV(nil)
		case depService:
			out.value = []*HealthService{}
		}
		return out, nil
	}
	switch d.kind {
	case depKey, depTree:
		var kvs []apiKV
		if err := json.Unmarshal(res.Body, &kvs); err != nil {
			return out, err
		}
		if d.kind == depKey {
			if len(kvs) == 0 {
				out.found = false
				return out, nil
			}
			out.value = string(kvs[0].Value)
			return out, nil
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
		out.value = kvs
	case depService:
		var es []apiHealthEntry
		if err := json.Unmarshal(res.Body, &es); err != nil {
			return out, err
		}
		svcs := make([]*HealthService, 0, len(es))
		for _, e := range es {
			addr := e.Service.Address
			if addr == "" {
				addr = e.Node.Address
			}
			for _, c := range e.Checks {
				if c == nil {
					return out, fmt.Errorf("null check in answer")
				}
			}
			svcs = append(svcs, &HealthService{
				Node: e.Node.Node, NodeID: e.Node.ID, NodeAddress: e.Node.Address,
				NodeDatacenter: e.Node.Datacenter, NodeTaggedAddresses: e.Node.TaggedAddresses,
				NodeMeta: e.Node.Meta, ServiceMeta: e.Service.Meta, Address: addr,
				ID: e.Service.ID, Name: e.Service.Service, Tags: ServiceTags(e.Service.Tags),
				Checks: e.Checks, Status: aggregateStatus(e.Checks), Port: e.Service.Port,
				Weights: e.Service.Weights,
			})
		}
		sort.SliceStable(svcs, func(i, j int) bool {
			if svcs[i].Node != svcs[j].Node {
				return svcs[i].Node < svcs[j].Node
			}
			return svcs[i].ID < svcs[j].ID
		})
		out.value = svcs
	case depServices:
		var m map[string][]string
		if err := json.Unmarshal(res.Body, &m); err != nil {
			return out, err
		}
		list := make([]*CatalogSnippet, 0, len(m))
		for name, tags := range m {
			t := append(ServiceTags(nil), tags...)
			sort.Strings(t)
			list = append(list, &CatalogSnippet{Name: name, Tags: t})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		out.value = list
	case depNodes:
		var nodes []*Node
		if err := json.Unmarshal(res.Body, &nodes); err != nil {
			return out, err
		}
		sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
		out.value = nodes
	case depNode:
		var n *apiCatalogNode
		if err := json.Unmarshal(res.Body, &n); err != nil {
			return out, err
		}
		if n == nil || n.Node == nil {
			out.value = (*CatalogNode)(nil)
			return out, nil
		}
		cn := &CatalogNode{Node: n.Node}
		for _, s := range n.Services {
			if s != nil {
				cn.Services = append(cn.Services, s)
			}
		}
		sort.Slice(cn.Services, func(i, j int) bool { return cn.Services[i].ID < cn.Services[j].ID })
		out.value = cn
	case depSelf:
		var self struct{ Config struct{ NodeName string } }
		if err := json.Unmarshal(res.Body, &self); err != nil {
			return out, err
		}
		if self.Config.NodeName == "" {
			return out, fmt.Errorf("agent self has no Config.NodeName")
		}
		out.value = self.Config.NodeName
	}
	return out, nil
}

// aggregateStatus is the worst of the checks' statuses; an instance
// without checks passes.
func aggregateStatus(checks []*HealthCheck) string {
	rank := map[string]int{"passing": 0, "warning": 1, "maintenance": 2, "critical": 3}
	worst, status := 0, "passing"
	for _, c := range checks {
		if c.CheckID == "_node_maintenance" || strings.HasPrefix(c.CheckID, "_service_maintenance:") {
			if worst < 2 {
				worst, status = 2, "maintenance"
			}
			continue
		}
		st := c.Status
		r, ok := rank[st]
		if !ok {
			r, st = 3, "critical"
		}
		if r > worst {
			worst, status = r, st
		}
	}
	return status
}
