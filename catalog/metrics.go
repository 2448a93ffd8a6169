package catalog

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// registerAll registers cs on r, all or none. A nil r registers nothing:
// the collectors still count, unseen.
func registerAll(r prometheus.Registerer, what string, cs []prometheus.Collector) error {
	if r == nil {
		return nil
	}
	var done []prometheus.Collector
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New("catalog: metrics: already registered (another " + what + " on this Registerer?)")
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

func unregisterAll(r prometheus.Registerer, cs []prometheus.Collector) {
	if r == nil {
		return
	}
	for _, c := range cs {
		r.Unregister(c)
	}
}

// syncMetrics are the outrigger_catalog_sync_* and _local_* series.
type syncMetrics struct {
	runs        *prometheus.CounterVec
	requests    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	gauges      []prometheus.Collector
}

func newSyncMetrics(a *AntiEntropy) *syncMetrics {
	m := &syncMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_catalog_sync_runs_total",
			Help: "Anti-entropy runs, by kind (full: compare with the servers and repair; changes: push local changes) and result (ok, error).",
		}, []string{"kind", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_catalog_sync_requests_total",
			Help: "Catalog requests made by anti-entropy, by operation (register, deregister, read) and result (ok, error).",
		}, []string{"op", "result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outrigger_catalog_sync_last_success_timestamp_seconds",
			Help: "When anti-entropy last completed a run without error (Unix time); 0 before the first.",
		}),
	}
	l := a.cfg.Local
	m.gauges = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outrigger_catalog_sync_pending",
			Help: "Local services and checks (and removals) the servers do not have yet.",
		}, func() float64 { return float64(l.pendingCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outrigger_catalog_local_services",
			Help: "Services registered with this agent.",
		}, func() float64 { return float64(len(l.Services())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outrigger_catalog_local_checks",
			Help: "Checks registered with this agent, maintenance checks included.",
		}, func() float64 { return float64(len(l.Checks())) }),
	}
	for _, kind := range []string{"full", "changes"} {
		for _, res := range []string{"ok", "error"} {
			m.runs.WithLabelValues(kind, res)
		}
	}
	for _, op := range []string{"register", "deregister", "read"} {
		for _, res := range []string{"ok", "error"} {
			m.requests.WithLabelValues(op, res)
		}
	}
	return m
}

func (m *syncMetrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.runs, m.requests, m.lastSuccess}, m.gauges...)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// viewMetrics are the outrigger_catalog_view_* series.
type viewMetrics struct {
	fetches    *prometheus.CounterVec
	subscribed prometheus.Counter
	expired    prometheus.Counter
	gauges     []prometheus.Collector
}

func newViewMetrics(v *View) *viewMetrics {
	m := &viewMetrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_catalog_view_fetches_total",
			Help: "Blocking reads of /v1/health/service made by the local view, by result (ok, error).",
		}, []string{"result"}),
		subscribed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_catalog_view_subscribes_total",
			Help: "Subscriptions the local view started (first use of a service).",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_catalog_view_expired_total",
			Help: "Subscriptions the local view dropped after going unused for the idle timeout.",
		}),
		gauges: []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "outrigger_catalog_view_subscriptions",
				Help: "Services the local view follows.",
			}, func() float64 { n, _, _ := v.stats(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "outrigger_catalog_view_stale_subscriptions",
				Help: "Services the local view serves from its last result because the servers could not be reached.",
			}, func() float64 { _, n, _ := v.stats(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "outrigger_catalog_view_max_staleness_seconds",
				Help: "Age of the oldest result the local view serves (0 while every subscription is in contact with the servers).",
			}, func() float64 { _, _, age := v.stats(); return age.Seconds() }),
		},
	}
	m.fetches.WithLabelValues("ok")
	m.fetches.WithLabelValues("error")
	return m
}

func (m *viewMetrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.fetches, m.subscribed, m.expired}, m.gauges...)
}
