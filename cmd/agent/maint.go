package main

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
)

// Maintenance checks' IDs, as Consul names them (catalog.NodeMaintCheckID
// and catalog.ServiceMaintCheckPrefix).
const (
	nodeMaintCheckID       = "_node_maintenance"
	serviceMaintCheckIDPfx = "_service_maintenance:"
)

// maintCheck is the part of a /v1/agent/checks entry `agent maint` reads.
type maintCheck struct {
	Node      string
	CheckID   string
	Notes     string
	ServiceID string
}

func maintCommand(args []string, stdout, stderr io.Writer) int {
	const name = "maint"
	fs, cf := newCommandFlags(name, stderr, helpText("agent maint [options]",
		"Places a node or service into maintenance mode, or takes it out, like\n"+
			"`consul maint`. In maintenance mode the node's services (or the one\n"+
			"service) are left out of DNS and healthy service lists: the agent adds a\n"+
			"critical maintenance check, with the reason as its notes. The mode\n"+
			"survives until disabled or, for a service, until it is deregistered.\n"+
			"Without -enable or -disable, lists what is in maintenance on the agent.",
		"agent maint",
		"agent maint -enable -reason \"kernel upgrade\"",
		"agent maint -disable",
		"agent maint -enable -service web -reason \"deploying v2\"",
		"agent maint -disable -service web"))
	var (
		enable, disable   bool
		reason, serviceID string
	)
	fs.BoolVar(&enable, "enable", false, "Enable maintenance mode")
	fs.BoolVar(&disable, "disable", false, "Disable maintenance mode")
	fs.StringVar(&reason, "reason", "", "Text describing the maintenance reason (with -enable)")
	fs.StringVar(&serviceID, "service", "", "ID of a service to put in or take out of maintenance, instead of the node")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	switch {
	case fs.NArg() > 0:
		return failf(stderr, name, "unexpected argument %q (this command takes only flags)", fs.Arg(0))
	case enable && disable:
		return failf(stderr, name, "Only one of -enable or -disable may be provided")
	case !enable && reason != "":
		return failf(stderr, name, "Reason may only be provided with -enable")
	case !enable && !disable && serviceID != "":
		return failf(stderr, name, "Service requires either -enable or -disable")
	}

	ctx, cancel := clientContext()
	defer cancel()

	if !enable && !disable {
		resp, err := cf.send(ctx, "GET", "/v1/agent/checks", nil, nil)
		if err == nil && !resp.ok() {
			err = resp.err()
		}
		var checks map[string]maintCheck
		if err == nil {
			err = resp.decode(&checks)
		}
		if err != nil {
			return failf(stderr, name, "Error getting checks: %v", err)
		}
		var node *maintCheck
		var services []maintCheck
		for id, c := range checks {
			if c.CheckID == "" {
				c.CheckID = id
			}
			switch {
			case c.CheckID == nodeMaintCheckID:
				node = &c
			case strings.HasPrefix(c.CheckID, serviceMaintCheckIDPfx):
				if c.ServiceID == "" {
					c.ServiceID = strings.TrimPrefix(c.CheckID, serviceMaintCheckIDPfx)
				}
				services = append(services, c)
			}
		}
		if node != nil {
			nodeName := node.Node
			if nodeName == "" {
				var self struct{ Config struct{ NodeName string } }
				resp, err := cf.send(ctx, "GET", "/v1/agent/self", nil, nil)
				if err == nil && !resp.ok() {
					err = resp.err()
				}
				if err == nil {
					err = resp.decode(&self)
				}
				if err != nil {
					return failf(stderr, name, "Error getting the node's name: %v", err)
				}
				nodeName = self.Config.NodeName
			}
			fmt.Fprintf(stdout, "Node:\n  Name:   %s\n  Reason: %s\n\n", nodeName, node.Notes)
		}
		sort.Slice(services, func(i, j int) bool { return services[i].ServiceID < services[j].ServiceID })
		for _, s := range services {
			fmt.Fprintf(stdout, "Service:\n  ID:     %s\n  Reason: %s\n\n", s.ServiceID, s.Notes)
		}
		return 0
	}

	q := url.Values{"enable": {fmt.Sprint(enable)}}
	if reason != "" {
		q.Set("reason", reason)
	}
	path, what := "/v1/agent/maintenance", "node"
	if serviceID != "" {
		path, what = "/v1/agent/service/maintenance/"+serviceID, "service"
	}
	resp, err := cf.send(ctx, "PUT", path, q, nil)
	if err == nil && !resp.ok() {
		err = resp.err()
	}
	if err != nil {
		verb := "enabling"
		if disable {
			verb = "disabling"
		}
		return failf(stderr, name, "Error %s %s maintenance: %v", verb, what, err)
	}
	verb := "entered"
	if disable {
		verb = "left"
	}
	if serviceID == "" {
		fmt.Fprintf(stdout, "Node %s maintenance mode\n", verb)
	} else {
		fmt.Fprintf(stdout, "Service %s maintenance mode: %s\n", verb, serviceID)
	}
	return 0
}
