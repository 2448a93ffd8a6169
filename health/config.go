package health

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Consul's limits, applied when a check is added.
const (
	// DefaultOutputMaxSize is how much output a check keeps, in bytes
	// (Consul's check_output_max_size default).
	DefaultOutputMaxSize = 4096
	// DefaultTimeout bounds one run of an HTTP, TCP, gRPC or script check
	// when the definition gives no Timeout.
	DefaultTimeout = 10 * time.Second
	// MinInterval is the shortest Interval; shorter ones are raised to it.
	// It keeps a typo ("1ms") from fork-bombing the host with scripts.
	MinInterval = time.Second
	// MinDeregisterCriticalServiceAfter is the shortest
	// DeregisterCriticalServiceAfter; shorter ones are raised to it.
	MinDeregisterCriticalServiceAfter = time.Minute
	// DefaultReapInterval is how often checks are scanned for services to
	// deregister (Consul reaps every 30s).
	DefaultReapInterval = 30 * time.Second
)

// Config configures a Checks. Zero values mean the documented default;
// DefaultConfig returns them filled in.
type Config struct {
	// EnableScriptChecks allows script checks (Args), like Consul's
	// enable_script_checks. Off by default: anyone who can register a
	// check over the HTTP API could otherwise run commands as the agent.
	EnableScriptChecks bool

	// OutputMaxSize caps each check's Output, in bytes. A definition's
	// OutputMaxSize can lower it for that check, not raise it.
	// If zero, DefaultOutputMaxSize (4096) is used.
	OutputMaxSize int

	// ReapInterval is how often checks are scanned for
	// DeregisterCriticalServiceAfter. If zero, DefaultReapInterval (30s).
	ReapInterval time.Duration

	// OnUpdate, if set, is called with a check's state when it is added
	// and whenever its status or output changes. Calls come from one
	// goroutine, in order, never while a lock of this package is held, so
	// OnUpdate may call back into Checks. A slow OnUpdate does not hold up
	// the checks: while it runs, further changes of one check are
	// coalesced and only its latest state is delivered. Remove drops a
	// check's queued state, but a call already taken from the queue may
	// still deliver it, so a receiver should ignore states of checks it no
	// longer has. Close drops whatever is queued. OnUpdate must not call
	// Close, which waits for it.
	OnUpdate func(CheckState)

	// OnDeregister, if set, is called when a check with
	// DeregisterCriticalServiceAfter has been critical for longer than
	// that; the agent should then deregister serviceID and its checks.
	// Called once per service per reap round, and once per critical
	// spell of a check. Called from the reaper's goroutine, without locks
	// held, so it may call Remove; it must not call Close, which waits for
	// it. If nil, no reaping is done.
	OnDeregister func(serviceID string, cause CheckState)

	// Logger receives this package's logs. If nil, nothing is logged.
	Logger *slog.Logger

	// Registerer, if set, gets the outrigger_health_* metrics. Never the
	// global registry by default: several agents share a process in tests.
	Registerer prometheus.Registerer

	// clock and randN are replaced by tests: a fake clock makes TTL
	// expiry, start jitter and reaping testable without sleeping.
	clock clock
	randN func(n int64) int64 // uniform in [0, n), n > 0
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		OutputMaxSize: DefaultOutputMaxSize,
		ReapInterval:  DefaultReapInterval,
	}
}

// Validate checks every field and returns one *ConfigError per bad field
// (joined with errors.Join). Zero values are valid: they mean the default.
func (c *Config) Validate() error {
	var errs []error
	if c.OutputMaxSize < 0 {
		errs = append(errs, &ConfigError{"OutputMaxSize", fmt.Sprintf("%d is negative", c.OutputMaxSize)})
	} else if c.OutputMaxSize > 0 && c.OutputMaxSize < minOutputMaxSize {
		errs = append(errs, &ConfigError{"OutputMaxSize", fmt.Sprintf("%d is below the minimum %d", c.OutputMaxSize, minOutputMaxSize)})
	}
	if c.ReapInterval < 0 {
		errs = append(errs, &ConfigError{"ReapInterval", fmt.Sprintf("%v is negative", c.ReapInterval)})
	}
	return errors.Join(errs...)
}

// minOutputMaxSize leaves room for the truncation markers.
const minOutputMaxSize = 64

func (c Config) withDefaults() Config {
	if c.OutputMaxSize == 0 {
		c.OutputMaxSize = DefaultOutputMaxSize
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = DefaultReapInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.randN == nil {
		c.randN = rand.Int64N
	}
	return c
}
