package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/sidecar"
)

// The agent runs the sidecar proxies of its local connect-proxy services
// (a service's Connect.SidecarService, or a connect-proxy registered on
// its own) in its own process, through a sidecar.Manager fed by the local
// view. Registrations change the running listeners before they are
// committed: a proxy that cannot start (an unknown field, a port in use)
// fails the registration, with nothing changed.

// applyTimeout bounds one Manager.Apply (binding and closing listeners).
const applyTimeout = 10 * time.Second

func (a *Agent) newProxy() error {
	cfg := sidecar.DefaultConfig()
	cfg.Source = a.view
	cfg.Logger = a.log.With("component", "proxy")
	cfg.Registerer = a.reg
	cfg.DrainTimeout = a.cfg.Proxy.DrainTimeout
	m, err := sidecar.New(cfg)
	if err != nil {
		return fmt.Errorf("agent: proxy: %w", err)
	}
	a.proxy = m
	return nil
}

func (a *Agent) closeProxy(ctx context.Context) {
	if a.proxy == nil {
		return
	}
	if err := a.proxy.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("proxy shutdown", "err", err)
	}
}

// proxySpec is the spec of the local connect-proxy services after a
// change: with adds or replaces services (one that is no longer a
// connect-proxy drops out), without removes IDs.
func (a *Agent) proxySpecLocked(with []catalog.Service, without []string) (sidecar.Spec, error) {
	byID := map[string]catalog.Service{}
	for _, s := range a.local.Services() {
		if s.Kind == catalog.KindConnectProxy {
			byID[foldID(s.ID)] = s
		}
	}
	for _, id := range without {
		delete(byID, foldID(id))
	}
	for _, s := range with {
		if s.Kind == catalog.KindConnectProxy {
			byID[foldID(s.ID)] = s
		} else {
			delete(byID, foldID(s.ID))
		}
	}
	var spec sidecar.Spec
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		ps, err := proxySpecFor(byID[id])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		spec.Proxies = append(spec.Proxies, ps)
	}
	return spec, errors.Join(errs...)
}

// proxySpecFor reads one connect-proxy service's Proxy object; the
// inbound listener listens on the service's own address and port.
func proxySpecFor(s catalog.Service) (sidecar.ProxySpec, error) {
	ps, err := sidecar.ParseProxyConfig(s.Proxy)
	if err != nil {
		return ps, fmt.Errorf("%w: service %q: Proxy: %w", catalog.ErrInvalidDefinition, s.ID, err)
	}
	ps.ID = s.ID
	if ps.Inbound != nil {
		if ps.Inbound.BindPort == 0 {
			ps.Inbound.BindPort = s.Port
		}
		// An IP service address is where the mesh reaches the sidecar;
		// a hostname or none means every interface.
		if ps.Inbound.BindAddress == "" && net.ParseIP(s.Address) != nil {
			ps.Inbound.BindAddress = s.Address
		}
	}
	return ps, nil
}

// applyProxiesLocked makes the running proxies match the local services
// after the change; on error nothing changed.
func (a *Agent) applyProxiesLocked(with []catalog.Service, without []string) error {
	if a.proxy == nil {
		return nil
	}
	spec, err := a.proxySpecLocked(with, without)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if err := a.proxy.Apply(ctx, spec); err != nil {
		return fmt.Errorf("%w: sidecar proxy: %w", catalog.ErrInvalidDefinition, err)
	}
	return nil
}
