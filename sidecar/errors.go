package sidecar

import (
	"errors"
	"fmt"
)

// Errors returned by this package, wrapped with a prefix naming the step.
// Test for them with errors.Is.
var (
	// ErrInvalidConfig: a Config, Spec, proxy configuration, -upstream
	// flag or ingress configuration has a bad field (see FieldError).
	ErrInvalidConfig = errors.New("invalid proxy configuration")
	// ErrUnsupported: a Consul proxy feature this agent does not have
	// (Unix sockets, transparent proxy, prepared queries, peers, ...).
	ErrUnsupported = errors.New("not supported")
	// ErrListen: a listener could not be bound.
	ErrListen = errors.New("cannot listen")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("sidecar manager is closed")
)

// FieldError is one bad field of a configuration, for example
//
//	sidecar: upstreams[0].local_bind_port: 70000 is out of range 1-65535
//	sidecar: ingress: listeners[1].routes[0]: a route needs a service or splits
type FieldError struct {
	// Where names the configuration ("ingress", a proxy's ID, or "" for
	// the Config).
	Where string
	// Field is the path to the field as given ("upstreams[0].config.protocol").
	Field string
	Msg   string
	// Err is ErrUnsupported for a known but unsupported feature, else nil.
	Err error
}

func (e *FieldError) Error() string {
	s := "sidecar: "
	if e.Where != "" {
		s += e.Where + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns ErrUnsupported for unsupported features.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func unsupported(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Err: ErrUnsupported}
}
