package dnsserver

import (
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Label values of outrigger_dns_queries_total. Other query types and
// rcodes are counted as "other", so a client cannot grow the series.
var (
	qtypeLabels = [...]string{"A", "AAAA", "SRV", "TXT", "PTR", "SOA", "NS", "CNAME", "MX", "ANY", "other"}
	rcodeLabels = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"}
)

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeSRV:
		return 2
	case dns.TypeTXT:
		return 3
	case dns.TypePTR:
		return 4
	case dns.TypeSOA:
		return 5
	case dns.TypeNS:
		return 6
	case dns.TypeCNAME:
		return 7
	case dns.TypeMX:
		return 8
	case dns.TypeANY:
		return 9
	}
	return len(qtypeLabels) - 1
}

func rcodeIndex(rc int) int {
	if rc >= 0 && rc < len(rcodeLabels)-1 {
		return rc
	}
	return len(rcodeLabels) - 1
}

// Reasons a message never reached the handler (outrigger_dns_rejected_total).
const (
	rejectResponse  = "response"  // QR set: never answered, so we cannot be used to reflect
	rejectOpcode    = "opcode"    // not QUERY: NOTIMP
	rejectQuestions = "questions" // QDCOUNT != 1: FORMERR
	rejectSections  = "sections"  // records in answer/authority, or too many additional: FORMERR
	rejectMalformed = "malformed" // could not be parsed: FORMERR, or dropped without a header
)

// metrics are the outrigger_dns_* series. They exist whether or not a
// Registerer was given, so the rest of the package never checks. The
// per-query counters are resolved once, so counting a query is two
// array lookups.
type metrics struct {
	queries      [len(qtypeLabels)][len(rcodeLabels)]prometheus.Counter
	localLatency prometheus.Observer
	fwdLatency   prometheus.Observer
	stale        prometheus.Counter
	truncated    [2]prometheus.Counter // udp, tcp
	rejected     map[string]prometheus.Counter
	recursorErrs prometheus.Counter
	fwdShed      prometheus.Counter
	tcpRefused   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outrigger_dns_queries_total",
		Help: "DNS queries answered, by query type and response code.",
	}, []string{"qtype", "rcode"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "outrigger_dns_query_duration_seconds",
		Help:    "Time to answer a DNS query, by who answered it: local (the catalog view) or recursor.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"answered_by"})
	stale := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_dns_stale_answers_total",
		Help: "DNS answers served from catalog data the view marked stale (the servers are unreachable).",
	})
	truncated := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outrigger_dns_truncated_total",
		Help: "DNS answers cut to fit (TC set), by transport.",
	}, []string{"transport"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outrigger_dns_rejected_total",
		Help: "DNS messages refused before the handler, by reason (response, opcode, questions, sections, malformed).",
	}, []string{"reason"})
	recursorErrs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_dns_recursor_errors_total",
		Help: "Exchanges with a recursor that failed (error, timeout, SERVFAIL or REFUSED) and moved on to the next.",
	})
	fwdShed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_dns_recursions_shed_total",
		Help: "Queries answered SERVFAIL without forwarding because MaxConcurrentRecursions were in flight.",
	})
	tcpRefused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_dns_tcp_connections_refused_total",
		Help: "TCP connections closed at accept because MaxTCPConnections were open.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{queries, latency, stale, truncated, rejected, recursorErrs, fwdShed, tcpRefused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dnsserver: metrics: %w", err)
			}
		}
	}
	m := &metrics{
		localLatency: latency.WithLabelValues("local"),
		fwdLatency:   latency.WithLabelValues("recursor"),
		stale:        stale,
		truncated:    [2]prometheus.Counter{truncated.WithLabelValues("udp"), truncated.WithLabelValues("tcp")},
		rejected:     make(map[string]prometheus.Counter),
		recursorErrs: recursorErrs,
		fwdShed:      fwdShed,
		tcpRefused:   tcpRefused,
	}
	for i, q := range qtypeLabels {
		for j, r := range rcodeLabels {
			m.queries[i][j] = queries.WithLabelValues(q, r)
		}
	}
	for _, r := range []string{rejectResponse, rejectOpcode, rejectQuestions, rejectSections, rejectMalformed} {
		m.rejected[r] = rejected.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) query(qtype uint16, rcode int) {
	m.queries[qtypeIndex(qtype)][rcodeIndex(rcode)].Inc()
}
