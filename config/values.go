package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxShown bounds how much of a value an error message quotes.
const maxShown = 64

// quote quotes s for an error message, cutting it short if it is long.
func quote(s string) string {
	if utf8.RuneCountInString(s) <= maxShown {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:maxShown])) + "..."
}

// describe renders a decoded value for an error message: strings quoted,
// numbers and booleans as written, containers by kind.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return quote(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// plain converts a parsed file into the shapes the decoder expects:
// map[string]any, []any, string, int, float64, bool, nil. HCL gives
// []map[string]any for blocks and JSON (with UseNumber) gives json.Number;
// both are rewritten here so one decoder serves both formats.
func plain(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = plain(e)
		}
		return m
	case []map[string]any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = plain(e)
		}
		return l
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = plain(e)
		}
		return l
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil && int64(int(i)) == i {
			return int(i)
		}
		f, _ := strconv.ParseFloat(string(v), 64) // out of range gives ±Inf, shown as such
		return f
	case int64:
		if int64(int(v)) == v {
			return int(v)
		}
		return float64(v)
	default:
		return v
	}
}

// asObject returns v as an object. Besides a plain object it accepts a list
// of objects, merged in order, which is how HCL1 decodes a block
// (`ports { http = 1 }`) or a repeated block.
func asObject(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case []any:
		if len(v) == 0 {
			return nil, false
		}
		m := map[string]any{}
		for _, e := range v {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			maps.Copy(m, o)
		}
		return m, true
	}
	return nil, false
}

// setValue decodes v into dst, which points at a Config field. field names
// the setting in error messages. Strings convert to integers, booleans and
// durations (so environment variables use this too); numbers and booleans
// do not convert to strings except as node_meta values.
func setValue(dst any, field string, v any) error {
	switch dst := dst.(type) {
	case *string:
		s, ok := v.(string)
		if !ok {
			return fieldErr(ErrWrongType, field, "%s is not a string", describe(v))
		}
		*dst = s
	case *int:
		n, ok := toInt(v)
		if !ok {
			return fieldErr(ErrWrongType, field, "%s is not an integer", describe(v))
		}
		*dst = n
	case *bool:
		b, ok := toBool(v)
		if !ok {
			return fieldErr(ErrWrongType, field, "%s is not a boolean", describe(v))
		}
		*dst = b
	case *time.Duration:
		s, ok := v.(string)
		if !ok {
			return fieldErr(ErrWrongType, field, `%s is not a duration (want a string with a unit, like "30s")`, describe(v))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fieldErr(ErrWrongType, field, `%s is not a duration (want a number with a unit, like "30s")`, describe(v))
		}
		*dst = d
	case *[]string:
		switch v := v.(type) {
		case string: // Consul accepts a lone string for a list
			*dst = []string{v}
		case []any:
			l := make([]string, 0, len(v))
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return fieldErr(ErrWrongType, fmt.Sprintf("%s[%d]", field, i), "%s is not a string", describe(e))
				}
				l = append(l, s)
			}
			*dst = l
		default:
			return fieldErr(ErrWrongType, field, "%s is not a list of strings", describe(v))
		}
	case *map[string]string:
		o, ok := asObject(v)
		if !ok {
			return fieldErr(ErrWrongType, field, "%s is not an object", describe(v))
		}
		m := make(map[string]string, len(o))
		for _, k := range slices.Sorted(maps.Keys(o)) {
			switch e := o[k].(type) {
			case string:
				m[k] = e
			case int, float64, bool:
				m[k] = describe(e)
			default:
				return fieldErr(ErrWrongType, field+"."+k, "%s is not a string", describe(e))
			}
		}
		*dst = m
	default:
		panic(fmt.Sprintf("config: no decoder for %T", dst)) // a bug in the fields table
	}
	return nil
}

func toInt(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) <= 1<<53 {
			return int(v), true
		}
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	return 0, false
}

func toBool(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}
