package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/template"
	"github.com/outrigger/outrigger/watch"
)

// templateCommand is `agent template`: consul-template's job.
func templateCommand(args []string, stdout, stderr io.Writer) int {
	const name = "template"
	fs, cf := newCommandFlags(name, stderr, helpText("agent template -template \"SRC:DEST[:COMMAND]\" [options]",
		"Renders Go text/template files from the cluster's K/V store and catalog and\n"+
			"keeps them current, like consul-template: each change of the data a\n"+
			"template uses renders it again; the output is written atomically and the\n"+
			"command (run with /bin/sh -c) runs only when the output changed. A template\n"+
			"waits until every key and service it uses exists.\n\n"+
			"Functions: key, keyOrDefault, keyExists, ls, tree, service (\"web\", \"v1.web\",\n"+
			"\"web|any\", \"web|passing,warning\"), services, nodes, node, env, toJSON,\n"+
			"toJSONPretty, parseJSON, byTag, join, split, contains, replaceAll, toLower,\n"+
			"toUpper, trimSpace.",
		"agent template -template \"nginx.ctmpl:/etc/nginx/conf.d/app.conf:nginx -s reload\"",
		"agent template -template in.ctmpl:out.conf -once",
		"agent template -template a.ctmpl:a.conf -template b.ctmpl:b.conf:./reload.sh -wait 2s:10s",
		"agent template -template in.ctmpl:out.conf -dry -once"))
	var (
		specs          listFlag
		waitS          string
		once, dry      bool
		missingTimeout time.Duration
		logLevel       string
	)
	fs.Var(&specs, "template", "SRC:DEST[:COMMAND] (repeatable)")
	fs.StringVar(&waitS, "wait", "", "MIN[:MAX]: render after no change for MIN, at the latest MAX after the first (default: at once; MAX defaults to 4×MIN)")
	fs.BoolVar(&once, "once", false, "Render each template once, run the commands, and exit")
	fs.BoolVar(&dry, "dry", false, "Print the output to stdout instead of writing it; run no command")
	fs.DurationVar(&missingTimeout, "missing-timeout", 60*time.Second, "Warn when a template has waited this long for data that does not exist")
	fs.StringVar(&logLevel, "log-level", "info", "Log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() > 0 {
		return failf(stderr, name, "unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	if len(specs) == 0 {
		return failf(stderr, name, "-template: missing; want at least one \"SRC:DEST[:COMMAND]\"")
	}
	cfg := template.Config{Once: once, Dry: dry, Stdout: stdout, MissingTimeout: missingTimeout}
	for _, s := range specs {
		sp, err := template.ParseSpec(s)
		if err != nil {
			return failf(stderr, name, "%v", err)
		}
		cfg.Templates = append(cfg.Templates, sp)
	}
	if waitS != "" {
		w, err := template.ParseWait(waitS)
		if err != nil {
			return failf(stderr, name, "%v", err)
		}
		cfg.Wait = w
	}
	if missingTimeout <= 0 {
		return failf(stderr, name, "-missing-timeout %v: must be positive", missingTimeout)
	}
	base, err := cf.baseURL()
	if err != nil {
		return failf(stderr, name, "%v", err)
	}
	if cfg.Client, err = watch.NewClient(base.String()); err != nil {
		return failf(stderr, name, "%v", err)
	}
	cfg.Logger = newLogger(stderr, logLevel, false)
	r, err := template.New(cfg)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			failf(stderr, name, "%s", line)
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Run(ctx); err != nil {
		cfg.Logger.Error("template: failed", "err", err)
		return 1
	}
	return 0
}
