// Package watch runs watch plans against an agent's HTTP API, as
// `consul watch` does: a plan names what to follow (a key, a key prefix,
// the service list, one service's instances, the nodes, or checks), a
// loop of blocking queries follows it (X-Consul-Index, ?index=&wait=, no
// polling) and a handler runs with the JSON result whenever the result's
// content changes. Plans come from the command line (`agent watch`) or
// from the agent configuration's `watches` list (ParseConfig).
//
// The package holds its own small HTTP client (Client) rather than the
// Consul Go client: it needs GET with the blocking parameters and nothing
// more. It does not render templates; package template builds on Follow
// for that.
package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The watch types, as Consul names them.
const (
	TypeKey       = "key"
	TypeKeyPrefix = "keyprefix"
	TypeServices  = "services"
	TypeService   = "service"
	TypeNodes     = "nodes"
	TypeChecks    = "checks"
)

// Types lists the supported watch types.
var Types = []string{TypeKey, TypeKeyPrefix, TypeServices, TypeService, TypeNodes, TypeChecks}

// checkStates are the values of a checks watch's state.
var checkStates = []string{"any", "passing", "warning", "critical"}

// Plan says what one watch follows.
type Plan struct {
	// Type is one of Types.
	Type string
	// Key is the key of a key watch.
	Key string
	// Prefix is the prefix of a keyprefix watch.
	Prefix string
	// Service is the service of a service watch, or of a checks watch
	// that follows one service's checks.
	Service string
	// Tags filter a service watch's instances (all must match).
	Tags []string
	// PassingOnly keeps only a service watch's instances whose checks all
	// pass.
	PassingOnly bool
	// State is a checks watch's state filter: any, passing, warning,
	// critical. If both it and Service are empty, any is used.
	State string
	// Datacenter, if set, is sent as ?dc=.
	Datacenter string
}

// Validate reports the first problem with p, naming the field.
func (p *Plan) Validate() error {
	if p.Type == "" {
		return fmt.Errorf("type: missing; want one of %s", strings.Join(Types, ", "))
	}
	if !slices.Contains(Types, p.Type) {
		return fmt.Errorf("type: %q is not a watch type; want one of %s", p.Type, strings.Join(Types, ", "))
	}
	// Which fields each type takes.
	allowed := map[string][]string{
		TypeKey:       {"key"},
		TypeKeyPrefix: {"prefix"},
		TypeServices:  {},
		TypeService:   {"service", "tag", "passingonly"},
		TypeNodes:     {},
		TypeChecks:    {"service", "state"},
	}[p.Type]
	set := map[string]bool{
		"key": p.Key != "", "prefix": p.Prefix != "", "service": p.Service != "",
		"tag": len(p.Tags) > 0, "passingonly": p.PassingOnly, "state": p.State != "",
	}
	for _, f := range []string{"key", "prefix", "service", "tag", "passingonly", "state"} {
		if set[f] && !slices.Contains(allowed, f) {
			return fmt.Errorf("%s: not valid for a %s watch", f, p.Type)
		}
	}
	switch p.Type {
	case TypeKey:
		if p.Key == "" {
			return fmt.Errorf("key: missing; a key watch needs the key to watch")
		}
		if strings.HasPrefix(p.Key, "/") {
			return fmt.Errorf("key: %q must not start with /", p.Key)
		}
	case TypeKeyPrefix:
		if p.Prefix == "" {
			return fmt.Errorf("prefix: missing; a keyprefix watch needs the prefix to watch")
		}
		if strings.HasPrefix(p.Prefix, "/") {
			return fmt.Errorf("prefix: %q must not start with /", p.Prefix)
		}
	case TypeService:
		if p.Service == "" {
			return fmt.Errorf("service: missing; a service watch needs the service to watch")
		}
		for _, t := range p.Tags {
			if t == "" {
				return fmt.Errorf("tag: empty tag")
			}
		}
	case TypeChecks:
		if p.Service != "" && p.State != "" {
			return fmt.Errorf("state: a checks watch takes service or state, not both")
		}
		if p.State != "" && !slices.Contains(checkStates, p.State) {
			return fmt.Errorf("state: %q is not a check state; want one of %s", p.State, strings.Join(checkStates, ", "))
		}
	}
	for _, f := range []struct{ name, v string }{{"key", p.Key}, {"prefix", p.Prefix}, {"service", p.Service}, {"datacenter", p.Datacenter}} {
		if strings.ContainsAny(f.v, "\x00\r\n") {
			return fmt.Errorf("%s: %q holds a control character", f.name, f.v)
		}
	}
	if strings.Contains(p.Service, "/") {
		return fmt.Errorf("service: %q must not contain /", p.Service)
	}
	return nil
}

// escapePath escapes each /-separated segment of a key.
func escapePath(s string) string {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// Query is the endpoint p follows. p must be valid.
func (p *Plan) Query() Query {
	q := Query{Params: url.Values{}}
	switch p.Type {
	case TypeKey:
		q.Path = "/v1/kv/" + escapePath(p.Key)
	case TypeKeyPrefix:
		q.Path = "/v1/kv/" + escapePath(p.Prefix)
		q.Params.Set("recurse", "")
	case TypeServices:
		q.Path = "/v1/catalog/services"
	case TypeService:
		q.Path = "/v1/health/service/" + url.PathEscape(p.Service)
		for _, t := range p.Tags {
			q.Params.Add("tag", t)
		}
		if p.PassingOnly {
			q.Params.Set("passing", "")
		}
	case TypeNodes:
		q.Path = "/v1/catalog/nodes"
	case TypeChecks:
		if p.Service != "" {
			q.Path = "/v1/health/checks/" + url.PathEscape(p.Service)
		} else {
			state := p.State
			if state == "" {
				state = "any"
			}
			q.Path = "/v1/health/state/" + state
		}
	}
	if p.Datacenter != "" {
		q.Params.Set("dc", p.Datacenter)
	}
	return q
}

// String describes p for logs: "service web tag=v1".
func (p *Plan) String() string {
	s := p.Type
	switch p.Type {
	case TypeKey:
		s += " " + p.Key
	case TypeKeyPrefix:
		s += " " + p.Prefix
	case TypeService:
		s += " " + p.Service
		for _, t := range p.Tags {
			s += " tag=" + t
		}
		if p.PassingOnly {
			s += " passingonly"
		}
	case TypeChecks:
		if p.Service != "" {
			s += " service=" + p.Service
		} else if p.State != "" {
			s += " state=" + p.State
		}
	}
	return s
}

// Shape turns an answer into the JSON a handler gets, indented as
// `consul watch` prints it: a key watch gets the one key's object (null
// when the key does not exist), a keyprefix watch the list of keys ([]
// when none), the others the endpoint's answer.
func (p *Plan) Shape(res Result) ([]byte, error) {
	var v any
	switch {
	case !res.Found && p.Type == TypeKey:
		v = nil
	case !res.Found:
		v = []any{}
	case p.Type == TypeKey:
		var pairs []json.RawMessage
		if err := json.Unmarshal(res.Body, &pairs); err != nil {
			return nil, fmt.Errorf("decode answer: %w", err)
		}
		if len(pairs) > 0 {
			v = pairs[0]
		}
	default:
		v = json.RawMessage(bytes.TrimSpace(res.Body))
		if len(v.(json.RawMessage)) == 0 {
			v = nil
		}
	}
	out, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return append(out, '\n'), nil
}

// Run follows p until ctx ends, calling h with the shaped result once at
// the start and then on each change (a key that does not exist is null).
// Handler failures are logged (with the exit code and output for
// scripts) and do not stop the watch. Run returns ctx's error.
func (p *Plan) Run(ctx context.Context, c *Client, h Handler, opts Options) error {
	opts = opts.withDefaults()
	log := opts.Logger.With("watch", p.String())
	return Follow(ctx, c, p.Query(), opts, func(res Result) {
		data, err := p.Shape(res)
		if err != nil {
			log.Error("watch: bad answer from the agent", "err", err)
			return
		}
		if err := h.Handle(ctx, res.Index, data); err != nil {
			if ctx.Err() != nil {
				return
			}
			attrs := []any{"index", res.Index, "err", err}
			var he *HandlerError
			if asHandlerError(err, &he) {
				attrs = append(attrs, "exit_code", he.ExitCode, "output", he.Output)
			}
			log.Error("watch: handler failed", attrs...)
			return
		}
		log.Debug("watch: handler ran", "index", res.Index)
	})
}
