package kvstore

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are a Store's Prometheus collectors, all prefixed
// outrigger_kvstore_. They are always updated; they are exported only when
// Config.Registerer is set.
type storeMetrics struct {
	applyDuration  *prometheus.HistogramVec
	applies        *prometheus.CounterVec
	verifyCalls    prometheus.Counter
	verifyRounds   prometheus.Counter
	verifyDuration prometheus.Histogram
	batchSize      prometheus.Histogram
	expired        prometheus.Counter

	all []prometheus.Collector
}

func newStoreMetrics(s *Store) *storeMetrics {
	const ns, sub = "outrigger", "kvstore"
	m := &storeMetrics{
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_duration_seconds",
			Help:    "Time from proposing a command to its result on the leader, by command type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"type"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "applies_total",
			Help: "Commands proposed through Apply, by type and outcome (ok, not_leader, timeout, error).",
		}, []string{"type", "outcome"}),
		verifyCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "verify_leader_calls_total",
			Help: "VerifyLeader calls (one per default or consistent read).",
		}),
		verifyRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "verify_leader_rounds_total",
			Help: "Leadership confirmation rounds with a quorum; concurrent calls share rounds.",
		}),
		verifyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "verify_leader_duration_seconds",
			Help:    "Time VerifyLeader callers wait.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "fsm_batch_size",
			Help:    "Logs applied to the state machine per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_expired_total",
			Help: "Sessions invalidated by this node as leader because their TTL passed.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, f)
	}
	m.all = []prometheus.Collector{
		m.applyDuration, m.applies, m.verifyCalls, m.verifyRounds, m.verifyDuration, m.batchSize, m.expired,
		gauge("is_leader", "1 if this server is the Raft leader.", func() float64 {
			if s.IsLeader() {
				return 1
			}
			return 0
		}),
		gauge("last_log_index", "Last Raft log index stored on this server.", func() float64 { return float64(s.LastIndex()) }),
		gauge("applied_index", "Last Raft index applied to the state store.", func() float64 { return float64(s.state.Index()) }),
		gauge("keys", "Live K/V keys.", func() float64 { return float64(s.state.Len()) }),
		gauge("sessions", "Sessions in the session table.", func() float64 { return float64(s.state.load().sessions.Len()) }),
		gauge("catalog_nodes", "Nodes in the catalog.", func() float64 { return float64(s.state.load().nodes.Len()) }),
		gauge("catalog_service_instances", "Service instances in the catalog.", func() float64 { return float64(s.state.load().services.Len()) }),
		gauge("catalog_checks", "Health checks in the catalog.", func() float64 { return float64(s.state.load().checks.Len()) }),
		gauge("last_contact_seconds", "Time since this server heard from the leader (0 on the leader).", func() float64 { return s.LastContact().Seconds() }),
	}
	return m
}

func (m *storeMetrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.all {
		if err := reg.Register(c); err != nil {
			for _, done := range m.all[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("kvstore: metrics: already registered (one Store per Registerer): %w", err)
			}
			return fmt.Errorf("kvstore: metrics: %w", err)
		}
	}
	return nil
}

func (m *storeMetrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.all {
		reg.Unregister(c)
	}
}
