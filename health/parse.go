package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParseCheckDefinition reads one check definition in any of the JSON
// shapes Consul accepts: the body of PUT /v1/agent/check/register, an
// element of a service registration's "Check"/"Checks", or a "check"
// block of a configuration file.
//
// Keys match case-insensitively and with or without underscores, so
// "TLSSkipVerify", "tlsskipverify" and "tls_skip_verify" are one key;
// "CheckID" and "ID" are both the ID; "Args" and "ScriptArgs" are both
// Args. Durations are Go duration strings ("10s", "1m30s") or numbers of
// nanoseconds. As in Consul's weak decoding, a string holding a number or
// boolean is accepted where one is wanted, and a lone string where a list
// of strings is; JSON null leaves a field unset. An unknown key is an
// error, and so is a Consul feature this agent lacks (UDP, H2PING, Docker,
// alias and OS service checks, a shell Script) when given a value.
//
// Errors are *DefinitionError values joined with errors.Join. The result
// is not validated: call Validate.
func ParseCheckDefinition(data []byte) (CheckDefinition, error) {
	var d CheckDefinition
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || trimmed[0] != '{' {
		return d, &DefinitionError{Msg: "parse: want a JSON object, got " + describe(trimmed)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return d, &DefinitionError{Msg: "parse: " + err.Error()}
	}
	if dec.More() {
		return d, &DefinitionError{Msg: "parse: trailing data after the JSON object"}
	}

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var errs []*DefinitionError
	seen := map[string]string{} // canonical key -> key as given
	for _, key := range keys {
		val := raw[key]
		canon := canonicalKey(key)
		if f, ok := defFields[canon]; ok {
			if prev, dup := seen[f.name]; dup {
				if !sameJSON(raw[prev], val) {
					errs = append(errs, &DefinitionError{Field: key, Msg: fmt.Sprintf("conflicts with %q: both set %s", prev, f.name)})
				}
				continue
			}
			seen[f.name] = key
			if err := f.set(&d, val); err != nil {
				errs = append(errs, &DefinitionError{Field: key, Msg: err.Error()})
			}
			continue
		}
		if why, ok := unsupportedFields[canon]; ok {
			if !isZeroJSON(val) {
				errs = append(errs, &DefinitionError{Field: key, Msg: why + " are not supported", Err: ErrUnsupported})
			}
			continue
		}
		errs = append(errs, &DefinitionError{Field: key, Msg: "unknown key"})
	}
	if len(errs) == 0 {
		return d, nil
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		e.Check = d.label()
		joined[i] = e
	}
	return d, errors.Join(joined...)
}

// CheckDefinitionFromMap reads a definition from a decoded configuration
// section (config.Config.Extra's "check"/"checks" elements, or a
// service's), with the same rules as ParseCheckDefinition. HCL blocks that
// arrive as one-element lists of objects (Header) are accepted.
func CheckDefinitionFromMap(m map[string]any) (CheckDefinition, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return CheckDefinition{}, &DefinitionError{Msg: "parse: " + err.Error()}
	}
	return ParseCheckDefinition(data)
}

// UnmarshalJSON parses with ParseCheckDefinition, so a CheckDefinition
// can sit inside a larger registration struct.
func (d *CheckDefinition) UnmarshalJSON(data []byte) error {
	parsed, err := ParseCheckDefinition(data)
	if err != nil {
		return err
	}
	*d = parsed
	return nil
}

// MarshalJSON writes Consul's CamelCase keys, durations as strings
// ("10s"), empty fields left out. ParseCheckDefinition reads it back.
func (d CheckDefinition) MarshalJSON() ([]byte, error) {
	dur := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	return json.Marshal(struct {
		ID                             string              `json:",omitempty"`
		Name                           string              `json:",omitempty"`
		Notes                          string              `json:",omitempty"`
		ServiceID                      string              `json:",omitempty"`
		Token                          string              `json:",omitempty"`
		Status                         string              `json:",omitempty"`
		HTTP                           string              `json:",omitempty"`
		Method                         string              `json:",omitempty"`
		Header                         map[string][]string `json:",omitempty"`
		Body                           string              `json:",omitempty"`
		DisableRedirects               bool                `json:",omitempty"`
		TCP                            string              `json:",omitempty"`
		TCPUseTLS                      bool                `json:",omitempty"`
		TTL                            string              `json:",omitempty"`
		GRPC                           string              `json:",omitempty"`
		GRPCUseTLS                     bool                `json:",omitempty"`
		TLSServerName                  string              `json:",omitempty"`
		TLSSkipVerify                  bool                `json:",omitempty"`
		Args                           []string            `json:",omitempty"`
		Interval                       string              `json:",omitempty"`
		Timeout                        string              `json:",omitempty"`
		OutputMaxSize                  int                 `json:",omitempty"`
		SuccessBeforePassing           int                 `json:",omitempty"`
		FailuresBeforeWarning          int                 `json:",omitempty"`
		FailuresBeforeCritical         int                 `json:",omitempty"`
		DeregisterCriticalServiceAfter string              `json:",omitempty"`
	}{
		d.ID, d.Name, d.Notes, d.ServiceID, d.Token, d.Status,
		d.HTTP, d.Method, d.Header, d.Body, d.DisableRedirects,
		d.TCP, d.TCPUseTLS, dur(d.TTL), d.GRPC, d.GRPCUseTLS,
		d.TLSServerName, d.TLSSkipVerify, d.Args,
		dur(d.Interval), dur(d.Timeout), d.OutputMaxSize,
		d.SuccessBeforePassing, d.FailuresBeforeWarning, d.FailuresBeforeCritical,
		dur(d.DeregisterCriticalServiceAfter),
	})
}

// canonicalKey folds case and drops underscores and dashes:
// "tls_skip_verify" and "TLSSkipVerify" both become "tlsskipverify".
func canonicalKey(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
}

type defField struct {
	name string // CheckDefinition field, for duplicate detection
	set  func(d *CheckDefinition, v json.RawMessage) error
}

func strField(name string, p func(*CheckDefinition) *string) defField {
	return defField{name, func(d *CheckDefinition, v json.RawMessage) (err error) {
		*p(d), err = decodeString(v)
		return err
	}}
}

func boolField(name string, p func(*CheckDefinition) *bool) defField {
	return defField{name, func(d *CheckDefinition, v json.RawMessage) (err error) {
		*p(d), err = decodeBool(v)
		return err
	}}
}

func intField(name string, p func(*CheckDefinition) *int) defField {
	return defField{name, func(d *CheckDefinition, v json.RawMessage) (err error) {
		*p(d), err = decodeInt(v)
		return err
	}}
}

func durField(name string, p func(*CheckDefinition) *time.Duration) defField {
	return defField{name, func(d *CheckDefinition, v json.RawMessage) (err error) {
		*p(d), err = decodeDuration(v)
		return err
	}}
}

// defFields maps canonical keys to fields.
var defFields = map[string]defField{
	"id":                             strField("ID", func(d *CheckDefinition) *string { return &d.ID }),
	"checkid":                        strField("ID", func(d *CheckDefinition) *string { return &d.ID }),
	"name":                           strField("Name", func(d *CheckDefinition) *string { return &d.Name }),
	"notes":                          strField("Notes", func(d *CheckDefinition) *string { return &d.Notes }),
	"serviceid":                      strField("ServiceID", func(d *CheckDefinition) *string { return &d.ServiceID }),
	"token":                          strField("Token", func(d *CheckDefinition) *string { return &d.Token }),
	"status":                         strField("Status", func(d *CheckDefinition) *string { return &d.Status }),
	"http":                           strField("HTTP", func(d *CheckDefinition) *string { return &d.HTTP }),
	"method":                         strField("Method", func(d *CheckDefinition) *string { return &d.Method }),
	"header":                         {"Header", func(d *CheckDefinition, v json.RawMessage) (err error) { d.Header, err = decodeHeader(v); return err }},
	"body":                           strField("Body", func(d *CheckDefinition) *string { return &d.Body }),
	"disableredirects":               boolField("DisableRedirects", func(d *CheckDefinition) *bool { return &d.DisableRedirects }),
	"tcp":                            strField("TCP", func(d *CheckDefinition) *string { return &d.TCP }),
	"tcpusetls":                      boolField("TCPUseTLS", func(d *CheckDefinition) *bool { return &d.TCPUseTLS }),
	"ttl":                            durField("TTL", func(d *CheckDefinition) *time.Duration { return &d.TTL }),
	"grpc":                           strField("GRPC", func(d *CheckDefinition) *string { return &d.GRPC }),
	"grpcusetls":                     boolField("GRPCUseTLS", func(d *CheckDefinition) *bool { return &d.GRPCUseTLS }),
	"tlsservername":                  strField("TLSServerName", func(d *CheckDefinition) *string { return &d.TLSServerName }),
	"tlsskipverify":                  boolField("TLSSkipVerify", func(d *CheckDefinition) *bool { return &d.TLSSkipVerify }),
	"args":                           {"Args", func(d *CheckDefinition, v json.RawMessage) (err error) { d.Args, err = decodeStrings(v); return err }},
	"scriptargs":                     {"Args", func(d *CheckDefinition, v json.RawMessage) (err error) { d.Args, err = decodeStrings(v); return err }},
	"interval":                       durField("Interval", func(d *CheckDefinition) *time.Duration { return &d.Interval }),
	"timeout":                        durField("Timeout", func(d *CheckDefinition) *time.Duration { return &d.Timeout }),
	"outputmaxsize":                  intField("OutputMaxSize", func(d *CheckDefinition) *int { return &d.OutputMaxSize }),
	"successbeforepassing":           intField("SuccessBeforePassing", func(d *CheckDefinition) *int { return &d.SuccessBeforePassing }),
	"failuresbeforewarning":          intField("FailuresBeforeWarning", func(d *CheckDefinition) *int { return &d.FailuresBeforeWarning }),
	"failuresbeforecritical":         intField("FailuresBeforeCritical", func(d *CheckDefinition) *int { return &d.FailuresBeforeCritical }),
	"deregistercriticalserviceafter": durField("DeregisterCriticalServiceAfter", func(d *CheckDefinition) *time.Duration { return &d.DeregisterCriticalServiceAfter }),
}

// unsupportedFields are Consul keys this agent knows but cannot honour;
// they are refused when given a value (silently ignoring one would leave
// a service unchecked).
var unsupportedFields = map[string]string{
	"udp":               "UDP checks",
	"h2ping":            "H2PING checks",
	"h2pingusetls":      "H2PING checks",
	"dockercontainerid": "Docker checks",
	"shell":             "Docker checks",
	"aliasnode":         "alias checks",
	"aliasservice":      "alias checks",
	"osservice":         "OS service checks",
	"script":            "shell Script checks (use Args)",
	"namespace":         "namespaces",
	"partition":         "admin partitions",
}

func decodeJSON(v json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	err := dec.Decode(&x)
	return x, err
}

// isZeroJSON reports whether v is null, "", false, 0, [], {} or
// "default" (what OSS Consul reports as Namespace and Partition).
func isZeroJSON(v json.RawMessage) bool {
	x, err := decodeJSON(v)
	if err != nil {
		return false
	}
	switch x := x.(type) {
	case nil:
		return true
	case string:
		return x == "" || x == "default"
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

func sameJSON(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// describe shows a JSON value in an error, shortened.
func describe(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func decodeString(v json.RawMessage) (string, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return "", err
	}
	switch x := x.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	}
	return "", fmt.Errorf("%s is not a string", describe(v))
}

func decodeBool(v json.RawMessage) (bool, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return false, err
	}
	switch x := x.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("%s is not a boolean", describe(v))
}

func decodeInt(v json.RawMessage) (int, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return 0, err
	}
	var s string
	switch x := x.(type) {
	case nil:
		return 0, nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, fmt.Errorf("%s is not an integer", describe(v))
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int(n), nil
	}
	// 3.0 and 1e2 are integers too.
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32 {
		return int(f), nil
	}
	return 0, fmt.Errorf("%s is not an integer (or out of range)", describe(v))
}

func decodeDuration(v json.RawMessage) (time.Duration, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return 0, err
	}
	switch x := x.(type) {
	case nil:
		return 0, nil
	case string:
		if x == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as \"10s\" or \"1m30s\"", x)
		}
		return d, nil
	case json.Number:
		if n, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return time.Duration(n), nil
		}
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < math.MaxInt64 {
			return time.Duration(f), nil
		}
		return 0, fmt.Errorf("%s is not a whole number of nanoseconds", x)
	}
	return 0, fmt.Errorf("%s is not a duration such as \"10s\"", describe(v))
}

func decodeStrings(v json.RawMessage) ([]string, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return nil, err
	}
	return toStrings(x, v)
}

func toStrings(x any, v json.RawMessage) ([]string, error) {
	switch x := x.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d of %s is not a string", i, describe(v))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is not a list of strings", describe(v))
}

// decodeHeader reads {"Name": ["v", ...]} (or a lone string per name), or
// a list of such objects as HCL blocks arrive.
func decodeHeader(v json.RawMessage) (map[string][]string, error) {
	x, err := decodeJSON(v)
	if err != nil {
		return nil, err
	}
	var objs []map[string]any
	switch x := x.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		objs = append(objs, x)
	case []any:
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s is not an object of header names to lists of values", describe(v))
			}
			objs = append(objs, m)
		}
	default:
		return nil, fmt.Errorf("%s is not an object of header names to lists of values", describe(v))
	}
	h := map[string][]string{}
	for _, m := range objs {
		for name, vals := range m {
			list, err := toStrings(vals, v)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", name, err)
			}
			h[name] = append(h[name], list...)
		}
	}
	if len(h) == 0 {
		return nil, nil
	}
	return h, nil
}
