package audit

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kpoguard/kpoguard/policy"
)

// Metrics are the background audit's. Labels come from fixed sets (rule
// IDs, modes, results); the per-namespace series, when turned on, have at
// most NamespaceLimit+1 namespace values. Only the replica holding the
// Lease has non-zero audit series, so a sum over replicas is the audit's.
type Metrics struct {
	pods         *prometheus.GaugeVec
	reviewed     prometheus.Gauge
	runs         *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	duration     prometheus.Histogram
	leader       prometheus.Gauge
	reportErrors prometheus.Counter
	// namespaces is nil unless per-namespace series are on.
	namespaces     *prometheus.GaugeVec
	namespaceLimit int

	// mu orders publishing and dropping the figures; published holds the
	// per-namespace series set last, so that the next publish deletes
	// only those gone.
	mu        sync.Mutex
	published map[namespaceSeries]bool
}

// namespaceSeries is one kpoguard_audit_namespace_pods series' labels.
type namespaceSeries struct {
	namespace string
	key       Key
}

// Run results, the label of kpoguard_audit_runs_total.
const (
	runSuccess = "success"
	runFailure = "failure"
)

// taskNamespaceLabel names the task pods' namespace. Not "namespace":
// scraped through a ServiceMonitor the target's own namespace (the
// release's) takes that name, and the alerts group by it.
const taskNamespaceLabel = "task_namespace"

// NewMetrics registers the audit's metrics; namespaceLimit > 0 adds the
// per-namespace series, capped at that many namespaces.
func NewMetrics(reg prometheus.Registerer, namespaceLimit int) *Metrics {
	m := &Metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpoguard_audit_pods",
			Help: "Running task pods with a finding of this rule, mode and result (changed: a mutating rule would change the pod now; violated) in the last completed audit.",
		}, []string{"rule", "mode", "result"}),
		reviewed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_audit_pods_reviewed",
			Help: "Running task pods the last completed audit reviewed.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_audit_runs_total",
			Help: "Audits of the running task pods, by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_audit_last_success_timestamp_seconds",
			Help: "When the last audit completed.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kpoguard_audit_duration_seconds",
			Help:    "Time one audit of the running task pods took, publishing included.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_audit_leader",
			Help: "1 on the replica that holds the audit's Lease and audits, else 0.",
		}),
		reportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kpoguard_audit_report_errors_total",
			Help: "Audits whose PolicyReports could not all be written (listed, created, updated or deleted); the next audit writes them again.",
		}),
		namespaceLimit: namespaceLimit,
	}
	reg.MustRegister(m.pods, m.reviewed, m.runs, m.lastSuccess, m.duration, m.leader, m.reportErrors)
	if namespaceLimit > 0 {
		m.namespaces = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpoguard_audit_namespace_pods",
			Help: "kpoguard_audit_pods by the task pods' namespace: the namespaces with the most findings, the rest summed under task_namespace=\"_other\".",
		}, []string{taskNamespaceLabel, "rule", "mode", "result"})
		reg.MustRegister(m.namespaces)
	}
	for _, r := range []string{runSuccess, runFailure} {
		m.runs.WithLabelValues(r)
	}
	m.zero()
	return m
}

// zero sets every rule's pod counts to zero: the series exist from the
// start, and a finding that went away reads 0, not its last value.
func (m *Metrics) zero() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set(Summary{})
}

// set replaces the figures with s's. Each series is set to its new value
// in place, never zeroed first, and only the per-namespace series s no
// longer has are deleted: a scrape in between sees the old figures or the
// new, never zeros.
func (m *Metrics) set(s Summary) {
	for _, k := range allKeys() {
		m.pods.WithLabelValues(string(k.Rule), string(k.Mode), string(k.Result)).Set(float64(s.Pods[k]))
	}
	m.reviewed.Set(float64(s.Reviewed))
	if m.namespaces == nil {
		return
	}
	now := map[namespaceSeries]bool{}
	for ns, counts := range CapNamespaces(s.Namespaces, m.namespaceLimit) {
		for k, n := range counts {
			m.namespaces.WithLabelValues(ns, string(k.Rule), string(k.Mode), string(k.Result)).Set(float64(n))
			now[namespaceSeries{ns, k}] = true
		}
	}
	for old := range m.published {
		if !now[old] {
			m.namespaces.DeleteLabelValues(old.namespace, string(old.key.Rule), string(old.key.Mode), string(old.key.Result))
		}
	}
	m.published = now
}

// allKeys are every rule's possible findings: a mutating rule's changes
// and a validating rule's violations, in each mode.
func allKeys() []Key {
	var out []Key
	for _, id := range policy.RuleIDs() {
		for _, mode := range []policy.Mode{policy.Audit, policy.Warn, policy.Enforce} {
			if policy.Mutates(id) {
				out = append(out, Key{id, mode, Changed})
			}
			if policy.Validates(id) {
				out = append(out, Key{id, mode, Violated})
			}
		}
	}
	return out
}

// publish records a completed audit.
func (m *Metrics) publish(s Summary, seconds, unixSeconds float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set(s)
	m.runs.WithLabelValues(runSuccess).Inc()
	m.lastSuccess.Set(unixSeconds)
	m.duration.Observe(seconds)
}

// reportFailed records an audit whose PolicyReports were not all written.
func (m *Metrics) reportFailed() { m.reportErrors.Inc() }

// failed records an audit that did not complete; the last one's figures
// stay.
func (m *Metrics) failed(seconds float64) {
	m.runs.WithLabelValues(runFailure).Inc()
	m.duration.Observe(seconds)
}

// leading records whether this replica holds the Lease. A replica that
// loses it drops its figures: the new leader publishes its own.
func (m *Metrics) leading(yes bool) {
	if yes {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.zero()
}
