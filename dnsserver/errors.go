package dnsserver

import "errors"

// Errors returned by this package, wrapped with a prefix naming the step.
// Test for them with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate found a bad field (see ConfigError).
	ErrInvalidConfig = errors.New("invalid dns config")
	// ErrStarted: Start was called on a Server that was already started.
	ErrStarted = errors.New("dns server already started")
	// ErrClosed: the Server was shut down; it cannot be started again.
	ErrClosed = errors.New("dns server is shut down")
)

// ConfigError is one bad Config field, for example
//
//	dnsserver: config: Recursors[1]: "8.8.8.8:x" is not an IP address with an optional port
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "dnsserver: config: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }
