package httpapi

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/hashicorp/go-bexpr"
)

// maxFilterLen bounds a ?filter expression: they are typed by people, and
// the parser's cost grows with the input.
const maxFilterLen = 4096

// readFilter is a compiled ?filter expression (Consul's filtering
// language, go-bexpr: `ServiceMeta.env == "prod" and "v1" in ServiceTags`),
// or nil when the request has none. Selectors are the JSON field names of
// the endpoint's result elements, as in Consul.
type readFilter struct {
	expr string
	f    *bexpr.Filter
}

// parseFilter reads ?filter; a syntax error is a 400 naming the
// expression.
func parseFilter(q url.Values) (*readFilter, *requestError) {
	vals, ok := q["filter"]
	if !ok {
		return nil, nil
	}
	if len(vals) != 1 {
		return nil, &requestError{code: http.StatusBadRequest, msg: "?filter given more than once"}
	}
	expr := vals[0]
	if expr == "" {
		return nil, nil
	}
	if len(expr) > maxFilterLen {
		return nil, &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf("?filter: expression of %d bytes is longer than %d", len(expr), maxFilterLen)}
	}
	f, err := bexpr.CreateFilter(expr)
	if err != nil {
		return nil, &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf("?filter %q: Failed to create boolean expression evaluator: %v", expr, err)}
	}
	return &readFilter{expr: expr, f: f}, nil
}

// apply filters a slice (or the values of a map) of result elements. An
// expression that does not fit the elements (an unknown selector, a
// comparison of the wrong type) is a 400 naming it.
func (rf *readFilter) apply(v any) (any, *requestError) {
	if rf == nil || v == nil {
		return v, nil
	}
	out, err := rf.f.Execute(v)
	if err != nil {
		return nil, &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf("?filter %q: %v", rf.expr, err)}
	}
	return out, nil
}
