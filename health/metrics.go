package health

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the outrigger_health_* series. They exist whether or not a
// Registerer was given, so the rest of the package never checks.
type metrics struct {
	runs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ttlExpired prometheus.Counter
	reaped     prometheus.Counter
	state      *stateCollector
}

func newMetrics(cs *Checks) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_health_check_runs_total",
			Help: "Check runs, by check type (http, tcp, grpc, script) and result (passing, warning, critical) before thresholds.",
		}, []string{"type", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_health_check_duration_seconds",
			Help:    "How long check runs took, by check type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"type"}),
		ttlExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_health_ttl_expired_total",
			Help: "TTL checks that turned critical because no update came within their TTL.",
		}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_health_deregister_requests_total",
			Help: "Services reported for deregistration because a check stayed critical past DeregisterCriticalServiceAfter.",
		}),
		state: &stateCollector{
			cs: cs,
			desc: prometheus.NewDesc("outrigger_health_checks",
				"Checks held by this agent, by current status.", []string{"status"}, nil),
		},
	}
	for _, typ := range []string{TypeHTTP, TypeTCP, TypeGRPC, TypeScript} {
		m.duration.WithLabelValues(typ)
		for _, res := range []string{StatusPassing, StatusWarning, StatusCritical} {
			m.runs.WithLabelValues(typ, res)
		}
	}
	return m
}

func (m *metrics) observeRun(typ, result string, took time.Duration) {
	m.runs.WithLabelValues(typ, result).Inc()
	m.duration.WithLabelValues(typ).Observe(took.Seconds())
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.runs, m.duration, m.ttlExpired, m.reaped, m.state}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New("health: metrics: already registered (another Checks on this Registerer?)")
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

// stateCollector counts checks by status at scrape time.
type stateCollector struct {
	cs   *Checks
	desc *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{StatusPassing: 0, StatusWarning: 0, StatusCritical: 0}
	c.cs.mu.Lock()
	for _, chk := range c.cs.checks {
		counts[chk.state.Status]++
	}
	c.cs.mu.Unlock()
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), status)
	}
}

var _ prometheus.Collector = (*stateCollector)(nil)
