package catalog

import (
	"fmt"
	"slices"
)

// Consul's maintenance-mode texts, kept so that tools matching on them
// keep working.
const (
	nodeMaintName             = "Node Maintenance Mode"
	serviceMaintName          = "Service Maintenance Mode"
	defaultNodeMaintReason    = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	defaultServiceMaintReason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
	maintenanceCheckType      = "maintenance"
)

// EnableNodeMaintenance puts the whole node in maintenance, as Consul
// does: a critical check NodeMaintCheckID with the reason as its Notes
// takes every service of the node out of DNS and healthy lists. If
// maintenance is already on, nothing changes (the first reason stays).
func (l *LocalState) EnableNodeMaintenance(reason string) {
	if reason == "" {
		reason = defaultNodeMaintReason
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.checks[fold(NodeMaintCheckID)]; c != nil && !c.deleted {
		return
	}
	l.putCheckLocked(HealthCheck{
		CheckID: NodeMaintCheckID,
		Name:    nodeMaintName,
		Notes:   reason,
		Status:  StatusCritical,
		Type:    maintenanceCheckType,
	})
	l.changedLocked()
}

// DisableNodeMaintenance ends node maintenance; without it, nothing
// changes.
func (l *LocalState) DisableNodeMaintenance() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.checks[fold(NodeMaintCheckID)]; c != nil && !c.deleted {
		l.deleteCheckLocked(c)
		l.changedLocked()
	}
}

// NodeMaintenance reports whether the node is in maintenance, and why.
func (l *LocalState) NodeMaintenance() (reason string, on bool) {
	c, ok := l.Check(NodeMaintCheckID)
	return c.Notes, ok
}

// EnableServiceMaintenance puts one local service in maintenance: a
// critical check "_service_maintenance:<id>" with the reason as Notes.
// If it is already on, nothing changes. Removing the service removes
// the check with it.
func (l *LocalState) EnableServiceMaintenance(serviceID, reason string) error {
	if reason == "" {
		reason = defaultServiceMaintReason
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.services[fold(serviceID)]
	if s == nil || s.deleted {
		return fmt.Errorf("catalog: service maintenance %q: %w", serviceID, ErrUnknownService)
	}
	id := ServiceMaintCheckPrefix + s.svc.ID
	if c := l.checks[fold(id)]; c != nil && !c.deleted {
		return nil
	}
	l.putCheckLocked(HealthCheck{
		CheckID:     id,
		Name:        serviceMaintName,
		Notes:       reason,
		Status:      StatusCritical,
		ServiceID:   s.svc.ID,
		ServiceName: s.svc.Service,
		ServiceTags: slices.Clone(s.svc.Tags),
		Type:        maintenanceCheckType,
	})
	l.changedLocked()
	return nil
}

// DisableServiceMaintenance ends a service's maintenance; without it,
// nothing changes.
func (l *LocalState) DisableServiceMaintenance(serviceID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.services[fold(serviceID)]
	if s == nil || s.deleted {
		return fmt.Errorf("catalog: service maintenance %q: %w", serviceID, ErrUnknownService)
	}
	if c := l.checks[fold(ServiceMaintCheckPrefix+s.svc.ID)]; c != nil && !c.deleted {
		l.deleteCheckLocked(c)
		l.changedLocked()
	}
	return nil
}

// ServiceMaintenance reports whether a local service is in maintenance,
// and why.
func (l *LocalState) ServiceMaintenance(serviceID string) (reason string, on bool) {
	c, ok := l.Check(ServiceMaintCheckPrefix + serviceID)
	return c.Notes, ok
}
