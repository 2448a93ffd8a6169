package main

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
)

type memberJSON struct {
	Name        string
	Addr        string
	Port        uint16
	Tags        map[string]string
	Status      int
	ProtocolCur uint8
}

var statusNames = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

func membersCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("members", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	detailed := fs.Bool("detailed", false, "Print every member's tags")
	status := fs.String("status", "", "Only members whose status matches this regular expression (alive, left, failed, ...)")
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent members [options]",
			"Lists the cluster's members as the agent sees them, like `consul members`.",
			"agent members",
			"agent members -status failed",
			"agent members -detailed -http-addr 127.0.0.1:8510"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	var re *regexp.Regexp
	if *status != "" {
		var err error
		if re, err = regexp.Compile(*status); err != nil {
			fmt.Fprintf(stderr, "agent members: -status %q: %v\n", *status, err)
			return 1
		}
	}
	ctx, cancel := clientContext()
	defer cancel()
	var members []memberJSON
	if err := cf.do(ctx, "GET", "/v1/agent/members", nil, &members); err != nil {
		fmt.Fprintf(stderr, "agent members: %v\n", err)
		return 1
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	if *detailed {
		fmt.Fprintln(tw, "Node\tAddress\tStatus\tTags")
	} else {
		fmt.Fprintln(tw, "Node\tAddress\tStatus\tType\tBuild\tProtocol\tDC")
	}
	for _, m := range members {
		st := statusNames[m.Status]
		if st == "" {
			st = fmt.Sprintf("status(%d)", m.Status)
		}
		if re != nil && !re.MatchString(st) {
			continue
		}
		addr := fmt.Sprintf("%s:%d", m.Addr, m.Port)
		if strings.Contains(m.Addr, ":") {
			addr = fmt.Sprintf("[%s]:%d", m.Addr, m.Port)
		}
		if *detailed {
			keys := make([]string, 0, len(m.Tags))
			for k := range m.Tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			pairs := make([]string, 0, len(keys))
			for _, k := range keys {
				pairs = append(pairs, k+"="+m.Tags[k])
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, addr, st, strings.Join(pairs, ","))
			continue
		}
		typ := "client"
		if m.Tags["role"] == "consul" {
			typ = "server"
		}
		build, _, _ := strings.Cut(m.Tags["build"], ":")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, addr, st, typ, build, m.Tags["vsn"], m.Tags["dc"])
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

// usageExit maps flag parsing errors to exit codes: -h is success.
func usageExit(err error) int {
	if err == flag.ErrHelp {
		return 0
	}
	return 1
}
