package health

// CheckState is a check as the agent reports it (/v1/agent/checks and
// anti-entropy).
type CheckState struct {
	ID        string
	Name      string
	ServiceID string
	// Status is StatusPassing, StatusWarning or StatusCritical.
	Status string
	// Output is the last result's output, at most the output cap long.
	Output string
	Notes  string
	// Type is TypeHTTP, TypeTCP, TypeTTL, TypeGRPC or TypeScript.
	Type string
	// Definition is the check as it runs: defaults and minimums applied.
	Definition CheckDefinition
}

// result is one run's outcome, before thresholds.
type result struct {
	status string
	output string
}

// thresholds turns a stream of results into status changes: a status
// only takes effect after enough results in a row agree. Warning results
// count as successes, as in Consul.
type thresholds struct {
	successBeforePassing   int
	failuresBeforeWarning  int
	failuresBeforeCritical int
	successes, failures    int
}

func newThresholds(d *CheckDefinition) thresholds {
	t := thresholds{
		successBeforePassing:   d.SuccessBeforePassing,
		failuresBeforeWarning:  d.FailuresBeforeWarning,
		failuresBeforeCritical: d.FailuresBeforeCritical,
	}
	if t.failuresBeforeWarning == 0 {
		t.failuresBeforeWarning = t.failuresBeforeCritical
	}
	return t
}

// observe records one result status and returns the status to report, or
// ok false to keep the current one.
func (t *thresholds) observe(status string) (_ string, ok bool) {
	if status != StatusCritical {
		t.successes++
		t.failures = 0
		if t.successes >= t.successBeforePassing {
			return status, true
		}
		return "", false
	}
	t.failures++
	t.successes = 0
	if t.failures >= t.failuresBeforeCritical {
		return StatusCritical, true
	}
	if t.failures >= t.failuresBeforeWarning {
		return StatusWarning, true
	}
	return "", false
}
