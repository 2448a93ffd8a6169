package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/outrigger/outrigger/watch"
)

// watchCommand is `agent watch`: Consul's `consul watch`.
func watchCommand(args []string, stdout, stderr io.Writer) int {
	const name = "watch"
	fs, cf := newCommandFlags(name, stderr, helpText("agent watch -type TYPE [options] [-- handler args...]",
		"Watches a view of the cluster with blocking queries and runs the handler\n"+
			"with the JSON result on stdin once at start and then each time the result\n"+
			"changes (CONSUL_INDEX holds the index). A failing handler is logged with\n"+
			"its exit code and output; the watch goes on. Without a handler, the result\n"+
			"is printed once and the command exits, as `consul watch` does.\n\n"+
			"Types: "+strings.Join(watch.Types, ", ")+".",
		"agent watch -type key -key app/config -- ./handler.sh",
		"agent watch -type keyprefix -prefix app/ -- ./reload.sh",
		"agent watch -type service -service web -tag v1 -passingonly -- ./update-lb.sh",
		"agent watch -type checks -state critical",
		"agent watch -type services"))
	var (
		p    watch.Plan
		tags listFlag
	)
	fs.StringVar(&p.Type, "type", "", "What to watch: "+strings.Join(watch.Types, ", "))
	fs.StringVar(&p.Key, "key", "", "The key of a key watch")
	fs.StringVar(&p.Prefix, "prefix", "", "The prefix of a keyprefix watch")
	fs.StringVar(&p.Service, "service", "", "The service of a service watch, or of a checks watch")
	fs.Var(&tags, "tag", "Keep only a service's instances with this tag (repeatable: all must match)")
	fs.BoolVar(&p.PassingOnly, "passingonly", false, "Keep only a service's instances whose checks pass")
	fs.StringVar(&p.State, "state", "", "The check state of a checks watch: any, passing, warning, critical")
	fs.StringVar(&p.Datacenter, "datacenter", "", "The datacenter to query (default: the agent's)")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	p.Tags = tags
	if err := p.Validate(); err != nil {
		return failf(stderr, name, "-%s", err)
	}
	handlerArgs := fs.Args()
	if len(handlerArgs) > 0 {
		if err := watch.CheckExecutable(handlerArgs[0]); err != nil {
			return failf(stderr, name, "handler: %v", err)
		}
	}
	base, err := cf.baseURL()
	if err != nil {
		return failf(stderr, name, "%v", err)
	}
	client, err := watch.NewClient(base.String())
	if err != nil {
		return failf(stderr, name, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	opts := watch.Options{Logger: logger}

	if len(handlerArgs) == 0 {
		// Print the first result and exit. The first query does not
		// block, so an unreachable agent is reported at once rather than
		// retried for ever.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		q := p.Query()
		res, err := client.Get(ctx, q.Path, q.Params, 0, 0)
		if err != nil {
			return failf(stderr, name, "%v", err)
		}
		data, err := p.Shape(res)
		if err != nil {
			return failf(stderr, name, "%v", err)
		}
		if _, err := stdout.Write(data); err != nil {
			return 1
		}
		return 0
	}
	logger.Info("watching", "watch", p.String(), "agent", client.Addr(), "handler", strings.Join(handlerArgs, " "))
	_ = p.Run(ctx, client, &watch.ScriptHandler{Args: handlerArgs}, opts)
	fmt.Fprintln(stderr, "agent watch: stopped")
	return 0
}
