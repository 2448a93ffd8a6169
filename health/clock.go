package health

import "time"

// clock is the time source of the checks' schedules, TTLs and reaping.
// Tests use a fake one; probes themselves use real time for their
// timeouts and latency.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
	AfterFunc(d time.Duration, f func()) timer
}

type timer interface {
	// C is the channel a NewTimer timer fires on; nil for AfterFunc.
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) timer { return realTimer{time.NewTimer(d)} }

func (realClock) AfterFunc(d time.Duration, f func()) timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

var _ clock = realClock{}
