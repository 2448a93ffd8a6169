package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/outrigger/outrigger/template"
	"github.com/outrigger/outrigger/watch"
)

// runWatchesAndTemplates starts the configuration's `watches` (Consul's
// list) and `templates` against this agent's own HTTP API, until ctx
// ends. It parses both sections and checks every handler, template and
// command first: on any problem nothing starts, the error is logged and
// returned, and the agent is stopped (a configured watch that cannot run
// must not be silently missing). Otherwise it returns nil at once, the
// watches and templates running in the background.
func (a *Agent) runWatchesAndTemplates(ctx context.Context) error {
	// Stop with the agent, before its HTTP API goes away under the
	// watches (which would log failed queries during shutdown).
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.stopped:
		case <-ctx.Done():
		}
		cancel()
	}()
	err := a.startWatchesAndTemplates(ctx, a.cfg.Extra)
	if err != nil {
		cancel()
		a.log.Error("watches and templates: bad configuration; stopping", "err", err)
		a.Stop()
	}
	return err
}

// startWatchesAndTemplates does runWatchesAndTemplates' work for the
// given raw sections.
func (a *Agent) startWatchesAndTemplates(ctx context.Context, extra map[string]any) error {
	watches, err := watch.ParseConfig(extra["watches"])
	if err != nil {
		return err
	}
	tmpls, err := template.ParseConfig(extra["templates"])
	if err != nil {
		return err
	}
	if len(watches) == 0 && len(tmpls) == 0 {
		return nil
	}
	client, err := watch.NewClient(a.selfHTTPAddr())
	if err != nil {
		return fmt.Errorf("watches: %w", err)
	}
	runners := make([]*template.Runner, 0, len(tmpls))
	var errs []error
	for i, d := range tmpls {
		r, err := template.New(template.Config{
			Templates:      []template.Spec{d.Spec},
			Client:         client,
			Wait:           d.Wait,
			CommandTimeout: d.CommandTimeout,
			Logger:         a.log.With("component", "template"),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("templates[%d]: %w", i, err))
			continue
		}
		runners = append(runners, r)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Start builds (and checks) every handler before it starts a watch.
	if err := watch.Start(ctx, client, watches, watch.Options{Logger: a.log.With("component", "watch")}); err != nil {
		return err
	}
	for _, r := range runners {
		go func() {
			if err := r.Run(ctx); err != nil {
				a.log.Error("template stopped", "err", err)
			}
		}()
	}
	a.log.Info("watches and templates started", "watches", len(watches), "templates", len(tmpls))
	return nil
}

// selfHTTPAddr is how this agent's own HTTP API is reached: the bound
// address, with a wildcard bind reached over loopback.
func (a *Agent) selfHTTPAddr() string {
	addr := a.http.Addr()
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		// A wildcard listener (0.0.0.0 or a dual-stack ::) takes
		// IPv4 loopback.
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
