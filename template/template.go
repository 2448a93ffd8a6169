// Package template renders Go text/template files from the cluster's
// data, as consul-template does: functions such as key, ls, tree,
// service, services, nodes and node read the K/V store and the catalog
// through the agent's HTTP API. Rendering discovers what a template uses
// (the first render registers its dependencies), each dependency is
// followed by a blocking query (package watch), and a change renders the
// template again, batched by a quiescence wait. Output is written
// atomically and a command (a reload) runs only when the output changed.
// A template waits until every key and service it uses exists; it never
// writes empty values in their place.
//
// It renders files; it is not a general templating library, and it does
// not manage the processes its commands reload.
package template

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	texttemplate "text/template"
	"unicode/utf8"
)

// SyntaxError is a template that does not parse, with its position.
type SyntaxError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Template is one parsed template file.
type Template struct {
	spec Spec
	tmpl *texttemplate.Template
	// cur is the render in progress, read by the functions.
	cur *renderState
}

// parseFile reads and parses spec.Source.
func parseFile(spec Spec) (*Template, error) {
	b, err := os.ReadFile(spec.Source)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", spec.Source, unwrapPath(err))
	}
	return parseText(spec, string(b))
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// parseText parses text as the template of spec. A parse error is a
// *SyntaxError naming file, line and column.
func parseText(spec Spec, text string) (*Template, error) {
	t := &Template{spec: spec}
	funcs := funcMap(&t.cur)
	tmpl, err := texttemplate.New(spec.Source).Funcs(funcs).Parse(text)
	if err != nil {
		return nil, positionError(spec.Source, text, err, funcs)
	}
	t.tmpl = tmpl
	return t, nil
}

var (
	undefinedFuncRE = regexp.MustCompile(`^function "([^"]*)" not defined$`)
	unclosedRE      = regexp.MustCompile(`^unclosed action started at (.*):(\d+)$`)
)

// positionError turns text/template's "template: NAME:LINE: msg" into a
// SyntaxError with a column. text/template reports only the line; the
// column is where a prefix of the text first fails with the same
// message, that is the end of the offending token, moved back to its
// start.
func positionError(name, text string, err error, funcs texttemplate.FuncMap) error {
	full := err.Error()
	rest, ok := strings.CutPrefix(full, "template: "+name+":")
	if !ok {
		return &SyntaxError{File: name, Line: 1, Col: 1, Msg: full}
	}
	lineS, msg, ok := strings.Cut(rest, ": ")
	line, cerr := strconv.Atoi(lineS)
	if !ok || cerr != nil || line < 1 {
		return &SyntaxError{File: name, Line: 1, Col: 1, Msg: full}
	}
	se := &SyntaxError{File: name, Line: line, Col: 1, Msg: msg}
	if m := undefinedFuncRE.FindStringSubmatch(msg); m != nil {
		se.Msg = fmt.Sprintf("unknown function %q", m[1])
	}
	if m := unclosedRE.FindStringSubmatch(msg); m != nil && m[1] == name {
		// Reported at the end of the text; the action starts earlier.
		if l, err := strconv.Atoi(m[2]); err == nil && l >= 1 && l <= line {
			se.Line, se.Msg = l, "unclosed action (no }})"
			line = l
			lineText := nthLine(text, l)
			if i := strings.LastIndex(lineText, "{{"); i >= 0 {
				se.Col = utf8.RuneCountInString(lineText[:i]) + 1
			}
			return se
		}
	}
	// Offset of the line's start.
	start := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(text[start:], '\n')
		if i < 0 {
			return se
		}
		start += i + 1
	}
	end := len(text)
	if i := strings.IndexByte(text[start:], '\n'); i >= 0 {
		end = start + i + 1
	}
	const maxScan = 4096
	if end-start > maxScan {
		return se
	}
	for n := start; n <= end; n++ {
		_, perr := texttemplate.New(name).Funcs(funcs).Parse(text[:n])
		if perr == nil || perr.Error() != full {
			continue
		}
		tok := n
		switch {
		case tok-start >= 2 && text[tok-2:tok] == "}}":
			// The action as a whole is wrong: point at its start.
			if i := strings.LastIndex(text[start:tok-2], "{{"); i >= 0 {
				tok = start + i
			} else {
				tok -= 2
			}
		case tok > start && isIdent(text[tok-1]):
			for tok > start && isIdent(text[tok-1]) {
				tok--
			}
			if tok > start && (text[tok-1] == '.' || text[tok-1] == '$') {
				tok--
			}
		case tok > start:
			tok--
		}
		se.Col = utf8.RuneCountInString(text[start:tok]) + 1
		break
	}
	return se
}

// nthLine is line n (1-based) of text, without its newline.
func nthLine(text string, n int) string {
	lines := strings.SplitN(text, "\n", n+1)
	if n > len(lines) {
		return ""
	}
	return lines[n-1]
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// render executes the template over the data lookup gives. It returns the
// output, the dependencies the template used, and those whose data is
// missing (then the output must not be used). An execution error with
// data missing is expected (an index into a list not there yet) and is
// not reported.
func (t *Template) render(lookup func(dep) (depData, bool), env func(string) string) (out []byte, used map[dep]bool, missing []dep, err error) {
	st := &renderState{lookup: lookup, env: env, used: map[dep]bool{}}
	t.cur = st
	defer func() { t.cur = nil }()
	var buf bytes.Buffer
	err = t.tmpl.Execute(&buf, nil)
	if len(st.missing) > 0 {
		return nil, st.used, st.missing, nil
	}
	if err != nil {
		return nil, st.used, nil, fmt.Errorf("render %s: %w", t.spec.Source, trimExecError(err))
	}
	return buf.Bytes(), st.used, nil, nil
}

// trimExecError drops text/template's "template: " prefix; the position
// "file:line:col" stays.
func trimExecError(err error) error {
	s := err.Error()
	if r, ok := strings.CutPrefix(s, "template: "); ok {
		return errors.New(r)
	}
	return err
}
