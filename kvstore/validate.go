package kvstore

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxSessionIDSize bounds session IDs (Consul's are 36-byte UUIDs).
const maxSessionIDSize = 128

// Validate checks c against the limits of this package before it is
// proposed: known type and verbs, key and value sizes, transaction length,
// session fields. Store.Apply calls it; the HTTP layer may call it earlier
// to answer 400. The state machine does not depend on it: it applies
// whatever was committed, deterministically.
func (c *Command) Validate() error {
	switch c.Type {
	case CmdKV:
		if !c.KV.Verb.IsWrite() {
			return fmt.Errorf("%w: verb %q is not a write", ErrInvalidCommand, c.KV.Verb)
		}
		return validateOp(&c.KV)
	case CmdTxn:
		if len(c.Ops) > MaxTxnOps {
			return fmt.Errorf("%w: %d operations, at most %d", ErrTooManyOps, len(c.Ops), MaxTxnOps)
		}
		for i := range c.Ops {
			if err := validateOp(&c.Ops[i]); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		}
		return nil
	case CmdSessionCreate:
		return validateSession(&c.Session)
	case CmdSessionDestroy:
		return validateSessionID(c.Session.ID)
	case CmdReapTombstones:
		return nil
	case CmdCatalogRegister, CmdCatalogDeregister, CmdCatalogSync:
		return validateCatalogCommand(c)
	}
	return fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, c.Type)
}

// validateCatalogCommand checks a catalog command. Unlike the other
// checks in this file the state machine runs it too, before applying: it
// depends on the command alone, so every replica refuses alike, and the
// tables never hold a name with a NUL byte (their key separator).
// Messages name the field as in Consul's registration body.
func validateCatalogCommand(c *Command) error {
	switch c.Type {
	case CmdCatalogRegister:
		return validateRegistration(c.Register)
	case CmdCatalogDeregister:
		return validateDeregistration(c.Deregister)
	case CmdCatalogSync:
		if len(c.CatalogOps) > MaxCatalogOps {
			return fmt.Errorf("%w: %d catalog operations, at most %d", ErrTooManyOps, len(c.CatalogOps), MaxCatalogOps)
		}
		for i, op := range c.CatalogOps {
			var err error
			switch {
			case (op.Register == nil) == (op.Deregister == nil):
				err = fmt.Errorf("%w: want exactly one of Register and Deregister", ErrInvalidCommand)
			case op.Register != nil:
				err = validateRegistration(op.Register)
			default:
				err = validateDeregistration(op.Deregister)
			}
			if err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: not a catalog command: type %d", ErrInvalidCommand, c.Type)
}

func validateRegistration(reg *CatalogRegistration) error {
	if reg == nil {
		return fmt.Errorf("%w: missing registration", ErrInvalidCommand)
	}
	if err := validateName("node name (Node)", reg.Node.Node, true); err != nil {
		return err
	}
	if reg.Node.ID != "" && !validUUID(reg.Node.ID) {
		return fmt.Errorf("%w: node ID (ID) %q is not a UUID", ErrInvalidCommand, reg.Node.ID)
	}
	if !reg.SkipNodeUpdate && reg.Node.Address == "" {
		return fmt.Errorf("%w: missing node address (Address); it may be left out only with SkipNodeUpdate", ErrInvalidCommand)
	}
	if s := reg.Service; s != nil {
		if err := validateName("service name (Service.Service)", s.Service, true); err != nil {
			return err
		}
		if err := validateName("service ID (Service.ID)", s.ID, false); err != nil {
			return err
		}
		if s.Port < 0 || s.Port > 65535 {
			return fmt.Errorf("%w: service port (Service.Port) %d not in [0, 65535]", ErrInvalidCommand, s.Port)
		}
		if s.Weights.Passing < 0 || s.Weights.Warning < 0 {
			return fmt.Errorf("%w: negative service weights (Service.Weights) %+v", ErrInvalidCommand, s.Weights)
		}
		if len(s.Proxy) > 0 && !json.Valid(s.Proxy) {
			return fmt.Errorf("%w: service proxy (Service.Proxy) is not valid JSON", ErrInvalidCommand)
		}
	}
	if len(reg.Checks) > MaxCatalogChecks {
		return fmt.Errorf("%w: %d checks, at most %d", ErrTooManyOps, len(reg.Checks), MaxCatalogChecks)
	}
	for i, c := range reg.Checks {
		f := fmt.Sprintf("Checks[%d]", i)
		if c == nil {
			return fmt.Errorf("%w: %s is null", ErrInvalidCommand, f)
		}
		id := c.CheckID
		if id == "" {
			id = c.Name
		}
		if err := validateName("check ID ("+f+".CheckID or .Name)", id, true); err != nil {
			return err
		}
		if c.Node != "" && fold(c.Node) != fold(reg.Node.Node) {
			return fmt.Errorf("%w: check %q is for node %q (%s.Node), not the node registered, %q", ErrInvalidCommand, id, c.Node, f, reg.Node.Node)
		}
		if c.Status != "" && !validCheckStatus(c.Status) {
			return fmt.Errorf("%w: check %q has status %q (%s.Status): want passing, warning or critical", ErrInvalidCommand, id, c.Status, f)
		}
		if err := validateName("service ID of check ("+f+".ServiceID)", c.ServiceID, false); err != nil {
			return err
		}
		if len(c.Definition) > 0 && !json.Valid(c.Definition) {
			return fmt.Errorf("%w: check %q definition (%s.Definition) is not valid JSON", ErrInvalidCommand, id, f)
		}
	}
	return nil
}

func validateDeregistration(d *CatalogDeregistration) error {
	if d == nil {
		return fmt.Errorf("%w: missing deregistration", ErrInvalidCommand)
	}
	if err := validateName("node name (Node)", d.Node, true); err != nil {
		return err
	}
	if err := validateName("service ID (ServiceID)", d.ServiceID, false); err != nil {
		return err
	}
	return validateName("check ID (CheckID)", d.CheckID, false)
}

// validateName checks a catalog name: present when required, at most
// MaxCatalogNameSize bytes, no NUL byte.
func validateName(what, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%w: missing %s", ErrInvalidCommand, what)
	case len(v) > MaxCatalogNameSize:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidCommand, what, MaxCatalogNameSize)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalidCommand, what, v)
	}
	return nil
}

// validUUID reports whether s is a UUID in its 36-character text form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func validateOp(o *KVOp) error {
	if !o.Verb.valid() {
		return fmt.Errorf("%w: unknown verb %q", ErrInvalidCommand, o.Verb)
	}
	if len(o.Key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrKeyTooLarge, len(o.Key), MaxKeySize)
	}
	if len(o.Value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrValueTooLarge, len(o.Value), MaxValueSize)
	}
	switch o.Verb {
	case VerbGetTree, VerbDeleteTree:
		// An empty prefix means every key, as in Consul.
	default:
		if o.Key == "" {
			return fmt.Errorf("%w: %s needs a key", ErrInvalidCommand, o.Verb)
		}
	}
	switch o.Verb {
	case VerbLock, VerbUnlock:
		if o.Session == "" {
			return fmt.Errorf("%w: %s needs a session", ErrInvalidCommand, o.Verb)
		}
	}
	if len(o.Session) > maxSessionIDSize {
		return fmt.Errorf("%w: session ID longer than %d bytes", ErrInvalidCommand, maxSessionIDSize)
	}
	return nil
}

func validateSessionID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: missing session ID", ErrInvalidCommand)
	}
	if len(id) > maxSessionIDSize || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: bad session ID", ErrInvalidCommand)
	}
	return nil
}

func validateSession(s *Session) error {
	if s.ID != "" {
		if err := validateSessionID(s.ID); err != nil {
			return err
		}
	}
	switch s.Behavior {
	case "", BehaviorRelease, BehaviorDelete:
	default:
		return fmt.Errorf("%w: session behavior %q", ErrInvalidCommand, s.Behavior)
	}
	if s.LockDelay < 0 || s.LockDelay > MaxLockDelay {
		return fmt.Errorf("%w: lock-delay %s not in [0, %s]", ErrInvalidSessionTTL, s.LockDelay, MaxLockDelay)
	}
	if s.TTL < 0 || s.TTL > MaxSessionTTL {
		return fmt.Errorf("%w: TTL %s not in [0, %s]", ErrInvalidSessionTTL, s.TTL, MaxSessionTTL)
	}
	return nil
}
