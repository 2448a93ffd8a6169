package sidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// jsonObject reads one JSON object the way Consul's decoders do: keys match
// case-insensitively and with or without underscores or dashes
// ("local_bind_port" = "LocalBindPort"); every key must be taken, or rest
// reports it as unknown.
type jsonObject struct {
	path   string
	fields map[string]json.RawMessage // normalized key → value
	orig   map[string]string          // normalized key → key as given
}

func normKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || c == '-':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func readObject(path string, raw json.RawMessage) (*jsonObject, error) {
	o := &jsonObject{path: path, fields: map[string]json.RawMessage{}, orig: map[string]string{}}
	if isNull(raw) {
		return o, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, fieldErr(path, "empty value where an object is wanted")
	}
	if raw[0] != '{' {
		return nil, fieldErr(path, "%s is not an object", describe(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, fieldErr(path, "invalid JSON: %v", err)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fieldErr(path, "invalid JSON: %v", err)
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fieldErr(join(path, key), "invalid JSON: %v", err)
		}
		n := normKey(key)
		if prev, dup := o.orig[n]; dup {
			return nil, fieldErr(join(path, key), "given twice (also as %q)", prev)
		}
		o.fields[n] = v
		o.orig[n] = key
	}
	if _, err := dec.Token(); err != nil {
		return nil, fieldErr(path, "invalid JSON: %v", err)
	}
	if dec.More() {
		return nil, fieldErr(path, "invalid JSON: data after the object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, fieldErr(path, "invalid JSON: data after the object")
	}
	return o, nil
}

// take returns the value of key (given in snake_case) and removes it; null
// counts as absent.
func (o *jsonObject) take(key string) (json.RawMessage, string, bool) {
	n := normKey(key)
	v, ok := o.fields[n]
	if !ok {
		return nil, join(o.path, key), false
	}
	field := join(o.path, o.orig[n])
	delete(o.fields, n)
	if isNull(v) {
		return nil, field, false
	}
	return v, field, true
}

// drop removes keys that are accepted and ignored.
func (o *jsonObject) drop(keys ...string) {
	for _, k := range keys {
		delete(o.fields, normKey(k))
	}
}

// dropPrefix removes keys starting with prefix (normalized), e.g. envoy_.
func (o *jsonObject) dropPrefix(prefix string) {
	p := normKey(prefix)
	for k := range o.fields {
		if strings.HasPrefix(k, p) {
			delete(o.fields, k)
		}
	}
}

// rest reports the keys nobody took.
func (o *jsonObject) rest() []error {
	var keys []string
	for n := range o.fields {
		keys = append(keys, o.orig[n])
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		errs = append(errs, fieldErr(join(o.path, k), "unknown field"))
	}
	return errs
}

func describe(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func (o *jsonObject) str(key string) (string, string, error) {
	v, field, ok := o.take(key)
	if !ok {
		return "", field, nil
	}
	s, err := rawString(v)
	if err != nil {
		return "", field, fieldErr(field, "%v", err)
	}
	return s, field, nil
}

func rawString(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	// Weak decoding: a number or boolean where a string is wanted.
	t := string(bytes.TrimSpace(v))
	if t == "true" || t == "false" {
		return t, nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return t, nil
	}
	return "", fmt.Errorf("%s is not a string", describe(v))
}

func (o *jsonObject) integer(key string) (int, string, bool, error) {
	v, field, ok := o.take(key)
	if !ok {
		return 0, field, false, nil
	}
	n, err := rawInt(v)
	if err != nil {
		return 0, field, true, fieldErr(field, "%v", err)
	}
	return n, field, true, nil
}

func rawInt(v json.RawMessage) (int, error) {
	t := strings.TrimSpace(string(v))
	if strings.HasPrefix(t, `"`) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, fmt.Errorf("%s is not a number", describe(v))
		}
		t = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is not a number", describe(v))
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("%s is not a whole number", describe(v))
	}
	if f > math.MaxInt32 || f < math.MinInt32 {
		return 0, fmt.Errorf("%s is out of range", describe(v))
	}
	return int(f), nil
}

// duration reads a Go duration string ("10s") or a number of nanoseconds,
// as Consul's decoder does.
func (o *jsonObject) duration(key string) (time.Duration, string, error) {
	v, field, ok := o.take(key)
	if !ok {
		return 0, field, nil
	}
	t := strings.TrimSpace(string(v))
	if strings.HasPrefix(t, `"`) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, field, fieldErr(field, "%s is not a duration", describe(v))
		}
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			if n, err2 := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err2 == nil {
				return time.Duration(n), field, checkNonNeg(field, time.Duration(n))
			}
			return 0, field, fieldErr(field, "%q is not a duration (like \"10s\")", s)
		}
		return d, field, checkNonNeg(field, d)
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1e18 {
		return 0, field, fieldErr(field, "%s is not a duration", describe(v))
	}
	return time.Duration(f), field, checkNonNeg(field, time.Duration(f))
}

func checkNonNeg(field string, d time.Duration) error {
	if d < 0 {
		return fieldErr(field, "%v is negative", d)
	}
	return nil
}

// millis reads a whole number of milliseconds (connect_timeout_ms).
func (o *jsonObject) millis(key string) (time.Duration, string, error) {
	n, field, ok, err := o.integer(key)
	if err != nil || !ok {
		return 0, field, err
	}
	if n < 0 {
		return 0, field, fieldErr(field, "%d is negative", n)
	}
	return time.Duration(n) * time.Millisecond, field, nil
}

func (o *jsonObject) object(key string) (*jsonObject, bool, error) {
	v, field, ok := o.take(key)
	if !ok {
		return nil, false, nil
	}
	// An object given as a one-element list (HCL blocks).
	if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(t, &list); err == nil && len(list) == 1 {
			v = list[0]
		}
	}
	obj, err := readObject(field, v)
	if err != nil {
		return nil, true, err
	}
	return obj, true, nil
}

func (o *jsonObject) list(key string) ([]json.RawMessage, string, error) {
	v, field, ok := o.take(key)
	if !ok {
		return nil, field, nil
	}
	t := bytes.TrimSpace(v)
	if len(t) > 0 && t[0] == '{' {
		return []json.RawMessage{t}, field, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(t, &list); err != nil {
		return nil, field, fieldErr(field, "%s is not a list", describe(v))
	}
	return list, field, nil
}

func (o *jsonObject) stringMap(key string) (map[string]string, string, error) {
	v, field, ok := o.take(key)
	if !ok {
		return nil, field, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, field, fieldErr(field, "%s is not an object of strings", describe(v))
	}
	m := make(map[string]string, len(raw))
	for k, v := range raw {
		s, err := rawString(v)
		if err != nil {
			return nil, field, fieldErr(field+"["+strconv.Quote(k)+"]", "%v", err)
		}
		m[k] = s
	}
	return m, field, nil
}
