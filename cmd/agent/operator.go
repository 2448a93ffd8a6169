package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

var operatorSubcommands = map[string]subcommand{
	"raft": {"Inspect and change the servers' Raft configuration", raftMain},
}

var raftSubcommands = map[string]subcommand{
	"list-peers":  {"List the Raft peers and their state", raftListPeers},
	"remove-peer": {"Remove a server from the Raft configuration", raftRemovePeer},
}

func operatorCommand(args []string, stdout, stderr io.Writer) int {
	return dispatch("operator", "Cluster-level tools for operators, like `consul operator`.",
		operatorSubcommands, args, os.Stdin, stdout, stderr)
}

func raftMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return dispatch("operator raft", "Inspects and changes the Raft configuration of the servers, like\n`consul operator raft`.",
		raftSubcommands, args, stdin, stdout, stderr)
}

// raftServer is one entry of GET /v1/operator/raft/configuration.
// ProtocolVersion is a string in Consul ("3"); a number is taken too.
type raftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	Voter           bool
	ProtocolVersion json.RawMessage
}

type raftConfiguration struct {
	Servers []raftServer
	Index   uint64
}

func raftListPeers(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "operator raft list-peers"
	fs, cf := newCommandFlags(name, stderr, helpText("agent operator raft list-peers [options]",
		"Prints the servers of the Raft configuration as the leader sees them (any\n"+
			"server with -stale), like `consul operator raft list-peers`:\n"+
			"Node, ID, Address, State (leader or follower), Voter, RaftProtocol.",
		"agent operator raft list-peers",
		"agent operator raft list-peers -stale -http-addr 10.0.0.7:8500"))
	stale := fs.Bool("stale", false, "Let any server answer from its own configuration, e.g. without a leader")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() > 0 {
		return failf(stderr, name, "Too many arguments (expected 0, got %d)", fs.NArg())
	}
	q := url.Values{}
	if *stale {
		q.Set("stale", "")
	}
	ctx, cancel := clientContext()
	defer cancel()
	resp, err := cf.send(ctx, "GET", "/v1/operator/raft/configuration", q, nil)
	if err == nil && !resp.ok() {
		err = resp.err()
	}
	var conf raftConfiguration
	if err == nil {
		err = resp.decode(&conf)
	}
	if err != nil {
		return failf(stderr, name, "Error getting peers: %v", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Node\tID\tAddress\tState\tVoter\tRaftProtocol")
	for _, s := range conf.Servers {
		state := "follower"
		if s.Leader {
			state = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\n", s.Node, s.ID, s.Address, state, s.Voter, protocolString(s.ProtocolVersion))
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

// protocolString prints a ProtocolVersion; Consul shows "<=1" for servers
// too old to report one.
func protocolString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return "<=1"
}

func raftRemovePeer(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "operator raft remove-peer"
	fs, cf := newCommandFlags(name, stderr, helpText("agent operator raft remove-peer [options] (-id ID | -address ADDR)",
		"Removes a server from the Raft configuration, like `consul operator raft\n"+
			"remove-peer`: for a server that failed and will not come back, so that it\n"+
			"no longer counts towards the quorum. Give its ID or its Raft address as\n"+
			"`agent operator raft list-peers` prints them.",
		"agent operator raft remove-peer -id 8b6dda82-3103-11e7-93ae-92361f002671",
		"agent operator raft remove-peer -address 10.0.0.9:8300"))
	id := fs.String("id", "", "ID of the server to remove")
	address := fs.String("address", "", "Raft address (ip:port) of the server to remove")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	switch {
	case fs.NArg() > 0:
		return failf(stderr, name, "Too many arguments (expected 0, got %d)", fs.NArg())
	case *id == "" && *address == "":
		return failf(stderr, name, "Error removing peer: an -id or -address is required for the peer to remove")
	case *id != "" && *address != "":
		return failf(stderr, name, "Error removing peer: give -id or -address, not both")
	}
	q := url.Values{}
	what := ""
	if *id != "" {
		q.Set("id", *id)
		what = fmt.Sprintf("id %q", *id)
	} else {
		q.Set("address", *address)
		what = fmt.Sprintf("address %q", *address)
	}
	ctx, cancel := clientContext()
	defer cancel()
	resp, err := cf.send(ctx, "DELETE", "/v1/operator/raft/peer", q, nil)
	if err == nil && !resp.ok() {
		err = resp.err()
	}
	if err != nil {
		return failf(stderr, name, "Error removing peer: %v", err)
	}
	fmt.Fprintf(stdout, "Removed peer with %s\n", what)
	return 0
}
