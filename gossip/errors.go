package gossip

import (
	"errors"
	"fmt"
)

// Errors returned by this package, wrapped with a prefix naming the step.
// Test for them with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate found a bad field (see ConfigError).
	ErrInvalidConfig = errors.New("invalid gossip config")
	// ErrAddrInUse: the gossip port is taken, usually by another agent.
	ErrAddrInUse = errors.New("address already in use")
	// ErrKeyMismatch: a peer rejected our messages or we could not read its
	// own, because the gossip encryption keys differ or only one side
	// encrypts.
	ErrKeyMismatch = errors.New("gossip encryption key likely mismatches")
	// ErrBadKey: a gossip key is not base64 or has the wrong length.
	ErrBadKey = errors.New("bad gossip key")
	// ErrTagsTooLarge: the encoded tags exceed memberlist's 512-byte node
	// metadata limit.
	ErrTagsTooLarge = errors.New("tags too large")
	// ErrMalformedTags: node metadata received from a peer could not be
	// decoded.
	ErrMalformedTags = errors.New("malformed tags")
	// ErrNoAddrs: Join was called without addresses.
	ErrNoAddrs = errors.New("no addresses to join")
	// ErrRetryJoinExhausted: the retry-join loop gave up after RetryMax
	// attempts.
	ErrRetryJoinExhausted = errors.New("retry join gave up")
	// ErrShutdown: the Gossip was shut down.
	ErrShutdown = errors.New("gossip is shut down")
	// ErrLeft: the member is leaving or has left; it gossips no more
	// updates.
	ErrLeft = errors.New("member has left the cluster")
)

// ConfigError is one bad Config field. Its message names the field and the
// bad value, for example
//
//	gossip: SecretKey: length 7, want 16, 24 or 32 bytes
type ConfigError struct {
	Field string // Config field name, with an index for lists: "RetryJoin[1]"
	Msg   string
	Err   error // underlying error, if any (ErrTagsTooLarge for Tags)
}

func (e *ConfigError) Error() string { return "gossip: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}
