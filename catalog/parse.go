package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// ParseServiceDefinition reads one service definition in the JSON shapes
// Consul accepts: the body of PUT /v1/agent/service/register, or a
// "service" entry of a configuration file.
//
// Keys match case-insensitively and with or without underscores, so
// "EnableTagOverride" and "enable_tag_override" are one key; the keys of
// Meta and TaggedAddresses are the user's and are kept as given. As in
// Consul's weak decoding, a string holding a number or boolean is
// accepted where one is wanted, a number where a string is, and a lone
// string where a list of strings is; JSON null leaves a field unset. An
// object given as a one-element list of objects (how HCL blocks arrive in
// configuration files) is accepted. An unknown key is an error, and so is
// a Consul feature this agent lacks (SocketPath, Ports, Locality,
// namespaces, partitions, managed proxies) when given a value.
//
// The result has its defaults filled in (FillDefaults; Weights default to
// DefaultWeights) but is not validated: call Validate. Errors are
// *DefinitionError values joined with errors.Join.
func ParseServiceDefinition(data []byte) (*ServiceDefinition, error) {
	x, err := decodeValue(data)
	if err != nil {
		return nil, &DefinitionError{Msg: "parse: " + err.Error()}
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, &DefinitionError{Msg: "parse: want a JSON object, got " + jsonKind(x)}
	}
	d, errs := parseObject(m)
	if len(errs) > 0 {
		return nil, joinDefinitionErrors(errs, d.label(), "")
	}
	return d, nil
}

// ServiceDefinitionFromMap reads a definition from a decoded
// configuration section (an element of config.Config.Extra's "service" or
// "services" list), with the same rules as ParseServiceDefinition.
func ServiceDefinitionFromMap(m map[string]any) (*ServiceDefinition, error) {
	d, errs := parseMap(m)
	if len(errs) > 0 {
		return nil, joinDefinitionErrors(errs, d.label(), "")
	}
	return d, nil
}

// ServicesFromConfig reads and validates the services of a configuration:
// the "service" and "services" lists of config.Config.Extra (a lone
// object is taken as a one-element list). Errors name the entry
// ("services[2]") as well as the field; two entries with one ID are an
// error. Warnings (DNS-incompatible names) are for the caller to log.
func ServicesFromConfig(extra map[string]any) ([]*ServiceDefinition, error) {
	var out []*ServiceDefinition
	var errs []error
	seen := map[string]string{} // folded ID -> source
	for _, key := range []string{"service", "services"} {
		v, ok := extra[key]
		if !ok || v == nil {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		for i, e := range list {
			src := fmt.Sprintf("%s[%d]", key, i)
			objs, ok := asObjects(e)
			if !ok || len(objs) != 1 {
				errs = append(errs, &DefinitionError{Source: src, Msg: fmt.Sprintf("%s is not an object", describe(e))})
				continue
			}
			d, perrs := parseMap(objs[0])
			if len(perrs) == 0 {
				v := validator{}
				v.service(d, "", false)
				perrs = v.errs
			}
			if len(perrs) > 0 {
				errs = append(errs, joinDefinitionErrors(perrs, d.label(), src))
				continue
			}
			if prev, dup := seen[fold(d.ID)]; dup {
				errs = append(errs, &DefinitionError{Source: src, Service: d.ID, Field: "ID", Msg: fmt.Sprintf("%q is also the ID of %s", d.ID, prev)})
				continue
			}
			seen[fold(d.ID)] = src
			out = append(out, d)
		}
	}
	return out, errors.Join(errs...)
}

// UnmarshalJSON parses with ParseServiceDefinition, so a definition can
// sit inside a larger structure.
func (d *ServiceDefinition) UnmarshalJSON(data []byte) error {
	parsed, err := ParseServiceDefinition(data)
	if err != nil {
		return err
	}
	*d = *parsed
	return nil
}

// MarshalJSON writes Consul's CamelCase keys, empty fields left out, the
// checks as "Checks" (their Raw), and SidecarService inside "Connect".
// ParseServiceDefinition reads it back to an equal definition.
func (d ServiceDefinition) MarshalJSON() ([]byte, error) {
	var connect json.RawMessage
	if d.Connect != nil || d.SidecarService != nil {
		m := map[string]any{}
		if x, err := decodeValue(d.Connect); err == nil {
			if o, ok := x.(map[string]any); ok {
				m = o
			}
		}
		if d.SidecarService != nil {
			m["SidecarService"] = d.SidecarService
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		connect = b
	}
	var checks []json.RawMessage
	for _, c := range d.Checks {
		raw := c.Raw
		if len(raw) == 0 {
			raw = withIdentity(nil, c.ID, c.Name, c.ServiceID)
		}
		checks = append(checks, raw)
	}
	var weights *Weights
	if d.Weights != (Weights{}) {
		weights = &d.Weights
	}
	return json.Marshal(struct {
		Kind              string                    `json:",omitempty"`
		ID                string                    `json:",omitempty"`
		Name              string                    `json:",omitempty"`
		Tags              []string                  `json:",omitempty"`
		Address           string                    `json:",omitempty"`
		TaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
		Meta              map[string]string         `json:",omitempty"`
		Port              int                       `json:",omitempty"`
		EnableTagOverride bool                      `json:",omitempty"`
		Weights           *Weights                  `json:",omitempty"`
		Proxy             json.RawMessage           `json:",omitempty"`
		Connect           json.RawMessage           `json:",omitempty"`
		Checks            []json.RawMessage         `json:",omitempty"`
		Token             string                    `json:",omitempty"`
	}{d.Kind, d.ID, d.Name, d.Tags, d.Address, d.TaggedAddresses, d.Meta, d.Port,
		d.EnableTagOverride, weights, d.Proxy, connect, checks, d.Token})
}

// parseMap normalises a configuration map through JSON, so that its ints
// and float64s read as the JSON numbers of an HTTP body do.
func parseMap(m map[string]any) (*ServiceDefinition, []*DefinitionError) {
	b, err := json.Marshal(m)
	if err != nil {
		return &ServiceDefinition{}, []*DefinitionError{{Msg: "parse: " + err.Error()}}
	}
	x, err := decodeValue(b)
	if err != nil {
		return &ServiceDefinition{}, []*DefinitionError{{Msg: "parse: " + err.Error()}}
	}
	obj, _ := x.(map[string]any)
	if obj == nil {
		return &ServiceDefinition{}, []*DefinitionError{{Msg: "parse: want an object, got null"}}
	}
	return parseObject(obj)
}

func parseObject(m map[string]any) (*ServiceDefinition, []*DefinitionError) {
	p := &parser{}
	d := p.service(m, "", false)
	return d, p.errs
}

func joinDefinitionErrors(errs []*DefinitionError, label, source string) error {
	if len(errs) == 0 {
		return nil
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		if e.Service == "" {
			e.Service = label
		}
		if e.Source == "" {
			e.Source = source
		}
		joined[i] = e
	}
	return errors.Join(joined...)
}

type parser struct{ errs []*DefinitionError }

func (p *parser) bad(field, format string, args ...any) {
	p.errs = append(p.errs, &DefinitionError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) fail(field string, err error) {
	if err != nil {
		p.errs = append(p.errs, &DefinitionError{Field: field, Msg: err.Error()})
	}
}

// building is a definition being parsed: the checks are put in order
// (Check before Checks) once every key is read.
type building struct {
	d            *ServiceDefinition
	check        []checkSource
	checks       []checkSource
	weightsGiven bool
	nested       bool
}

type checkSource struct {
	field string
	obj   map[string]any
}

type serviceField struct {
	name string // ServiceDefinition field, for duplicate detection
	set  func(p *parser, b *building, field string, v any)
}

func stringField(name string, ptr func(*ServiceDefinition) *string) serviceField {
	return serviceField{name, func(p *parser, b *building, field string, v any) {
		s, err := asString(v)
		p.fail(field, err)
		*ptr(b.d) = s
	}}
}

// serviceFields maps canonical keys to fields. It is filled in init:
// connect parses a nested definition with it.
var serviceFields map[string]serviceField

func init() { serviceFields = newServiceFields() }

func newServiceFields() map[string]serviceField {
	return map[string]serviceField{
		"kind":    stringField("Kind", func(d *ServiceDefinition) *string { return &d.Kind }),
		"id":      stringField("ID", func(d *ServiceDefinition) *string { return &d.ID }),
		"name":    stringField("Name", func(d *ServiceDefinition) *string { return &d.Name }),
		"address": stringField("Address", func(d *ServiceDefinition) *string { return &d.Address }),
		"token":   stringField("Token", func(d *ServiceDefinition) *string { return &d.Token }),
		"tags": {"Tags", func(p *parser, b *building, field string, v any) {
			tags, err := asStrings(v)
			p.fail(field, err)
			b.d.Tags = tags
		}},
		"port": {"Port", func(p *parser, b *building, field string, v any) {
			n, err := asInt(v)
			p.fail(field, err)
			b.d.Port = n
		}},
		"enabletagoverride": {"EnableTagOverride", func(p *parser, b *building, field string, v any) {
			on, err := asBool(v)
			p.fail(field, err)
			b.d.EnableTagOverride = on
		}},
		"meta":            {"Meta", (*parser).meta},
		"taggedaddresses": {"TaggedAddresses", (*parser).taggedAddresses},
		"weights":         {"Weights", (*parser).weights},
		"proxy":           {"Proxy", (*parser).proxy},
		"connect":         {"Connect", (*parser).connect},
		"check": {"Check", func(p *parser, b *building, field string, v any) {
			b.check = p.checkSources(field, v, true)
		}},
		"checks": {"Checks", func(p *parser, b *building, field string, v any) {
			b.checks = p.checkSources(field, v, false)
		}},
	}
}

// unsupportedFields are Consul keys this agent knows but cannot honour;
// they are refused when given a value.
var unsupportedFields = map[string]string{
	"socketpath": "Unix socket services are",
	"ports":      "services with several named ports are",
	"locality":   "locality-aware routing is",
	"ai":         "AI service metadata is",
	"namespace":  "namespaces are",
	"partition":  "admin partitions are",
}

func (p *parser) service(m map[string]any, prefix string, nested bool) *ServiceDefinition {
	b := &building{d: &ServiceDefinition{}, nested: nested}
	seen := map[string]string{} // field name -> key as given
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		canon := canonicalKey(k)
		field := prefix + k
		f, ok := serviceFields[canon]
		if !ok {
			if what, ok := unsupportedFields[canon]; ok {
				if !isZero(v) && !(v == "default" && (canon == "namespace" || canon == "partition")) {
					p.errs = append(p.errs, &DefinitionError{Field: field, Msg: what + " not supported", Err: ErrUnsupported})
				}
				continue
			}
			p.bad(field, "unknown key")
			continue
		}
		if prev, dup := seen[f.name]; dup {
			if !reflect.DeepEqual(m[prev], v) {
				p.bad(field, "conflicts with %q: both set %s", prefix+prev, f.name)
			}
			continue
		}
		seen[f.name] = k
		f.set(p, b, field, v)
	}
	d := b.d
	if !b.weightsGiven {
		d.Weights = DefaultWeights
	}
	for _, src := range slices.Concat(b.check, b.checks) {
		d.Checks = append(d.Checks, p.check(src.field, src.obj))
	}
	if !nested {
		d.FillDefaults()
	}
	return d
}

// object reads a single object (or a one-element list of one, from HCL).
// ok is false for null or a bad value (reported).
func (p *parser) object(field string, v any) (map[string]any, bool) {
	objs, ok := asObjects(v)
	switch {
	case !ok:
		p.bad(field, "%s is not an object", describe(v))
		return nil, false
	case len(objs) == 0:
		return nil, false
	case len(objs) > 1:
		p.bad(field, "given %d times; want one object", len(objs))
		return nil, false
	}
	return objs[0], true
}

// mergedObject reads an object, merging the objects of a list (repeated
// HCL blocks).
func (p *parser) mergedObject(field string, v any) map[string]any {
	objs, ok := asObjects(v)
	if !ok {
		p.bad(field, "%s is not an object", describe(v))
		return nil
	}
	if len(objs) == 1 {
		return objs[0]
	}
	out := map[string]any{}
	for _, o := range objs {
		for k, val := range o {
			if prev, dup := out[k]; dup && !reflect.DeepEqual(prev, val) {
				p.bad(fmt.Sprintf("%s[%q]", field, k), "given twice with different values")
			}
			out[k] = val
		}
	}
	return out
}

func (p *parser) meta(b *building, field string, v any) {
	obj := p.mergedObject(field, v)
	if len(obj) == 0 {
		return
	}
	meta := make(map[string]string, len(obj))
	for k, val := range obj {
		s, err := asString(val)
		if err != nil {
			p.bad(fmt.Sprintf("%s[%q]", field, k), "%v", err)
			continue
		}
		meta[k] = s
	}
	b.d.Meta = meta
}

func (p *parser) taggedAddresses(b *building, field string, v any) {
	obj := p.mergedObject(field, v)
	if len(obj) == 0 {
		return
	}
	out := make(map[string]ServiceAddress, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		f := fmt.Sprintf("%s[%q]", field, name)
		a, ok := p.object(f, obj[name])
		if !ok {
			continue
		}
		var sa ServiceAddress
		for _, k := range slices.Sorted(maps.Keys(a)) {
			switch canonicalKey(k) {
			case "address":
				s, err := asString(a[k])
				p.fail(f+"."+k, err)
				sa.Address = s
			case "port":
				n, err := asInt(a[k])
				p.fail(f+"."+k, err)
				sa.Port = n
			default:
				p.bad(f+"."+k, "unknown key")
			}
		}
		out[name] = sa
	}
	b.d.TaggedAddresses = out
}

func (p *parser) weights(b *building, field string, v any) {
	obj, ok := p.object(field, v)
	if !ok {
		return
	}
	b.weightsGiven = true
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		n, err := asInt(obj[k])
		switch canonicalKey(k) {
		case "passing":
			p.fail(field+"."+k, err)
			b.d.Weights.Passing = n
		case "warning":
			p.fail(field+"."+k, err)
			b.d.Weights.Warning = n
		default:
			p.bad(field+"."+k, "unknown key")
		}
	}
}

func (p *parser) proxy(b *building, field string, v any) {
	obj, ok := p.object(field, v)
	if !ok || len(obj) == 0 {
		return
	}
	raw, err := json.Marshal(obj)
	p.fail(field, err)
	b.d.Proxy = raw
}

// connect keeps the Connect object, less its SidecarService, which it
// parses as a definition of its own.
func (p *parser) connect(b *building, field string, v any) {
	obj, ok := p.object(field, v)
	if !ok {
		return
	}
	rest := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		val := obj[k]
		switch canonicalKey(k) {
		case "native":
			_, err := asBool(val)
			p.fail(field+"."+k, err)
			rest[k] = val
		case "sidecarservice":
			if b.nested {
				p.bad(field+"."+k, "a sidecar service cannot have a sidecar service")
				continue
			}
			if b.d.SidecarService != nil {
				p.bad(field+"."+k, "given twice")
				continue
			}
			if sc, ok := p.object(field+"."+k, val); ok {
				b.d.SidecarService = p.service(sc, field+"."+k+".", true)
			}
		case "proxy":
			if !isZero(val) {
				p.errs = append(p.errs, &DefinitionError{Field: field + "." + k, Msg: "managed proxies are not supported (use SidecarService)", Err: ErrUnsupported})
			}
		default:
			p.bad(field+"."+k, "unknown key")
		}
	}
	if len(rest) > 0 {
		raw, err := json.Marshal(rest)
		p.fail(field, err)
		b.d.Connect = raw
	}
}

// checkSources reads "Check" (single: an empty object means none, as in
// Consul) or "Checks".
func (p *parser) checkSources(field string, v any, single bool) []checkSource {
	if v == nil {
		return nil
	}
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	default:
		list = []any{v}
	}
	var out []checkSource
	for i, e := range list {
		f := field
		if len(list) > 1 || !single {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		obj, ok := e.(map[string]any)
		if !ok {
			p.bad(f, "%s is not an object", describe(e))
			continue
		}
		if single && len(obj) == 0 {
			continue
		}
		out = append(out, checkSource{f, obj})
	}
	return out
}

// check reads the identity and initial status of a check and keeps the
// rest, as given, for the health package.
func (p *parser) check(field string, obj map[string]any) CheckDefinition {
	var c CheckDefinition
	seen := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		var dst *string
		var name string
		switch canonicalKey(k) {
		case "id", "checkid":
			dst, name = &c.ID, "CheckID"
		case "name":
			dst, name = &c.Name, "Name"
		case "status":
			dst, name = &c.Status, "Status"
		case "notes":
			dst, name = &c.Notes, "Notes"
		default:
			continue
		}
		if prev, dup := seen[name]; dup {
			if !reflect.DeepEqual(obj[prev], obj[k]) {
				p.bad(field+"."+k, "conflicts with %q: both set %s", field+"."+prev, name)
			}
			continue
		}
		seen[name] = k
		s, err := asString(obj[k])
		p.fail(field+"."+k, err)
		*dst = s
	}
	raw, err := json.Marshal(obj)
	p.fail(field, err)
	c.Raw = raw
	return c
}

// canonicalKey folds case and drops underscores and dashes:
// "enable_tag_override" and "EnableTagOverride" both become
// "enabletagoverride".
func canonicalKey(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
}

// decodeValue decodes one JSON value with numbers as json.Number,
// refusing trailing data.
func decodeValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return x, nil
}

func jsonKind(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "an object"
}

// isZero reports whether a decoded value is null, "", false, 0, [] or {}.
func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case json.Number:
		f, err := x.Float64()
		return err == nil && f == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// describe shows a decoded value in an error, shortened.
func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func asString(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("%s is not a string", describe(v))
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, nil
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f != 0, nil
		}
	}
	return false, fmt.Errorf("%s is not a boolean", describe(v))
}

func asInt(v any) (int, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
		if s == "" {
			return 0, nil
		}
	default:
		return 0, fmt.Errorf("%s is not an integer", describe(v))
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int(n), nil
	}
	// 80.0 and 8e1 are integers too.
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32 {
		return int(f), nil
	}
	return 0, fmt.Errorf("%s is not an integer (or out of range)", describe(v))
}

func asStrings(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string, json.Number:
		s, _ := asString(x)
		return []string{s}, nil
	case []any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make([]string, len(x))
		for i, e := range x {
			s, err := asString(e)
			if err != nil || e == nil {
				return nil, fmt.Errorf("element %d of %s is not a string", i, describe(v))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not a list of strings", describe(v))
}

// asObjects reads an object, or a list of objects (HCL blocks arrive as
// one-element lists). ok is false for anything else; null gives none.
func asObjects(v any) (_ []map[string]any, ok bool) {
	switch x := v.(type) {
	case nil:
		return nil, true
	case map[string]any:
		return []map[string]any{x}, true
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}
