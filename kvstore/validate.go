package kvstore

import (
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
	}
	return fmt.Errorf("%w: unknown command type %d", ErrInvalidCommand, c.Type)
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
