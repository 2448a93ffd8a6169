package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/health"
	"github.com/outrigger/outrigger/httpapi"
)

// The agent's own services and checks: catalog.LocalState holds them with
// their statuses (what /v1/agent/services shows and anti-entropy copies
// to the servers), health.Checks runs their checks. The two are kept in
// step here, under regMu, in one order: a service or check enters
// LocalState before its runner starts (health reports a check's state as
// soon as it is added, and LocalState drops reports for checks it does
// not have), and leaves LocalState before its runner stops.

// Sidecar proxy ports are allocated from Consul's default range.
const (
	sidecarMinPort = 21000
	sidecarMaxPort = 21255
)

// newHealth returns the agent's health checks, reporting to a.local.
func (a *Agent) newHealth() (*health.Checks, error) {
	return health.New(health.Config{
		EnableScriptChecks: a.cfg.EnableScriptChecks,
		OnUpdate:           a.checkUpdated,
		OnDeregister:       a.deregisterCritical,
		Logger:             a.log.With("component", "health"),
		Registerer:         a.reg,
	})
}

// checkUpdated is health's OnUpdate: a check's new status goes to
// LocalState, whence anti-entropy pushes it.
func (a *Agent) checkUpdated(s health.CheckState) {
	err := a.local.UpdateCheck(s.ID, s.Status, s.Output)
	if err != nil && !errors.Is(err, catalog.ErrUnknownCheck) {
		a.log.Warn("check update not recorded", "check", s.ID, "err", err)
	}
}

// deregisterCritical is health's OnDeregister: a check has been critical
// for longer than its DeregisterCriticalServiceAfter.
func (a *Agent) deregisterCritical(serviceID string, cause health.CheckState) {
	err := a.DeregisterService(serviceID)
	switch {
	case err == nil:
		a.log.Warn("deregistered service: its check was critical for too long",
			"service", serviceID, "check", cause.ID,
			"deregister_critical_service_after", cause.Definition.DeregisterCriticalServiceAfter)
	case !errors.Is(err, catalog.ErrUnknownService):
		a.log.Error("deregister critical service", "service", serviceID, "err", err)
	}
}

// LocalState implements httpapi.LocalAgent: the services and checks this
// agent owns.
func (a *Agent) LocalState() *catalog.LocalState { return a.local }

// RegisterService implements httpapi.LocalAgent: it adds or replaces a
// local service with its checks (and its sidecar proxy, when the
// definition asks for one) and starts the checks. Everything is checked
// before anything changes, so a bad definition leaves the agent as it
// was. With replaceExistingChecks, checks of the service the definition
// no longer lists are removed.
func (a *Agent) RegisterService(def *catalog.ServiceDefinition, replaceExistingChecks bool) error {
	return a.registerService(def, replaceExistingChecks, true)
}

// registerService is RegisterService; with persist, the registration is
// kept in the data directory for the next start (see persist.go).
func (a *Agent) registerService(def *catalog.ServiceDefinition, replaceExistingChecks, persist bool) error {
	if err := def.Validate(); err != nil {
		return err
	}
	for _, w := range def.Warnings() {
		a.log.Warn("service registration", "service", def.ID, "warning", w)
	}
	checks, err := a.serviceChecks(def)
	if err != nil {
		return err
	}

	a.regMu.Lock()
	defer a.regMu.Unlock()
	var sidecar *catalog.ServiceDefinition
	var sidecarChecks []health.CheckDefinition
	if def.SidecarService != nil {
		if sidecar, err = def.SidecarDefinition(a.sidecarPortLocked(def.ID)); err != nil {
			return err
		}
		if sidecarChecks, err = a.serviceChecks(sidecar); err != nil {
			return err
		}
	}
	old, hadSidecar := a.sidecars[foldID(def.ID)]
	// The proxies first: a sidecar that cannot start fails the
	// registration before anything changed.
	with := []catalog.Service{def.Service()}
	var without []string
	if sidecar != nil {
		with = append(with, sidecar.Service())
	} else if hadSidecar {
		without = append(without, old)
	}
	if err := a.applyProxiesLocked(with, without); err != nil {
		return err
	}
	if err := a.addServiceLocked(def, checks, replaceExistingChecks); err != nil {
		return err
	}
	if persist {
		if b, err := json.Marshal(def); err == nil {
			err = a.persist("services", def.ID, persisted{Definition: b, ReplaceExistingChecks: replaceExistingChecks})
			if err != nil {
				a.log.Error("registered, but not kept for the next start", "service", def.ID, "err", err)
			}
		}
	}
	switch {
	case sidecar != nil:
		if err := a.addServiceLocked(sidecar, sidecarChecks, replaceExistingChecks); err != nil {
			return err
		}
		a.sidecars[foldID(def.ID)] = sidecar.ID
	case hadSidecar:
		// Registered again without its sidecar: the sidecar goes, as in Consul.
		delete(a.sidecars, foldID(def.ID))
		if err := a.removeServiceLocked(old); err != nil && !errors.Is(err, catalog.ErrUnknownService) {
			return err
		}
	}
	return nil
}

// serviceChecks parses and checks the definitions of a service's checks
// for the health package, naming the check's place in errors.
func (a *Agent) serviceChecks(def *catalog.ServiceDefinition) ([]health.CheckDefinition, error) {
	out := make([]health.CheckDefinition, 0, len(def.Checks))
	var errs []error
	for i, c := range def.Checks {
		hd, err := health.ParseCheckDefinition(c.Raw)
		if err == nil {
			err = a.checkRunnable(&hd)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("catalog: service %q: Checks[%d]: %w", def.ID, i, err))
			continue
		}
		out = append(out, hd)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// checkRunnable reports what would make health.Checks.Add refuse def,
// before anything is changed.
func (a *Agent) checkRunnable(def *health.CheckDefinition) error {
	if err := def.Validate(); err != nil {
		return err
	}
	if def.Type() == health.TypeScript && !a.cfg.EnableScriptChecks {
		label := def.ID
		if label == "" {
			label = def.Name
		}
		return &health.DefinitionError{Check: label, Field: "Args",
			Msg: health.ErrScriptChecksDisabled.Error() + "; start the agent with -enable-script-checks to allow them",
			Err: health.ErrScriptChecksDisabled}
	}
	return nil
}

// addServiceLocked registers def in LocalState, then (re)starts its
// checks; checks dropped by replaceExistingChecks are stopped.
func (a *Agent) addServiceLocked(def *catalog.ServiceDefinition, checks []health.CheckDefinition, replaceExistingChecks bool) error {
	for _, c := range checks {
		a.stopRenamedCheckLocked(c.ID)
	}
	hcs := def.HealthChecks()
	for i := range hcs {
		// The settings as health parsed them, in one spelling and with
		// typed values, whatever shape the definition gave them in.
		hcs[i].Definition = checkSettings(checks[i])
	}
	removed, err := a.local.AddService(def.Service(), hcs, replaceExistingChecks)
	if err != nil {
		return err
	}
	for _, id := range removed {
		a.stopCheck(id)
	}
	for _, c := range checks {
		if err := a.checks.Add(c); err != nil {
			return fmt.Errorf("agent: start check %q: %w", c.ID, err)
		}
	}
	return nil
}

// stopRenamedCheckLocked stops the runner of a check about to be
// registered again under another spelling of its ID: LocalState takes
// "service:Web" and "service:web" as one check, health as two.
func (a *Agent) stopRenamedCheckLocked(id string) {
	if old, ok := a.local.Check(id); ok && old.CheckID != id {
		a.stopCheck(old.CheckID)
	}
}

func (a *Agent) stopCheck(id string) {
	if err := a.checks.Remove(id); err != nil && !errors.Is(err, health.ErrUnknownCheck) {
		a.log.Warn("stop check", "check", id, "err", err)
	}
}

// DeregisterService implements httpapi.LocalAgent: it removes a local
// service, its checks and its sidecar proxy. An unknown ID is an error
// wrapping catalog.ErrUnknownService.
func (a *Agent) DeregisterService(id string) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if err := a.removeServiceLocked(id); err != nil {
		return err
	}
	a.unpersist("services", id)
	// Stop the proxies of what is gone (the sidecar's, and the service's
	// own if it was a connect-proxy).
	defer func() {
		if err := a.applyProxiesLocked(nil, nil); err != nil {
			a.log.Warn("stop sidecar proxy", "service", id, "err", err)
		}
	}()
	if sc, ok := a.sidecars[foldID(id)]; ok {
		delete(a.sidecars, foldID(id))
		if err := a.removeServiceLocked(sc); err != nil && !errors.Is(err, catalog.ErrUnknownService) {
			return err
		}
	}
	return nil
}

func (a *Agent) removeServiceLocked(id string) error {
	removed, err := a.local.RemoveService(id)
	if err != nil {
		return err
	}
	for _, c := range removed {
		a.stopCheck(c)
	}
	return nil
}

// RegisterCheck implements httpapi.LocalAgent: it adds or replaces a node
// check, or a check of a local service (def.ServiceID), and starts it.
func (a *Agent) RegisterCheck(def health.CheckDefinition) error {
	return a.registerCheck(def, true)
}

// registerCheck is RegisterCheck; with persist, the registration is kept
// in the data directory for the next start (see persist.go).
func (a *Agent) registerCheck(def health.CheckDefinition, persist bool) error {
	if def.ID == "" {
		def.ID = def.Name
	}
	if err := a.checkRunnable(&def); err != nil {
		return err
	}
	hc := catalog.HealthCheck{
		CheckID:    def.ID,
		Name:       def.Name,
		Status:     def.Status,
		Notes:      def.Notes,
		ServiceID:  def.ServiceID,
		Type:       def.Type(),
		Definition: checkSettings(def),
	}
	a.regMu.Lock()
	defer a.regMu.Unlock()
	a.stopRenamedCheckLocked(def.ID)
	_, existed := a.local.Check(def.ID)
	if err := a.local.AddCheck(hc); err != nil {
		return err
	}
	if err := a.checks.Add(def); err != nil {
		if !existed {
			_ = a.local.RemoveCheck(def.ID)
		}
		return fmt.Errorf("agent: start check %q: %w", def.ID, err)
	}
	if persist {
		if b, err := json.Marshal(def); err == nil {
			if err := a.persist("checks", def.ID, persisted{Definition: b}); err != nil {
				a.log.Error("registered, but not kept for the next start", "check", def.ID, "err", err)
			}
		}
	}
	return nil
}

// DeregisterCheck implements httpapi.LocalAgent. An unknown ID is an error
// wrapping catalog.ErrUnknownCheck.
func (a *Agent) DeregisterCheck(id string) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	c, ok := a.local.Check(id)
	if !ok {
		return fmt.Errorf("agent: deregister check %q: %w", id, catalog.ErrUnknownCheck)
	}
	if err := a.local.RemoveCheck(c.CheckID); err != nil {
		return err
	}
	a.stopCheck(c.CheckID)
	a.unpersist("checks", c.CheckID)
	return nil
}

// UpdateTTL implements httpapi.LocalAgent: the application reports a TTL
// check's status. The result reaches LocalState through health's
// OnUpdate, like any other check result.
func (a *Agent) UpdateTTL(id, status, output string) error {
	c, ok := a.local.Check(id)
	if !ok {
		return fmt.Errorf("agent: update check %q: %w", id, catalog.ErrUnknownCheck)
	}
	return a.checks.Update(c.CheckID, status, output)
}

// sidecarPortLocked returns the port for the sidecar of service parent:
// the one its sidecar has if it is registered, else the lowest port of
// the sidecar range no local service uses; 0 when none is left.
func (a *Agent) sidecarPortLocked(parent string) int {
	if s, ok := a.local.Service(parent + catalog.SidecarSuffix); ok && s.Port != 0 {
		return s.Port
	}
	used := map[int]bool{}
	for _, s := range a.local.Services() {
		used[s.Port] = true
	}
	for p := sidecarMinPort; p <= sidecarMaxPort; p++ {
		if !used[p] {
			return p
		}
	}
	return 0
}

// checkSettings is a check's definition as the catalog keeps it (a
// HealthCheck's Definition): its settings in Consul's spelling, without
// its identity, status, notes or token, as catalog.ServiceDefinition's
// HealthChecks gives them for checks registered with a service.
func checkSettings(def health.CheckDefinition) json.RawMessage {
	b, err := json.Marshal(def)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil
	}
	for _, k := range []string{"ID", "Name", "Notes", "ServiceID", "Token", "Status"} {
		delete(m, k)
	}
	if args, ok := m["Args"]; ok {
		delete(m, "Args")
		m["ScriptArgs"] = args
	}
	if len(m) == 0 {
		return nil
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return out
}

// configChecks reads the "check" and "checks" sections of the
// configuration (node checks, or checks of a configured service).
func configChecks(extra map[string]any) ([]health.CheckDefinition, error) {
	var out []health.CheckDefinition
	var errs []error
	for _, key := range []string{"check", "checks"} {
		list, _ := extra[key].([]any)
		for i, e := range list {
			m, ok := asObject(e)
			if !ok {
				errs = append(errs, fmt.Errorf("%s[%d]: not an object", key, i))
				continue
			}
			def, err := health.CheckDefinitionFromMap(m)
			if err == nil {
				err = def.Validate()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", key, i, err))
				continue
			}
			out = append(out, def)
		}
	}
	return out, errors.Join(errs...)
}

// asObject accepts an object, or a list of objects merged in order (how
// HCL blocks arrive in configuration sections).
func asObject(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case []any:
		m := map[string]any{}
		for _, e := range v {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			maps.Copy(m, o)
		}
		return m, len(v) > 0
	}
	return nil, false
}

// foldID lowers ASCII letters, as LocalState does with the IDs it keys
// case-insensitively.
func foldID(id string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, id)
}

// loadConfigServices reads and checks the services and checks of the
// configuration, so that a mistake stops the agent before it starts;
// registerConfigServices registers them when it runs.
func (a *Agent) loadConfigServices() error {
	defs, err := catalog.ServicesFromConfig(a.cfg.Extra)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, d := range defs {
		if _, err := a.serviceChecks(d); err != nil {
			errs = append(errs, err)
		}
	}
	checks, err := configChecks(a.cfg.Extra)
	if err != nil {
		errs = append(errs, err)
	}
	for i := range checks {
		if err := a.checkRunnable(&checks[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: services in the configuration: %w", err)
	}
	a.configServices, a.configChecks = defs, checks
	return nil
}

// registerConfigServices registers what loadConfigServices read, at
// start: a service whose sidecar proxy cannot start (a port in use) stops
// the agent from starting, naming it.
func (a *Agent) registerConfigServices() error {
	var errs []error
	for _, d := range a.configServices {
		if err := a.registerService(d, false, false); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", d.ID, err))
			continue
		}
		a.log.Info("registered service", "service", d.ID, "name", d.Name, "checks", len(d.Checks))
	}
	for _, c := range a.configChecks {
		if err := a.registerCheck(c, false); err != nil {
			errs = append(errs, fmt.Errorf("check %q: %w", c.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: services in the configuration: %w", err)
	}
	return nil
}

var _ httpapi.LocalAgent = (*Agent)(nil)
