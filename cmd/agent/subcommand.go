package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
)

// subcommand is one `agent <group> <name>` command (`agent kv get`,
// `agent operator raft list-peers`). stdin is passed in rather than read
// from os.Stdin so that tests can feed `kv put KEY -`.
type subcommand struct {
	synopsis string
	run      func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// dispatch runs the subcommand named by args[0] of the group `agent
// <group>`. No subcommand or an unknown one prints the group's help to
// stderr and fails; -h prints it to stdout and succeeds.
func dispatch(group, desc string, subs map[string]subcommand, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		groupUsage(stderr, group, desc, subs)
		return 1
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		groupUsage(stdout, group, desc, subs)
		return 0
	}
	sub, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "agent %s: unknown subcommand %q\n\n", group, args[0])
		groupUsage(stderr, group, desc, subs)
		return 1
	}
	return sub.run(args[1:], stdin, stdout, stderr)
}

func groupUsage(w io.Writer, group, desc string, subs map[string]subcommand) {
	fmt.Fprintf(w, "Usage: agent %s <subcommand> [options] [args]\n\n%s\n\nSubcommands:\n", group, desc)
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "    %-12s %s\n", n, subs[n].synopsis)
	}
	fmt.Fprintf(w, "\nRun `agent %s <subcommand> -h` for a subcommand's options and examples.\n", group)
}

// newCommandFlags is the flag set of one client command: errors and help
// go to stderr, -http-addr is registered, and -h prints usage then the
// flags.
func newCommandFlags(name string, stderr io.Writer, usage string) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	cf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintln(stderr, "\nOptions:")
		fs.PrintDefaults()
	}
	return fs, cf
}

// flagSet reports whether the flag was given on the command line, so that
// an explicit `-modify-index 0` differs from none.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// failf prints "agent <cmd>: <message>" to stderr and returns exit code 1.
func failf(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "agent %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return 1
}
