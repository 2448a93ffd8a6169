package gossip

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the outrigger_gossip_* series. They exist whether or not a
// Registerer was given, so the rest of the package never checks.
type metrics struct {
	events   *prometheus.CounterVec
	dropped  prometheus.Counter
	rejected prometheus.Counter
	// reconnects counts the reconnect loop's joins of a failed member,
	// reconnected those that reached it.
	reconnects  prometheus.Counter
	reconnected prometheus.Counter
	state       *stateCollector
}

func newMetrics(g *Gossip) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_gossip_events_total",
			Help: "Membership events seen, by type (join, leave, failed, update, reap).",
		}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_gossip_events_dropped_total",
			Help: "Events not delivered because a subscriber's queue was full.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_gossip_rejected_messages_total",
			Help: "Gossip messages rejected because they could not be decrypted or were not encrypted (key mismatch).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_gossip_reconnect_attempts_total",
			Help: "Attempts to join a failed member again at its last known address (Serf's reconnect).",
		}),
		reconnected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_gossip_reconnect_successes_total",
			Help: "Reconnect attempts that reached the failed member's address and synced state with it.",
		}),
		state: &stateCollector{
			g: g,
			members: prometheus.NewDesc("outrigger_gossip_members",
				"Members known to this agent, by status.", []string{"status"}, nil),
			health: prometheus.NewDesc("outrigger_gossip_health_score",
				"memberlist's awareness score: 0 is healthy, higher means this agent is slow to answer probes.", nil, nil),
			sent: prometheus.NewDesc("outrigger_gossip_sent_bytes_total",
				"Bytes this agent sent for gossip, by transport (udp packets, tcp streams).", []string{"transport"}, nil),
		},
	}
	for _, t := range []EventType{EventJoin, EventLeave, EventFailed, EventUpdate, EventReap} {
		m.events.WithLabelValues(t.String())
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.dropped, m.rejected, m.reconnects, m.reconnected, m.state}
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
				return errors.New("gossip: metrics: already registered (another Gossip on this Registerer?)")
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

// stateCollector reads gauges at scrape time from the member table and
// memberlist.
type stateCollector struct {
	g                     *Gossip
	members, health, sent *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.health
	ch <- c.sent
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for st, n := range c.g.table.counts() {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(n), st.String())
	}
	ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, float64(c.g.HealthScore()))
	packet, stream := c.g.tr.sent()
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(packet), "udp")
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(stream), "tcp")
}

var _ prometheus.Collector = (*stateCollector)(nil)
