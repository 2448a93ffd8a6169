package catalog

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// LocalState holds the services and checks this agent owns, with their
// current statuses: the agent's source of truth for /v1/agent/services
// and /v1/agent/checks, and what AntiEntropy copies to the servers.
//
// IDs are case-insensitive, as in the catalog: adding "Web" replaces
// "web". Everything handed in and out is copied. Safe for concurrent use.
//
// Removed services and checks stay behind as tombstones (invisible to
// readers) until AntiEntropy has removed them from the servers, so a
// deregistration made while the servers are unreachable is not lost.
type LocalState struct {
	now func() time.Time

	mu       sync.Mutex
	services map[string]*localService // by fold(ID)
	checks   map[string]*localCheck   // by fold(CheckID)
	gen      uint64                   // last generation handed out
	version  uint64
	watchers map[chan struct{}]struct{}
}

type localService struct {
	svc     Service // only ID is meaningful when deleted
	deleted bool
	// inSync: the servers have svc (or, deleted, no longer have it).
	inSync bool
	// gen moves with every local change, so a push that raced with a
	// change does not mark the newer state as synced.
	gen uint64
}

type localCheck struct {
	check   HealthCheck
	deleted bool
	inSync  bool
	// outputOnly: the servers differ only in Output, which may wait for
	// AntiEntropyConfig.CheckUpdateInterval (measured from dirtySince).
	outputOnly bool
	dirtySince time.Time
	gen        uint64
}

// NewLocalState returns an empty LocalState.
func NewLocalState() *LocalState {
	return &LocalState{
		now:      time.Now,
		services: map[string]*localService{},
		checks:   map[string]*localCheck{},
		watchers: map[chan struct{}]struct{}{},
	}
}

// AddService adds or replaces a service and adds or replaces the given
// checks of it (their ServiceID is set to the service's). A check given
// without a Status keeps the status and output it has if it exists, and
// is critical otherwise. With replaceExistingChecks, the service's other
// checks are removed (not its maintenance check); their IDs are returned
// so the caller can stop their runners.
//
// An empty ID means the name, zero Weights mean DefaultWeights.
// Re-adding an identical service and checks changes nothing and
// notifies nobody.
func (l *LocalState) AddService(svc Service, checks []HealthCheck, replaceExistingChecks bool) (removed []string, err error) {
	if svc.ID == "" {
		svc.ID = svc.Service
	}
	if svc.Weights == (Weights{}) {
		svc.Weights = DefaultWeights
	}
	if err := validateService(&svc); err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for i := range checks {
		c := &checks[i]
		c.ServiceID = svc.ID
		if err := validateCheck(c); err != nil {
			return nil, fmt.Errorf("catalog: add service %q: %w", svc.ID, err)
		}
		if keep[fold(c.CheckID)] {
			return nil, fmt.Errorf("catalog: add service %q: check %q given twice: %w", svc.ID, c.CheckID, ErrInvalidRegistration)
		}
		keep[fold(c.CheckID)] = true
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	key := fold(svc.ID)
	changed := false
	e := l.services[key]
	svc = svc.Clone()
	switch {
	case e == nil:
		l.services[key] = &localService{svc: svc, gen: l.nextGen()}
		changed = true
	case e.deleted || !sameService(e.svc, svc, true):
		e.svc, e.deleted, e.inSync, e.gen = svc, false, false, l.nextGen()
		changed = true
	}
	// Checks carry the service's name and tags, as the catalog's do.
	for _, c := range l.checks {
		if !c.deleted && fold(c.check.ServiceID) == key {
			c.check.ServiceID, c.check.ServiceName, c.check.ServiceTags = svc.ID, svc.Service, slices.Clone(svc.Tags)
		}
	}
	for _, c := range checks {
		c.ServiceName, c.ServiceTags = svc.Service, slices.Clone(svc.Tags)
		if l.putCheckLocked(c) {
			changed = true
		}
	}
	if replaceExistingChecks {
		for ck, c := range l.checks {
			if c.deleted || fold(c.check.ServiceID) != key || keep[ck] || isMaintenanceCheck(c.check.CheckID) {
				continue
			}
			removed = append(removed, c.check.CheckID)
			l.deleteCheckLocked(c)
			changed = true
		}
		slices.Sort(removed)
	}
	if changed {
		l.changedLocked()
	}
	return removed, nil
}

// RemoveService removes a service and its checks, returning the IDs of
// the checks removed.
func (l *LocalState) RemoveService(id string) (removedChecks []string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := fold(id)
	e := l.services[key]
	if e == nil || e.deleted {
		return nil, fmt.Errorf("catalog: remove service %q: %w", id, ErrUnknownService)
	}
	e.svc = Service{ID: e.svc.ID}
	e.deleted, e.inSync, e.gen = true, false, l.nextGen()
	for _, c := range l.checks {
		if !c.deleted && fold(c.check.ServiceID) == key {
			removedChecks = append(removedChecks, c.check.CheckID)
			l.deleteCheckLocked(c)
		}
	}
	slices.Sort(removedChecks)
	l.changedLocked()
	return removedChecks, nil
}

// AddCheck adds or replaces a check: a node check (ServiceID "") or a
// check of a local service. Without a Status it keeps the status and
// output it has if it exists, and is critical otherwise.
func (l *LocalState) AddCheck(c HealthCheck) error {
	if err := validateCheck(&c); err != nil {
		return fmt.Errorf("catalog: add check: %w", err)
	}
	if reservedCheckID(c.CheckID) {
		return fmt.Errorf("catalog: add check: CheckID %q is reserved: %w", c.CheckID, ErrInvalidRegistration)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.ServiceID != "" {
		s := l.services[fold(c.ServiceID)]
		if s == nil || s.deleted {
			return fmt.Errorf("catalog: add check %q: ServiceID %q: %w", c.CheckID, c.ServiceID, ErrUnknownService)
		}
		c.ServiceID, c.ServiceName, c.ServiceTags = s.svc.ID, s.svc.Service, slices.Clone(s.svc.Tags)
	} else {
		c.ServiceName, c.ServiceTags = "", nil
	}
	if l.putCheckLocked(c) {
		l.changedLocked()
	}
	return nil
}

// RemoveCheck removes a check.
func (l *LocalState) RemoveCheck(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.checks[fold(id)]
	if c == nil || c.deleted {
		return fmt.Errorf("catalog: remove check %q: %w", id, ErrUnknownCheck)
	}
	l.deleteCheckLocked(c)
	l.changedLocked()
	return nil
}

// UpdateCheck sets a check's status and output: the callback for the
// health checks' results. A status change is pushed to the servers at
// once; a change of output alone may wait (see
// AntiEntropyConfig.CheckUpdateInterval). An unchanged result changes
// nothing. Results for a check that is gone return ErrUnknownCheck,
// which the health callback may ignore.
func (l *LocalState) UpdateCheck(id, status, output string) error {
	if !validStatus(status) {
		return fmt.Errorf("catalog: update check %q: %q: %w", id, status, ErrInvalidStatus)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.checks[fold(id)]
	if c == nil || c.deleted {
		return fmt.Errorf("catalog: update check %q: %w", id, ErrUnknownCheck)
	}
	switch {
	case c.check.Status != status:
		c.check.Status, c.check.Output = status, output
		l.markCheckDirty(c)
	case c.check.Output != output:
		c.check.Output = output
		c.gen = l.nextGen()
		if c.inSync {
			c.inSync, c.outputOnly, c.dirtySince = false, true, l.now()
		}
	default:
		return nil
	}
	l.changedLocked()
	return nil
}

// Service returns a local service.
func (l *LocalState) Service(id string) (Service, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.services[fold(id)]
	if e == nil || e.deleted {
		return Service{}, false
	}
	return e.svc.Clone(), true
}

// Services returns the local services, sorted by ID.
func (l *LocalState) Services() []Service {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Service, 0, len(l.services))
	for _, e := range l.services {
		if !e.deleted {
			out = append(out, e.svc.Clone())
		}
	}
	slices.SortFunc(out, func(a, b Service) int { return cmp.Compare(fold(a.ID), fold(b.ID)) })
	return out
}

// Check returns a local check.
func (l *LocalState) Check(id string) (HealthCheck, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.checks[fold(id)]
	if c == nil || c.deleted {
		return HealthCheck{}, false
	}
	return c.check.Clone(), true
}

// Checks returns the local checks, maintenance checks included, sorted
// by ID.
func (l *LocalState) Checks() []HealthCheck {
	return l.checksWhere(func(*HealthCheck) bool { return true })
}

// ServiceChecks returns the checks of one local service, sorted by ID.
func (l *LocalState) ServiceChecks(serviceID string) []HealthCheck {
	key := fold(serviceID)
	return l.checksWhere(func(c *HealthCheck) bool { return fold(c.ServiceID) == key })
}

func (l *LocalState) checksWhere(keep func(*HealthCheck) bool) []HealthCheck {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []HealthCheck
	for _, c := range l.checks {
		if !c.deleted && keep(&c.check) {
			out = append(out, c.check.Clone())
		}
	}
	slices.SortFunc(out, func(a, b HealthCheck) int { return cmp.Compare(fold(a.CheckID), fold(b.CheckID)) })
	return out
}

// Watch returns a channel that receives a value after every change to
// the services and checks (coalesced: one pending value at most), and a
// function to stop watching.
func (l *LocalState) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.watchers[ch] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.watchers, ch)
			l.mu.Unlock()
		})
	}
}

// Version moves with every change to the services and checks, for
// blocking reads of the agent's own endpoints.
func (l *LocalState) Version() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version
}

func (l *LocalState) nextGen() uint64 {
	l.gen++
	return l.gen
}

func (l *LocalState) changedLocked() {
	l.version++
	for ch := range l.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (l *LocalState) markCheckDirty(c *localCheck) {
	c.inSync, c.outputOnly, c.dirtySince, c.gen = false, false, time.Time{}, l.nextGen()
}

// putCheckLocked stores c (validated; ServiceName and ServiceTags set),
// keeping the current status and output when c has no Status. It
// reports whether anything changed.
func (l *LocalState) putCheckLocked(c HealthCheck) bool {
	key := fold(c.CheckID)
	e := l.checks[key]
	if e != nil && !e.deleted && c.Status == "" {
		c.Status, c.Output = e.check.Status, e.check.Output
	}
	if c.Status == "" {
		c.Status = StatusCritical
	}
	c = c.Clone()
	switch {
	case e == nil:
		l.checks[key] = &localCheck{check: c, gen: l.nextGen()}
	case e.deleted:
		e.check, e.deleted = c, false
		l.markCheckDirty(e)
	case sameCheck(e.check, c, true, true):
		e.check.ServiceTags = c.ServiceTags // informative; the servers derive them
		return false
	default:
		e.check = c
		l.markCheckDirty(e)
	}
	return true
}

func (l *LocalState) deleteCheckLocked(c *localCheck) {
	c.check = HealthCheck{CheckID: c.check.CheckID}
	c.deleted = true
	l.markCheckDirty(c)
}

func validStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

func validateService(s *Service) error {
	switch {
	case s.Service == "":
		return fmt.Errorf("catalog: add service %q: missing name: %w", s.ID, ErrInvalidRegistration)
	case strings.ContainsRune(s.ID, 0) || strings.ContainsRune(s.Service, 0):
		return fmt.Errorf("catalog: add service %q: NUL byte in ID or name: %w", s.ID, ErrInvalidRegistration)
	}
	return nil
}

func validateCheck(c *HealthCheck) error {
	switch {
	case c.CheckID == "":
		return fmt.Errorf("check %q: missing CheckID: %w", c.Name, ErrInvalidRegistration)
	case strings.ContainsRune(c.CheckID, 0):
		return fmt.Errorf("check %q: NUL byte in CheckID: %w", c.CheckID, ErrInvalidRegistration)
	case c.Name == "":
		return fmt.Errorf("check %q: missing Name: %w", c.CheckID, ErrInvalidRegistration)
	case c.Status != "" && !validStatus(c.Status):
		return fmt.Errorf("check %q: Status %q: %w", c.CheckID, c.Status, ErrInvalidStatus)
	case fold(c.CheckID) == fold(SerfCheckID):
		return fmt.Errorf("check %q: CheckID is reserved for the servers: %w", c.CheckID, ErrInvalidRegistration)
	}
	return nil
}

// sameService compares what the catalog stores of a service. With
// strictTags, tags are compared even under EnableTagOverride.
func sameService(a, b Service, strictTags bool) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.Service == b.Service &&
		(slices.Equal(a.Tags, b.Tags) || (!strictTags && a.EnableTagOverride)) &&
		a.Address == b.Address &&
		mapsEqual(a.TaggedAddresses, b.TaggedAddresses) && mapsEqual(a.Meta, b.Meta) &&
		a.Port == b.Port && a.Weights == b.Weights && a.EnableTagOverride == b.EnableTagOverride &&
		jsonEquivalent(a.Proxy, b.Proxy)
}

// sameCheck compares what the catalog stores of a check (not Node,
// ServiceName, ServiceTags or Type, which the servers derive or may not
// keep). Without withOutput, Output is not compared. A Definition is
// compared only when both have one: servers that do not keep it must not
// make every check look out of sync.
func sameCheck(a, b HealthCheck, withOutput, definitions bool) bool {
	return a.CheckID == b.CheckID && a.Name == b.Name && a.Status == b.Status &&
		a.Notes == b.Notes && (!withOutput || a.Output == b.Output) &&
		fold(a.ServiceID) == fold(b.ServiceID) &&
		(!definitions || len(a.Definition) == 0 || len(b.Definition) == 0 || jsonEquivalent(a.Definition, b.Definition))
}

// mapsEqual treats nil and empty alike.
func mapsEqual[M ~map[K]V, K, V comparable](a, b M) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}
