package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/agent"
	"github.com/outrigger/outrigger/config"
)

func runCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.NewFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, helpText("agent run [options]",
			"Runs an agent. Configuration comes from defaults, then -config-file and\n-config-dir files (JSON or HCL, Consul's keys), then OUTRIGGER_* environment\nvariables, then flags. Flags are accepted with one or two dashes.",
			"agent run -dev",
			"agent run -server -bootstrap-expect 3 -data-dir /var/lib/outrigger -bind 10.0.0.5 -retry-join 10.0.0.6",
			"agent run -node n2 -bind 127.0.0.1 -serf-port 8311 -server-port 8310 -http-port 8510 -dns-port 8610 -data-dir /tmp/n2 -retry-join 127.0.0.1:8301",
			"agent run -config-file agent.hcl -encrypt \"$(agent keygen)\""))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agent run: unexpected argument %q (flags start with -)\n", fs.Arg(0))
		return 1
	}
	cfg, err := config.Load(flags, os.LookupEnv)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	if err := cfg.Validate(); err != nil {
		printProblems(stderr, err)
		return 1
	}
	if err := cfg.CheckPorts(); err != nil {
		printProblems(stderr, err)
		return 1
	}
	logger := newLogger(stderr, cfg.LogLevel, cfg.LogJSON)
	a, err := agent.New(cfg, logger)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go handleSignals(sigs, a, cfg, logger, cancel)

	if err := a.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

// handleSignals maps signals to Consul's behaviour: SIGINT leaves unless
// skip_leave_on_interrupt, SIGTERM leaves if leave_on_terminate, a second
// signal stops at once. SIGHUP is logged (reload comes with the config
// reload work).
func handleSignals(sigs <-chan os.Signal, a *agent.Agent, cfg config.Config, log *slog.Logger, cancel context.CancelFunc) {
	graceful := false
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Warn("SIGHUP received: configuration reload is not supported yet; restart the agent to apply changes")
			continue
		}
		if graceful {
			log.Warn("second signal: stopping now", "signal", sig.String())
			cancel()
			return
		}
		leave := (sig == syscall.SIGINT && !cfg.SkipLeaveOnInterrupt) || (sig == syscall.SIGTERM && cfg.LeaveOnTerminate)
		log.Info("caught signal", "signal", sig.String(), "graceful_leave", leave)
		if !leave {
			cancel()
			return
		}
		graceful = true
		go func() {
			ctx, c := context.WithTimeout(context.Background(), 15*time.Second)
			defer c()
			_ = a.Leave(ctx)
			cancel()
		}()
	}
}

// printProblems prints one line per problem (errors.Join'd errors are
// already newline-separated).
func printProblems(w io.Writer, err error) {
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintln(w, "agent run: "+line)
		}
	}
}

func newLogger(w io.Writer, level string, asJSON bool) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "trace", "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error", "err":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
