package health

import (
	"errors"
	"strconv"
)

// Errors returned by this package, wrapped with a prefix naming the check
// or the step. Test for them with errors.Is.
var (
	// ErrInvalidDefinition: a check definition could not be parsed or
	// failed validation (see DefinitionError for the field).
	ErrInvalidDefinition = errors.New("invalid check definition")
	// ErrUnsupported: a definition asks for a Consul feature this agent
	// does not have (UDP, H2PING, Docker, alias and OS service checks).
	ErrUnsupported = errors.New("not supported")
	// ErrScriptChecksDisabled: a script check (Args) was added without
	// Config.EnableScriptChecks.
	ErrScriptChecksDisabled = errors.New("script checks are disabled (enable_script_checks)")
	// ErrUnknownCheck: no check has the given ID.
	ErrUnknownCheck = errors.New("unknown check ID")
	// ErrNotTTL: a TTL update (Pass, Warn, Fail, Update) named a check of
	// another type.
	ErrNotTTL = errors.New("not a TTL check")
	// ErrInvalidStatus: a status other than passing, warning or critical.
	ErrInvalidStatus = errors.New("invalid check status")
	// ErrInvalidConfig: Config.Validate found a bad field.
	ErrInvalidConfig = errors.New("invalid health config")
	// ErrClosed: the Checks was closed.
	ErrClosed = errors.New("health checks are closed")
)

// DefinitionError is one problem with a check definition. Its message
// names the check (when it has an ID or Name), the field and the bad
// value, for example
//
//	health: check "web": Interval: missing (required for http checks)
type DefinitionError struct {
	Check string // the definition's ID, or its Name; may be empty
	Field string // CheckDefinition field or JSON key; empty for the check as a whole
	Msg   string
	Err   error // ErrUnsupported for a known but unsupported Consul field, else nil
}

func (e *DefinitionError) Error() string {
	s := "health: check"
	if e.Check != "" {
		s += " " + strconv.Quote(e.Check)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalidDefinition) true.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalidDefinition }

func (e *DefinitionError) Unwrap() error { return e.Err }

// ConfigError is one bad Config field, for example
//
//	health: config: OutputMaxSize: -1 is negative
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "health: config: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }
