package watch

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Definition is one entry of the agent configuration's `watches` list: a
// plan and its handler.
type Definition struct {
	Plan Plan
	// Args is a "script" handler's command (handler_type "script" with
	// args).
	Args []string
	// Shell is the deprecated `handler` string, run with /bin/sh -c.
	Shell string
	// HTTP is an "http" handler (handler_type "http").
	HTTP *HTTPHandler
}

// Handler builds d's handler, checking that a script's command can run.
func (d *Definition) Handler() (Handler, error) {
	switch {
	case d.HTTP != nil:
		return d.HTTP, nil
	case len(d.Args) > 0:
		if err := CheckExecutable(d.Args[0]); err != nil {
			return nil, fmt.Errorf("args: %w", err)
		}
		return &ScriptHandler{Args: d.Args}, nil
	case d.Shell != "":
		return &ScriptHandler{Args: []string{"/bin/sh", "-c", d.Shell}}, nil
	}
	return nil, fmt.Errorf("no handler")
}

// watchKeys are the keys a `watches` entry may hold.
var watchKeys = []string{"type", "key", "prefix", "service", "tag", "passingonly", "passing_only",
	"state", "datacenter", "token", "args", "handler", "handler_type", "http_handler_config"}

var httpKeys = []string{"path", "method", "header", "timeout", "tls_skip_verify"}

// ParseConfig decodes the raw `watches` section kept in config.Config.Extra
// (a list of objects, in the shapes the config package documents: HCL
// blocks may arrive as one-element lists of objects). Errors name the
// entry and the field: "watches[1].type: ...". Nil means no watches.
func ParseConfig(raw any) ([]Definition, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		if _, isObj := asObject(raw); !isObj {
			return nil, fmt.Errorf("watches: want a list of objects, got %s", describe(raw))
		}
		list = []any{raw}
	}
	defs := make([]Definition, 0, len(list))
	for i, e := range list {
		d, err := parseOne(e)
		if err != nil {
			return nil, fmt.Errorf("watches[%d].%w", i, err)
		}
		defs = append(defs, d)
	}
	return defs, nil
}

// fieldError is "field: message"; ParseConfig prefixes the entry.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func parseOne(e any) (Definition, error) {
	var d Definition
	obj, ok := asObject(e)
	if !ok {
		return d, fieldError("(entry)", "want an object, got %s", describe(e))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(watchKeys, k) {
			return d, fieldError(k, "unknown field; want one of %s", strings.Join(watchKeys, ", "))
		}
	}
	var err error
	p := &d.Plan
	for _, f := range []struct {
		name string
		dst  *string
	}{{"type", &p.Type}, {"key", &p.Key}, {"prefix", &p.Prefix}, {"service", &p.Service}, {"state", &p.State}, {"datacenter", &p.Datacenter}} {
		if *f.dst, err = optString(obj, f.name); err != nil {
			return d, err
		}
	}
	if _, err = optString(obj, "token"); err != nil {
		return d, err
	}
	if p.Tags, err = optStrings(obj, "tag"); err != nil {
		return d, err
	}
	for _, name := range []string{"passingonly", "passing_only"} {
		if v, ok := obj[name]; ok {
			if p.PassingOnly, err = asBool(name, v); err != nil {
				return d, err
			}
		}
	}
	if p.Type == "" {
		return d, fieldError("type", "missing; want one of %s", strings.Join(Types, ", "))
	}
	if err := p.Validate(); err != nil {
		return d, err
	}

	handlerType, err := optString(obj, "handler_type")
	if err != nil {
		return d, err
	}
	if d.Args, err = optStrings(obj, "args"); err != nil {
		return d, err
	}
	if d.Shell, err = optString(obj, "handler"); err != nil {
		return d, err
	}
	_, hasHTTP := obj["http_handler_config"]
	switch handlerType {
	case "", "script":
		if hasHTTP {
			return d, fieldError("http_handler_config", "only valid with handler_type \"http\"")
		}
		if len(d.Args) > 0 && d.Shell != "" {
			return d, fieldError("handler", "give args or handler, not both")
		}
		if len(d.Args) == 0 && d.Shell == "" {
			return d, fieldError("args", "missing; a script watch needs the command to run")
		}
		for i, a := range d.Args {
			if i == 0 && strings.TrimSpace(a) == "" {
				return d, fieldError("args", "the command (first element) is empty")
			}
			if strings.ContainsRune(a, 0) {
				return d, fieldError("args", "element %d holds a NUL byte", i)
			}
		}
	case "http":
		if len(d.Args) > 0 || d.Shell != "" {
			return d, fieldError("args", "not valid with handler_type \"http\"")
		}
		if !hasHTTP {
			return d, fieldError("http_handler_config", "missing; handler_type \"http\" needs it")
		}
		if d.HTTP, err = parseHTTP(obj["http_handler_config"]); err != nil {
			return d, err
		}
	default:
		return d, fieldError("handler_type", "%q is not a handler type; want script or http", handlerType)
	}
	return d, nil
}

func parseHTTP(v any) (*HTTPHandler, error) {
	const prefix = "http_handler_config"
	obj, ok := asObject(v)
	if !ok {
		return nil, fieldError(prefix, "want an object, got %s", describe(v))
	}
	for k := range obj {
		if !slices.Contains(httpKeys, k) {
			return nil, fieldError(prefix+"."+k, "unknown field; want one of %s", strings.Join(httpKeys, ", "))
		}
	}
	h := &HTTPHandler{Header: http.Header{}}
	var err error
	if h.URL, err = optString(obj, "path"); err != nil {
		return nil, prefixed(prefix, err)
	}
	u, perr := url.Parse(h.URL)
	if h.URL == "" || perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fieldError(prefix+".path", "%q is not an http(s) URL", h.URL)
	}
	if h.Method, err = optString(obj, "method"); err != nil {
		return nil, prefixed(prefix, err)
	}
	h.Method = strings.ToUpper(h.Method)
	if h.Method != "" && !validToken(h.Method) {
		return nil, fieldError(prefix+".method", "%q is not an HTTP method", h.Method)
	}
	if hv, ok := obj["header"]; ok && hv != nil {
		ho, ok := asObject(hv)
		if !ok {
			return nil, fieldError(prefix+".header", "want an object of header: [values], got %s", describe(hv))
		}
		for k, vv := range ho {
			if !validToken(k) {
				return nil, fieldError(prefix+".header", "%q is not a header name", k)
			}
			vals, err := asStrings(prefix+".header."+k, vv)
			if err != nil {
				return nil, err
			}
			for _, s := range vals {
				if strings.ContainsAny(s, "\r\n\x00") {
					return nil, fieldError(prefix+".header."+k, "value holds a control character")
				}
				h.Header.Add(k, s)
			}
		}
	}
	if tv, ok := obj["timeout"]; ok && tv != nil {
		if h.Timeout, err = asDuration(prefix+".timeout", tv); err != nil {
			return nil, err
		}
	}
	if tv, ok := obj["tls_skip_verify"]; ok {
		if skip, err := asBool(prefix+".tls_skip_verify", tv); err != nil {
			return nil, err
		} else if skip {
			return nil, fieldError(prefix+".tls_skip_verify", "not supported")
		}
	}
	return h, nil
}

func prefixed(prefix string, err error) error { return fmt.Errorf("%s.%w", prefix, err) }

// validToken reports whether s is an RFC 7230 token (method, header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 126 || c <= 32 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// asObject accepts an object or, as HCL blocks arrive, a one-element list
// of one.
func asObject(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[string]any:
		return t, true
	case []any:
		if len(t) == 1 {
			if m, ok := t[0].(map[string]any); ok {
				return m, true
			}
		}
	case []map[string]any:
		if len(t) == 1 {
			return t[0], true
		}
	}
	return nil, false
}

func optString(obj map[string]any, name string) (string, error) {
	v, ok := obj[name]
	if !ok || v == nil {
		return "", nil
	}
	switch t := v.(type) {
	case string:
		return t, nil
	case int:
		return strconv.Itoa(t), nil
	}
	return "", fieldError(name, "want a string, got %s", describe(v))
}

func optStrings(obj map[string]any, name string) ([]string, error) {
	v, ok := obj[name]
	if !ok || v == nil {
		return nil, nil
	}
	return asStrings(name, v)
}

// asStrings accepts a list of strings or a lone string.
func asStrings(name string, v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		return []string{t}, nil
	case []string:
		return t, nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fieldError(name, "element %d: want a string, got %s", i, describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fieldError(name, "want a list of strings, got %s", describe(v))
}

func asBool(name string, v any) (bool, error) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		if b, err := strconv.ParseBool(t); err == nil {
			return b, nil
		}
	}
	return false, fieldError(name, "want true or false, got %s", describe(v))
}

// asDuration accepts "10s" or a number of seconds.
func asDuration(name string, v any) (time.Duration, error) {
	var d time.Duration
	switch t := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return 0, fieldError(name, "%q is not a duration (like 10s)", t)
		}
	case int:
		if t < 0 || t > 86400 {
			return 0, fieldError(name, "%d seconds is out of range", t)
		}
		d = time.Duration(t) * time.Second
	default:
		return 0, fieldError(name, "want a duration (like \"10s\"), got %s", describe(v))
	}
	if d < 0 {
		return 0, fieldError(name, "%v is negative", d)
	}
	return d, nil
}

// describe names a value for an error: its type and, if short, itself.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		if len(t) > 40 {
			t = t[:40] + "..."
		}
		return fmt.Sprintf("string %q", t)
	case bool, int, float64:
		return fmt.Sprintf("%T %v", v, v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Start runs each definition's plan in its own goroutine against c until
// ctx ends. It builds every handler first, so a command that cannot run
// is an error before any watch starts.
func Start(ctx context.Context, c *Client, defs []Definition, opts Options) error {
	opts = opts.withDefaults()
	handlers := make([]Handler, len(defs))
	for i := range defs {
		h, err := defs[i].Handler()
		if err != nil {
			return fmt.Errorf("watches[%d].%w", i, err)
		}
		handlers[i] = h
	}
	for i := range defs {
		p, h := defs[i].Plan, handlers[i]
		go func() { _ = p.Run(ctx, c, h, opts) }()
	}
	return nil
}
