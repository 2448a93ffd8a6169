package config

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned (wrapped) by this package; test with errors.Is. The
// messages users see come from the wrapping errors, which name the file,
// key and value.
var (
	// ErrSyntax: a file is not valid JSON or HCL.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey: a file sets a key this agent does not know.
	ErrUnknownKey = errors.New("unknown key")
	// ErrWrongType: a value has the wrong type for its key, e.g. a word
	// where a port number goes.
	ErrWrongType = errors.New("wrong type")
	// ErrInvalid: a value has the right type but is not allowed (Validate).
	ErrInvalid = errors.New("invalid value")
	// ErrPortInUse: CheckPorts found a port another process holds.
	ErrPortInUse = errors.New("port in use")
)

// FieldError is one problem with one setting. Its message is
// "<field>: <problem>", e.g. `ports.http: "abc" is not an integer`.
type FieldError struct {
	// Field names the setting: a Consul key ("ports.http", "retry_join[1]")
	// or, for the environment, the variable's name.
	Field string
	// Problem says what is wrong, naming the value.
	Problem string
	// Kind is one of the Err* values above.
	Kind error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns e.Kind.
func (e *FieldError) Unwrap() error { return e.Kind }

func fieldErr(kind error, field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Kind: kind}
}

// unknownKeyError reports a key no decoder knows, with the nearest known key
// if one is close.
type unknownKeyError struct {
	key string
	// suggestion is the key the user likely meant, or "section sub" for a
	// nested key written flat ("ports http"), or "".
	suggestion string
}

func (e *unknownKeyError) Error() string {
	s := fmt.Sprintf("unknown key %s", quote(e.key))
	if section, sub, ok := strings.Cut(e.suggestion, " "); ok {
		// A nested key written flat at the top: "ports.http".
		s += fmt.Sprintf(" (put %s inside %s { })", sub, section)
	} else if e.suggestion != "" {
		s += fmt.Sprintf(" (did you mean %q?)", e.suggestion)
	}
	return s
}

func (e *unknownKeyError) Unwrap() error { return ErrUnknownKey }

// sourceError prefixes a problem with the source it came from:
// "config: /etc/a.json: ...".
type sourceError struct {
	source string
	err    error
}

func (e *sourceError) Error() string { return "config: " + e.source + ": " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// inSource prefixes each of errs with source and joins them, one per line.
func inSource(source string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = &sourceError{source: source, err: err}
	}
	return errors.Join(out...)
}

// kindError is a message that is not about one field, e.g. a syntax error,
// carrying one of the Err* values for errors.Is.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
