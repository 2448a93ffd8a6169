package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/outrigger/outrigger/gossip"
	"github.com/outrigger/outrigger/internal/version"
)

func joinCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent join [options] ADDRESS...",
			"Tells a running agent to join the cluster through one or more existing\nmembers, given as host[:port] (gossip port, default 8301).",
			"agent join 10.0.0.5",
			"agent join 127.0.0.1:8301 127.0.0.1:8311"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "agent join: at least one address to join is required")
		return 1
	}
	ctx, cancel := clientContext()
	defer cancel()
	joined := 0
	for _, addr := range fs.Args() {
		if err := cf.do(ctx, "PUT", "/v1/agent/join/"+url.PathEscape(addr), nil, nil); err != nil {
			fmt.Fprintf(stderr, "agent join: %s: %v\n", addr, err)
			continue
		}
		joined++
	}
	if joined == 0 {
		return 1
	}
	fmt.Fprintf(stdout, "Successfully joined cluster by contacting %d nodes.\n", joined)
	return 0
}

func leaveCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("leave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent leave [options]",
			"Makes the agent leave the cluster gracefully and stop. Other members\nsee it as left, not failed.",
			"agent leave",
			"agent leave -http-addr 127.0.0.1:8510"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	ctx, cancel := clientContext()
	defer cancel()
	if err := cf.do(ctx, "PUT", "/v1/agent/leave", nil, nil); err != nil {
		fmt.Fprintf(stderr, "agent leave: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "Graceful leave complete")
	return 0
}

func keygenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent keygen",
			"Prints a new random 32-byte gossip encryption key, base64-encoded, for\n-encrypt or the encrypt config key. Every agent of a cluster needs the same key.",
			"agent run -encrypt \"$(agent keygen)\" ..."))
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	key, err := gossip.GenerateKey()
	if err != nil {
		fmt.Fprintf(stderr, "agent keygen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, key)
	return 0
}

func versionCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent version", "Prints the agent's version and gossip protocol.", "agent version"))
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	fmt.Fprintln(stdout, version.String())
	fmt.Fprintf(stdout, "Protocol %d spoken by default\n", version.Protocol)
	return 0
}
