package template

import (
	"fmt"
	"strings"
	"time"
)

// Spec is one template to render: where it is, where its output goes and
// what to run when the output changes.
type Spec struct {
	// Source is the template file.
	Source string
	// Dest is the output file.
	Dest string
	// Command, if set, runs with /bin/sh -c after Dest changed.
	Command string
}

// String is the spec in -template form.
func (s Spec) String() string {
	out := s.Source + ":" + s.Dest
	if s.Command != "" {
		out += ":" + s.Command
	}
	return out
}

// ParseSpec parses a -template value "source:dest[:command]", as
// consul-template does. The command is everything after the second colon,
// so it may itself hold colons.
func ParseSpec(s string) (Spec, error) {
	if strings.TrimSpace(s) == "" {
		return Spec{}, fmt.Errorf("-template: empty; want \"source:dest[:command]\"")
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return Spec{}, fmt.Errorf("-template %q: holds a control character", s)
	}
	parts := strings.SplitN(s, ":", 3)
	sp := Spec{Source: strings.TrimSpace(parts[0])}
	if sp.Source == "" {
		return Spec{}, fmt.Errorf("-template %q: the source (before the first ':') is empty; want \"source:dest[:command]\"", s)
	}
	if len(parts) < 2 {
		return Spec{}, fmt.Errorf("-template %q: no destination; want \"source:dest[:command]\"", s)
	}
	sp.Dest = strings.TrimSpace(parts[1])
	if sp.Dest == "" {
		return Spec{}, fmt.Errorf("-template %q: the destination (after the first ':') is empty; want \"source:dest[:command]\"", s)
	}
	if sp.Dest == sp.Source {
		return Spec{}, fmt.Errorf("-template %q: the destination is the source itself", s)
	}
	if len(parts) == 3 {
		sp.Command = strings.TrimSpace(parts[2])
		if sp.Command == "" {
			return Spec{}, fmt.Errorf("-template %q: the command (after the second ':') is empty; leave out the ':' for none", s)
		}
	}
	return sp, nil
}

// Wait is the quiescence of -wait: after a change, render once no change
// came for Min, and at the latest Max after the first change of a burst.
// The zero value renders at once.
type Wait struct {
	Min, Max time.Duration
}

// String is the -wait form.
func (w Wait) String() string {
	if w.Min == 0 && w.Max == 0 {
		return "0s"
	}
	return w.Min.String() + ":" + w.Max.String()
}

// maxWait bounds -wait: a longer quiescence is a typo.
const maxWait = 24 * time.Hour

// ParseWait parses -wait "min[:max]"; without max, max is 4×min (as
// consul-template).
func ParseWait(s string) (Wait, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Wait{}, fmt.Errorf("-wait: empty; want \"min[:max]\" like 2s:10s")
	}
	minS, maxS, hasMax := strings.Cut(s, ":")
	var w Wait
	var err error
	if w.Min, err = time.ParseDuration(strings.TrimSpace(minS)); err != nil {
		return Wait{}, fmt.Errorf("-wait %q: min %q is not a duration (like 2s)", s, minS)
	}
	if hasMax {
		if w.Max, err = time.ParseDuration(strings.TrimSpace(maxS)); err != nil {
			return Wait{}, fmt.Errorf("-wait %q: max %q is not a duration (like 10s)", s, maxS)
		}
	} else {
		w.Max = 4 * w.Min
		if w.Min > maxWait {
			w.Max = w.Min
		}
	}
	switch {
	case w.Min < 0 || w.Max < 0:
		return Wait{}, fmt.Errorf("-wait %q: durations must not be negative", s)
	case w.Max < w.Min:
		return Wait{}, fmt.Errorf("-wait %q: max %v is less than min %v", s, w.Max, w.Min)
	case w.Max > maxWait:
		return Wait{}, fmt.Errorf("-wait %q: max %v is more than %v", s, w.Max, maxWait)
	}
	return w, nil
}
