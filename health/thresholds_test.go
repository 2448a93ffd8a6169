package health

import (
	"strings"
	"testing"
)

func TestThresholds(t *testing.T) {
	const (
		P = StatusPassing
		W = StatusWarning
		C = StatusCritical
	)
	tests := []struct {
		name                       string
		success, warning, critical int
		initial                    string
		results                    []string
		want                       []string // status after each result
	}{
		{"defaults follow every result", 0, 0, 0, C,
			[]string{P, C, W, P}, []string{P, C, W, P}},
		{"success before passing", 3, 0, 0, C,
			[]string{P, P, C, P, P, P, P}, []string{C, C, C, C, C, P, P}},
		{"warning counts as success", 2, 0, 0, C,
			[]string{W, P}, []string{C, P}},
		{"failures before critical", 0, 0, 3, P,
			[]string{C, C, P, C, C, C, C}, []string{P, P, P, P, P, C, C}},
		{"failures before warning", 0, 1, 3, P,
			[]string{C, C, C, P}, []string{W, W, C, P}},
		{"both", 2, 0, 2, C,
			[]string{P, P, C, P, C, C, P, P}, []string{C, P, P, P, P, C, C, P}},
		{"one is the same as zero", 1, 0, 1, C,
			[]string{P, C}, []string{P, C}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newThresholds(&CheckDefinition{
				SuccessBeforePassing:   tt.success,
				FailuresBeforeWarning:  tt.warning,
				FailuresBeforeCritical: tt.critical,
			})
			status := tt.initial
			var got []string
			for _, r := range tt.results {
				if s, ok := th.observe(r); ok {
					status = s
				}
				got = append(got, status)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("results %v: got %v, want %v", tt.results, got, tt.want)
			}
		})
	}
}
