// Command agent is Outrigger's single binary: the agent itself (`agent run`)
// and the client commands that talk to a running agent's HTTP API.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one `agent <name>` subcommand. run returns the exit code.
type command struct {
	synopsis string
	run      func(args []string, stdout, stderr io.Writer) int
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"run":      {"Run an agent", runCommand},
		"members":  {"List the members of the cluster", membersCommand},
		"join":     {"Tell a running agent to join the cluster", joinCommand},
		"leave":    {"Gracefully leave the cluster and stop the agent", leaveCommand},
		"keygen":   {"Generate a new gossip encryption key", keygenCommand},
		"version":  {"Print the agent's version", versionCommand},
		"kv":       {"Interact with the key/value store", kvCommand},
		"lock":     {"Run a command while holding a lock", lockCommand},
		"operator": {"Cluster-level tools for operators (raft peers)", operatorCommand},
		"services": {"Register and deregister services with the local agent", servicesCommand},
		"catalog":  {"List the catalog's services and nodes", catalogCommand},
		"maint":    {"Put a node or service in or out of maintenance mode", maintCommand},
		"watch":    {"Run a handler whenever a view of the cluster changes", watchCommand},
		"template": {"Render templates from K/V and the catalog and keep them current", templateCommand},
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 1
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-v", "-version", "--version":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "agent: unknown command %q\n\n", name)
		usage(stderr)
		return 1
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: agent <command> [options]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Outrigger: one agent beside every container for membership, K/V, service")
	fmt.Fprintln(w, "discovery, DNS and proxying, speaking Consul's API and DNS names.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "    %-10s %s\n", n, commands[n].synopsis)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run `agent <command> -h` for a command's options and examples.")
}

// helpText formats a command's help: usage line, description, examples.
func helpText(usageLine, desc string, examples ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", usageLine, desc)
	if len(examples) > 0 {
		b.WriteString("\nExamples:\n")
		for _, e := range examples {
			fmt.Fprintf(&b, "    %s\n", e)
		}
	}
	return b.String()
}
