package daemon

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/capstan-dev/capstan/reconcile"
)

// Metrics are capstan's Prometheus metrics, on a registry of their own (so tests and
// several daemons in one process do not collide). The loop records reconciles; the
// wiring records source polls and API requests with the methods below.
type Metrics struct {
	registry *prometheus.Registry

	reconcileDuration *prometheus.HistogramVec
	reconciles        *prometheus.CounterVec
	changes           *prometheus.CounterVec
	drift             *prometheus.GaugeVec
	health            *prometheus.GaugeVec
	revision          *prometheus.GaugeVec
	lastSuccess       prometheus.Gauge
	sourcePoll        prometheus.Histogram
	sourceErrors      prometheus.Counter
	apiRequests       *prometheus.CounterVec
	apiErrors         *prometheus.CounterVec
	leader            prometheus.Gauge
	triggers          *prometheus.CounterVec
	notifications     *prometheus.CounterVec

	mu          sync.Mutex
	revisionNow string
	driftStacks map[string]bool
}

// NewMetrics registers every metric, plus the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "capstan_reconcile_duration_seconds",
			Help:    "Time one reconcile took (load, observe, plan, apply, converge), by result.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"result"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_reconciles_total",
			Help: "Reconciles by result: success, stalled, waiting, transient.",
		}, []string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_changes_total",
			Help: "Planned changes carried out, by action (create, update, scale, replace, delete) and outcome (applied, failed, skipped, unhandled).",
		}, []string{"action", "outcome"}),
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "capstan_drift_objects",
			Help: "Objects whose live state departs from what capstan applied, per stack, at the last reconcile.",
		}, []string{"stack"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "capstan_stack_health",
			Help: "1 for each stack's health at the last reconcile (Healthy, Progressing, Degraded, Unknown), 0 for the others.",
		}, []string{"stack", "health"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "capstan_last_applied_revision_info",
			Help: "The revision last applied without error; the value is always 1.",
		}, []string{"revision"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "capstan_last_success_timestamp_seconds",
			Help: "Unix time of the last reconcile without error.",
		}),
		sourcePoll: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capstan_source_poll_duration_seconds",
			Help:    "Time to ask the source for its revision and fetch it when it changed.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		sourceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "capstan_source_poll_errors_total",
			Help: "Source polls that failed (unreachable server, refused credentials, bad ref...).",
		}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_api_requests_total",
			Help: "Requests sent to the Docker Engine and SLB APIs, by API and method.",
		}, []string{"api", "method"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_api_errors_total",
			Help: "API requests that failed (transport error or a 5xx/429 answer), by API.",
		}, []string{"api"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "capstan_leader",
			Help: "1 while this replica holds the leader lease and may write, 0 otherwise.",
		}),
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_triggers_total",
			Help: "Reconcile triggers received, by source (interval, webhook, sync, file, leader); coalesced ones included.",
		}, []string{"trigger"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capstan_notifications_total",
			Help: "Notifications sent, by event and result (sent, failed).",
		}, []string{"event", "result"}),
		driftStacks: map[string]bool{},
	}
	m.registry.MustRegister(m.reconcileDuration, m.reconciles, m.changes, m.drift, m.health, m.revision, m.lastSuccess,
		m.sourcePoll, m.sourceErrors, m.apiRequests, m.apiErrors, m.leader, m.triggers, m.notifications,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Registry is the registry the metrics live on, for callers adding their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// SourcePoll records one poll of the source.
func (m *Metrics) SourcePoll(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.sourcePoll.Observe(d.Seconds())
	if err != nil {
		m.sourceErrors.Inc()
	}
}

// APIRequest records one request to api ("docker" or "slb"); failed is a transport
// error or an answer the server could not handle (5xx, throttling).
func (m *Metrics) APIRequest(api, method string, failed bool) {
	if m == nil {
		return
	}
	m.apiRequests.WithLabelValues(api, method).Inc()
	if failed {
		m.apiErrors.WithLabelValues(api).Inc()
	}
}

// AddAPIRequests records n requests to api at once, for clients that only report totals
// (the SLB sink's call counter).
func (m *Metrics) AddAPIRequests(api, method string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.apiRequests.WithLabelValues(api, method).Add(float64(n))
}

func (m *Metrics) setLeader(leader bool) {
	if m == nil {
		return
	}
	if leader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

func (m *Metrics) trigger(reason string) {
	if m == nil {
		return
	}
	m.triggers.WithLabelValues(reason).Inc()
}

func (m *Metrics) notification(event string, err error) {
	if m == nil {
		return
	}
	result := "sent"
	if err != nil {
		result = "failed"
	}
	m.notifications.WithLabelValues(event, result).Inc()
}

// reconciled records one reconcile.
func (m *Metrics) reconciled(d time.Duration, result string, rep Report, st Status) {
	if m == nil {
		return
	}
	m.reconcileDuration.WithLabelValues(result).Observe(d.Seconds())
	m.reconciles.WithLabelValues(result).Inc()
	if rep.Result != nil {
		for _, r := range rep.Result.Changes {
			m.changes.WithLabelValues(r.Change.Action.String(), string(r.Outcome)).Inc()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if result == "success" && st.LastSuccessTime != nil {
		m.lastSuccess.Set(float64(st.LastSuccessTime.UnixNano()) / 1e9)
	}
	if st.Revision != m.revisionNow {
		if m.revisionNow != "" {
			m.revision.DeleteLabelValues(m.revisionNow)
		}
		m.revisionNow = st.Revision
		if st.Revision != "" {
			m.revision.WithLabelValues(st.Revision).Set(1)
		}
	}
	if rep.Observed && rep.Plan != nil {
		counts := map[string]int{}
		for _, s := range rep.Stacks {
			counts[s.Name] = 0
		}
		for _, d := range rep.Drift {
			counts[d.Stack]++
		}
		for s := range m.driftStacks {
			if _, ok := counts[s]; !ok {
				m.drift.DeleteLabelValues(s)
				delete(m.driftStacks, s)
			}
		}
		for s, n := range counts {
			m.drift.WithLabelValues(s).Set(float64(n))
			m.driftStacks[s] = true
		}
		m.health.Reset()
		for _, sk := range st.Stacks {
			for _, h := range []reconcile.Health{reconcile.Healthy, reconcile.Progressing, reconcile.Degraded, reconcile.Unknown} {
				v := 0.0
				if sk.Health == h {
					v = 1
				}
				m.health.WithLabelValues(sk.Name, string(h)).Set(v)
			}
		}
	}
}

// resultLabel names a reconcile's result for metrics and history.
func resultLabel(class Class) string {
	if class == "" {
		return "success"
	}
	return string(class)
}
