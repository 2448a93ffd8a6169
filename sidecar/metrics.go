package sidecar

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the outrigger_sidecar_* collectors. Labels: listener (its
// name: "<proxy ID>/inbound", "<proxy ID>/<destination>", an ingress
// listener's name), upstream (the target: "api", "api[tag=canary]",
// "api[env=prod]", or the local application's address), route.
type metrics struct {
	connActive   *prometheus.GaugeVec
	connTotal    *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	upActive     *prometheus.GaugeVec
	upTotal      *prometheus.CounterVec
	upBytes      *prometheus.CounterVec
	connectFails *prometheus.CounterVec
	instances    *prometheus.GaugeVec
	ejected      *prometheus.GaugeVec
	ejections    *prometheus.CounterVec
	retries      *prometheus.CounterVec
	retryOver    *prometheus.CounterVec
	overflows    *prometheus.CounterVec
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	noInstance   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "outrigger_sidecar_"
	m := &metrics{
		connActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "connections_active",
			Help: "Client connections open on a listener."}, []string{"listener"}),
		connTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "connections_total",
			Help: "Client connections accepted by a listener."}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "bytes_total",
			Help: "Bytes a listener received from clients (in) and sent to them (out); counted as each connection or body copy ends."}, []string{"listener", "direction"}),
		upActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "upstream_connections_active",
			Help: "Connections open to an upstream's instances."}, []string{"upstream"}),
		upTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_connections_total",
			Help: "Connections opened to an upstream's instances."}, []string{"upstream"}),
		upBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_bytes_total",
			Help: "Bytes sent to (out) and received from (in) an upstream's instances by the L4 path."}, []string{"upstream", "direction"}),
		connectFails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_connect_failures_total",
			Help: "Failed connection attempts to an upstream's instances."}, []string{"upstream"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "upstream_instances",
			Help: "Healthy instances of an upstream."}, []string{"upstream"}),
		ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "upstream_instances_ejected",
			Help: "Instances of an upstream currently ejected by outlier detection."}, []string{"upstream"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_ejections_total",
			Help: "Outlier ejections of an upstream's instances."}, []string{"upstream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_retries_total",
			Help: "Connections or requests retried on another instance."}, []string{"upstream"}),
		retryOver: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_retry_budget_exhausted_total",
			Help: "Retries not made because the upstream's retry budget was used up."}, []string{"upstream"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "upstream_limit_overflows_total",
			Help: "Connections or requests refused by an upstream's limits."}, []string{"upstream", "limit"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "requests_total",
			Help: "HTTP requests answered, by route and status code."}, []string{"listener", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: ns + "request_duration_seconds",
			Help:    "Time from a request's head to the end of its response head, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"listener", "route"}),
		noInstance: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "no_instance_total",
			Help: "Connections or requests refused because the target service had no healthy instance (or is unknown)."}, []string{"listener", "route", "upstream"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cs := []*prometheus.Collector{}
	_ = cs
	for _, p := range []any{&m.connActive, &m.connTotal, &m.bytes, &m.upActive, &m.upTotal, &m.upBytes, &m.connectFails,
		&m.instances, &m.ejected, &m.ejections, &m.retries, &m.retryOver, &m.overflows, &m.requests, &m.duration, &m.noInstance} {
		if err := register(reg, p); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers the collector *p points at, or adopts the one already
// registered (a second Manager on one registry).
func register(reg prometheus.Registerer, p any) error {
	var c prometheus.Collector
	switch v := p.(type) {
	case **prometheus.GaugeVec:
		c = *v
	case **prometheus.CounterVec:
		c = *v
	case **prometheus.HistogramVec:
		c = *v
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		switch v := p.(type) {
		case **prometheus.GaugeVec:
			if x, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				*v = x
				return nil
			}
		case **prometheus.CounterVec:
			if x, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				*v = x
				return nil
			}
		case **prometheus.HistogramVec:
			if x, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
				*v = x
				return nil
			}
		}
	}
	return err
}

type listenerMetrics struct {
	active   prometheus.Gauge
	total    prometheus.Counter
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
}

func (m *metrics) listener(name string) *listenerMetrics {
	return &listenerMetrics{
		active:   m.connActive.WithLabelValues(name),
		total:    m.connTotal.WithLabelValues(name),
		bytesIn:  m.bytes.WithLabelValues(name, "in"),
		bytesOut: m.bytes.WithLabelValues(name, "out"),
	}
}

type clusterMetrics struct {
	active          prometheus.Gauge
	total           prometheus.Counter
	bytesIn         prometheus.Counter
	bytesOut        prometheus.Counter
	connectFailures prometheus.Counter
	instances       prometheus.Gauge
	ejected         prometheus.Gauge
	ejections       prometheus.Counter
	retries         prometheus.Counter
	retryOverflows  prometheus.Counter
	connOverflows   prometheus.Counter
	reqOverflows    prometheus.Counter
}

func (m *metrics) cluster(name string) *clusterMetrics {
	return &clusterMetrics{
		active:          m.upActive.WithLabelValues(name),
		total:           m.upTotal.WithLabelValues(name),
		bytesIn:         m.upBytes.WithLabelValues(name, "in"),
		bytesOut:        m.upBytes.WithLabelValues(name, "out"),
		connectFailures: m.connectFails.WithLabelValues(name),
		instances:       m.instances.WithLabelValues(name),
		ejected:         m.ejected.WithLabelValues(name),
		ejections:       m.ejections.WithLabelValues(name),
		retries:         m.retries.WithLabelValues(name),
		retryOverflows:  m.retryOver.WithLabelValues(name),
		connOverflows:   m.overflows.WithLabelValues(name, "connections"),
		reqOverflows:    m.overflows.WithLabelValues(name, "requests"),
	}
}

// routeMetrics caches the per-route collectors; status codes are looked up
// once each.
type routeMetrics struct {
	m        *metrics
	listener string
	route    string
	duration prometheus.Observer
	codes    sync.Map // int → prometheus.Counter
}

func (m *metrics) route(listener, route string) *routeMetrics {
	return &routeMetrics{m: m, listener: listener, route: route, duration: m.duration.WithLabelValues(listener, route)}
}

func (r *routeMetrics) code(code int) prometheus.Counter {
	if c, ok := r.codes.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c := r.m.requests.WithLabelValues(r.listener, r.route, strconv.Itoa(code))
	r.codes.Store(code, c)
	return c
}

func (r *routeMetrics) noInstance(upstream string) prometheus.Counter {
	return r.m.noInstance.WithLabelValues(r.listener, r.route, upstream)
}
