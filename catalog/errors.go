package catalog

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by this package, wrapped with a prefix naming the step.
// Test for them with errors.Is.
var (
	// ErrInvalidDefinition: a service definition could not be parsed or
	// failed validation (see DefinitionError for the field).
	ErrInvalidDefinition = errors.New("invalid service definition")
	// ErrUnsupported: a definition asks for a Consul feature this agent
	// does not have (Unix socket services, namespaces, ...).
	ErrUnsupported = errors.New("not supported")
	// ErrUnknownService: no local service has the given ID.
	ErrUnknownService = errors.New("unknown service ID")
	// ErrUnknownCheck: no local check has the given ID.
	ErrUnknownCheck = errors.New("unknown check ID")
	// ErrInvalidStatus: a check status other than passing, warning or
	// critical.
	ErrInvalidStatus = errors.New("invalid check status")
	// ErrInvalidRegistration: a service or check given to LocalState lacks
	// an ID or name, or uses a reserved check ID.
	ErrInvalidRegistration = errors.New("invalid registration")
	// ErrInvalidConfig: a Config's Validate found a bad field.
	ErrInvalidConfig = errors.New("invalid catalog config")
	// ErrNoServer: the HTTPClient's BaseURL had no server to offer.
	ErrNoServer = errors.New("no server available")
	// ErrClosed: the View was closed.
	ErrClosed = errors.New("catalog view is closed")
	// ErrNoResult: the view has no result for a service yet and the
	// servers could not be reached to get one.
	ErrNoResult = errors.New("no result from the servers yet")
)

// DefinitionError is one problem with a service definition. Its message
// names the service (when it has an ID or Name), the field and the bad
// value, for example
//
//	catalog: service "web": Port: 70000 is out of range 0-65535
//	catalog: services[2]: service "db": Meta["consul-x"]: keys starting with "consul-" are reserved
type DefinitionError struct {
	// Source says where the definition came from when it was one of
	// several ("services[2]" of the configuration); may be empty.
	Source  string
	Service string // the definition's ID, or its Name; may be empty
	// Field is the JSON key as given, with the path to it for nested
	// values ("Weights.Passing", "Checks[1].Status", `Meta["a b"]`); empty
	// for the definition as a whole.
	Field string
	Msg   string
	Err   error // ErrUnsupported for a known but unsupported Consul field, else nil
}

func (e *DefinitionError) Error() string {
	s := "catalog: "
	if e.Source != "" {
		s += e.Source + ": "
	}
	s += "service"
	if e.Service != "" {
		s += " " + strconv.Quote(e.Service)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalidDefinition) true.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalidDefinition }

func (e *DefinitionError) Unwrap() error { return e.Err }

// ConfigError is one bad field of AntiEntropyConfig or ViewConfig, for
// example
//
//	catalog: config: Interval: -1s is negative
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "catalog: config: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// StatusError is a non-2xx answer from the servers' HTTP API.
type StatusError struct {
	Method string
	Path   string
	Code   int
	// Body is the start of the response body: Consul's errors are plain
	// text saying what was wrong.
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, e.Body)
}

// Temporary reports whether trying again later may succeed: a server
// error (no leader, forwarding failed), 429 or 408. Other 4xx answers mean
// the servers refuse the request itself.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == 429 || e.Code == 408
}

// transient reports whether err is worth retrying with back-off: a
// network error or a temporary StatusError.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return true
}
