package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

var catalogSubcommands = map[string]subcommand{
	"services":    {"List the services registered in the datacenter", catalogServices},
	"nodes":       {"List the nodes of the datacenter", catalogNodes},
	"datacenters": {"List the known datacenters", catalogDatacenters},
}

const catalogDesc = "Reads the servers' catalog of nodes and services, like `consul catalog`."

func catalogCommand(args []string, stdout, stderr io.Writer) int {
	return dispatch("catalog", catalogDesc, catalogSubcommands, args, os.Stdin, stdout, stderr)
}

// nodeMetaQuery turns -node-meta key=value flags into ?node-meta=key:value.
func nodeMetaQuery(q url.Values, meta kvFlag) {
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		q.Add("node-meta", k+":"+meta[k])
	}
}

func catalogServices(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "catalog services"
	fs, cf := newCommandFlags(name, stderr, helpText("agent catalog services [options]",
		"Lists the services registered in the datacenter, one name per line and\n"+
			"sorted, like `consul catalog services`; with -tags, each service's tags too.",
		"agent catalog services",
		"agent catalog services -tags",
		"agent catalog services -node web-1",
		"agent catalog services -node-meta rack=r1"))
	tags := fs.Bool("tags", false, "Print each service's tags, comma-separated, beside its name")
	node := fs.String("node", "", "Only the services of this node")
	var meta kvFlag
	fs.Var(&meta, "node-meta", "Only services on nodes with this `key=value` metadata; repeatable")
	stale := fs.Bool("stale", false, "Let any server answer from its own state, possibly stale")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() > 0 {
		return failf(stderr, name, "Too many arguments (expected 0, got %d)", fs.NArg())
	}
	q := url.Values{}
	nodeMetaQuery(q, meta)
	if *stale {
		q.Set("stale", "")
	}
	ctx, cancel := clientContext()
	defer cancel()
	services := map[string][]string{}
	if *node != "" {
		var n *struct {
			Services map[string]struct {
				Service string
				Tags    []string
			}
		}
		if err := apiGet(ctx, cf, "/v1/catalog/node/"+*node, q, &n); err != nil {
			return failf(stderr, name, "Error listing services for node: %v", err)
		}
		if n != nil {
			for _, s := range n.Services {
				services[s.Service] = append(services[s.Service], s.Tags...)
			}
		}
	} else if err := apiGet(ctx, cf, "/v1/catalog/services", q, &services); err != nil {
		return failf(stderr, name, "Error listing services: %v", err)
	}
	if len(services) == 0 {
		fmt.Fprintln(stderr, "No services match the given query - try expanding your search.")
		return 0
	}
	names := slices.Sorted(maps.Keys(services))
	if !*tags {
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 2, 6, ' ', 0)
	for _, n := range names {
		t := slices.Compact(slices.Sorted(slices.Values(services[n])))
		fmt.Fprintf(tw, "%s\t%s\n", n, strings.Join(t, ","))
	}
	if err := tw.Flush(); err != nil {
		return failf(stderr, name, "%v", err)
	}
	fmt.Fprintln(stdout, strings.TrimSpace(b.String()))
	return 0
}

// catalogNode is a node as /v1/catalog/nodes gives it, or as built from an
// entry of /v1/catalog/service.
type catalogNode struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

func catalogNodes(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "catalog nodes"
	fs, cf := newCommandFlags(name, stderr, helpText("agent catalog nodes [options]",
		"Lists the nodes of the datacenter, like `consul catalog nodes`: Node, ID (its\n"+
			"first part), Address and DC; with -detailed, the whole ID, tagged addresses\n"+
			"and metadata. With -service, one row per instance of that service.",
		"agent catalog nodes",
		"agent catalog nodes -detailed",
		"agent catalog nodes -service web",
		"agent catalog nodes -node-meta rack=r1"))
	detailed := fs.Bool("detailed", false, "Print whole node IDs, tagged addresses and metadata")
	service := fs.String("service", "", "Only nodes providing this service (`name`)")
	var meta kvFlag
	fs.Var(&meta, "node-meta", "Only nodes with this `key=value` metadata; repeatable")
	stale := fs.Bool("stale", false, "Let any server answer from its own state, possibly stale")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() > 0 {
		return failf(stderr, name, "Too many arguments (expected 0, got %d)", fs.NArg())
	}
	q := url.Values{}
	nodeMetaQuery(q, meta)
	if *stale {
		q.Set("stale", "")
	}
	ctx, cancel := clientContext()
	defer cancel()
	var nodes []catalogNode
	if *service != "" {
		var entries []struct {
			ID, Node, Address, Datacenter string
			TaggedAddresses, NodeMeta     map[string]string
		}
		if err := apiGet(ctx, cf, "/v1/catalog/service/"+*service, q, &entries); err != nil {
			return failf(stderr, name, "Error listing nodes for service: %v", err)
		}
		for _, e := range entries {
			nodes = append(nodes, catalogNode{ID: e.ID, Node: e.Node, Address: e.Address, Datacenter: e.Datacenter,
				TaggedAddresses: e.TaggedAddresses, Meta: e.NodeMeta})
		}
	} else if err := apiGet(ctx, cf, "/v1/catalog/nodes", q, &nodes); err != nil {
		return failf(stderr, name, "Error listing nodes: %v", err)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(stderr, "No nodes match the given query - try expanding your search.")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	if *detailed {
		fmt.Fprintln(tw, "Node\tID\tAddress\tDC\tTaggedAddresses\tMeta")
	} else {
		fmt.Fprintln(tw, "Node\tID\tAddress\tDC")
	}
	for _, n := range nodes {
		if *detailed {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.ID, n.Address, n.Datacenter,
				keyValues(n.TaggedAddresses), keyValues(n.Meta))
			continue
		}
		id, _, _ := strings.Cut(n.ID, "-")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, id, n.Address, n.Datacenter)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

func catalogDatacenters(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "catalog datacenters"
	fs, cf := newCommandFlags(name, stderr, helpText("agent catalog datacenters [options]",
		"Lists the datacenters the agent knows, one per line, like `consul catalog datacenters`.",
		"agent catalog datacenters"))
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	ctx, cancel := clientContext()
	defer cancel()
	var dcs []string
	if err := apiGet(ctx, cf, "/v1/catalog/datacenters", nil, &dcs); err != nil {
		return failf(stderr, name, "Error listing datacenters: %v", err)
	}
	for _, dc := range dcs {
		fmt.Fprintln(stdout, dc)
	}
	return 0
}

// keyValues prints a map as "k=v, k=v", sorted by key, as Consul's CLI does.
func keyValues(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

// apiGet reads a JSON answer; any status but 2xx is an error with the
// agent's message.
func apiGet(ctx context.Context, cf *clientFlags, path string, q url.Values, out any) error {
	resp, err := cf.send(ctx, "GET", path, q, nil)
	if err != nil {
		return err
	}
	if !resp.ok() {
		return resp.err()
	}
	return resp.decode(out)
}
