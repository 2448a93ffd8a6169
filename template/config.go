package template

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Definition is one entry of the agent configuration's `templates`
// section: a template and its quiescence wait.
type Definition struct {
	Spec Spec
	// Wait is this template's wait (zero: render at once).
	Wait Wait
	// CommandTimeout bounds the command. If zero, the Runner's default.
	CommandTimeout time.Duration
}

var templateKeys = []string{"source", "destination", "command", "wait", "command_timeout"}

// ParseConfig decodes the raw `templates` section of the agent
// configuration: a list of objects (or one object) with source,
// destination, command, wait ("2s:10s" or {min, max}) and
// command_timeout, in the shapes config.Config.Extra holds (HCL blocks
// may arrive as one-element lists). Errors name the entry and the field:
// "templates[0].destination: missing". Nil means none.
func ParseConfig(raw any) ([]Definition, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		if _, isObj := asObject(raw); !isObj {
			return nil, fmt.Errorf("templates: want a list of objects, got %s", describe(raw))
		}
		list = []any{raw}
	}
	defs := make([]Definition, 0, len(list))
	dests := map[string]int{}
	for i, e := range list {
		d, err := parseDefinition(e)
		if err != nil {
			return nil, fmt.Errorf("templates[%d].%w", i, err)
		}
		if j, dup := dests[d.Spec.Dest]; dup {
			return nil, fmt.Errorf("templates[%d].destination: %q is also templates[%d]'s", i, d.Spec.Dest, j)
		}
		dests[d.Spec.Dest] = i
		defs = append(defs, d)
	}
	return defs, nil
}

func parseDefinition(e any) (Definition, error) {
	var d Definition
	obj, ok := asObject(e)
	if !ok {
		return d, fmt.Errorf("(entry): want an object, got %s", describe(e))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(templateKeys, k) {
			return d, fmt.Errorf("%s: unknown field; want one of %s", k, strings.Join(templateKeys, ", "))
		}
	}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"source", &d.Spec.Source}, {"destination", &d.Spec.Dest}, {"command", &d.Spec.Command}} {
		v, ok := obj[f.name]
		if !ok || v == nil {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return d, fmt.Errorf("%s: want a string, got %s", f.name, describe(v))
		}
		if strings.ContainsAny(s, "\x00\r\n") {
			return d, fmt.Errorf("%s: %q holds a control character", f.name, s)
		}
		*f.dst = strings.TrimSpace(s)
	}
	switch {
	case d.Spec.Source == "":
		return d, fmt.Errorf("source: missing; the template file to render")
	case d.Spec.Dest == "":
		return d, fmt.Errorf("destination: missing; the file to write")
	case d.Spec.Dest == d.Spec.Source:
		return d, fmt.Errorf("destination: %q is the source itself", d.Spec.Dest)
	}
	if v, ok := obj["wait"]; ok && v != nil {
		if d.Wait, err = parseWaitValue(v); err != nil {
			return d, err
		}
	}
	if v, ok := obj["command_timeout"]; ok && v != nil {
		s, isStr := v.(string)
		var dur time.Duration
		if isStr {
			dur, err = time.ParseDuration(s)
		}
		if !isStr || err != nil || dur <= 0 || dur > 24*time.Hour {
			return d, fmt.Errorf("command_timeout: want a positive duration like \"30s\", got %s", describe(v))
		}
		d.CommandTimeout = dur
	}
	return d, nil
}

// parseWaitValue accepts "min[:max]" or {min = "2s", max = "10s"}.
func parseWaitValue(v any) (Wait, error) {
	if s, ok := v.(string); ok {
		w, err := ParseWait(s)
		if err != nil {
			return Wait{}, fmt.Errorf("wait: %s", strings.TrimPrefix(err.Error(), "-wait "))
		}
		return w, nil
	}
	obj, ok := asObject(v)
	if !ok {
		return Wait{}, fmt.Errorf("wait: want \"min:max\" or {min, max}, got %s", describe(v))
	}
	for k := range obj {
		if k != "min" && k != "max" {
			return Wait{}, fmt.Errorf("wait.%s: unknown field; want min, max", k)
		}
	}
	minS, _ := obj["min"].(string)
	maxS, _ := obj["max"].(string)
	if minS == "" {
		return Wait{}, fmt.Errorf("wait.min: missing or not a string")
	}
	spec := minS
	if _, has := obj["max"]; has {
		if maxS == "" {
			return Wait{}, fmt.Errorf("wait.max: want a duration string, got %s", describe(obj["max"]))
		}
		spec += ":" + maxS
	}
	if strings.Contains(minS, ":") || strings.Contains(maxS, ":") {
		return Wait{}, fmt.Errorf("wait: min and max are single durations")
	}
	w, err := ParseWait(spec)
	if err != nil {
		return Wait{}, fmt.Errorf("wait: %s", strings.TrimPrefix(err.Error(), "-wait "))
	}
	return w, nil
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
	}
	return nil, false
}

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
