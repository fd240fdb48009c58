package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// Label values. Every label is drawn from a fixed set: never a pod, image
// or namespace name.
const (
	hookMutate         = "mutate-pods"
	hookValidate       = "validate-pods"
	hookValidatePolicy = "validate-policy"
	hookGuardWorkers   = "guard-workers"
	// panicImageLookup labels panics in the goroutines image lookups
	// start, outside any webhook's handler.
	panicImageLookup = "image-lookup"

	resultChanged  = "changed"
	resultViolated = "violated"

	reloadSuccess = "success"
	reloadFailure = "failure"
)

// Metrics are kpoguard's Prometheus metrics.
type Metrics struct {
	Registry *prometheus.Registry

	admissions      *prometheus.CounterVec
	ruleResults     *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	panics          *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	reloadHealthy   prometheus.Gauge
	reloadTimestamp prometheus.Gauge
	certExpiry      prometheus.Gauge

	parentResolutions    *prometheus.CounterVec
	workerCachePods      prometheus.Gauge
	workerCacheEvictions prometheus.Counter
}

// NewMetrics registers kpoguard's metrics, and the Go and process
// collectors, in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_admission_requests_total",
			Help: "Admission requests by webhook and decision (allowed, mutated, warned, denied, skipped, error).",
		}, []string{"webhook", "decision"}),
		ruleResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_rule_results_total",
			Help: "Rule findings by rule, mode and result: changed (a mutation, applied only in enforce mode) or violated.",
		}, []string{"rule", "mode", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kpoguard_admission_duration_seconds",
			Help:    "Time kpoguard spent on an admission request, from decoded request to response.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"webhook"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_admission_panics_total",
			Help: "Panics recovered while handling an admission request, by webhook, or image-lookup for one in a lookup's goroutine (that image's lookup failed).",
		}, []string{"webhook"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_policy_reloads_total",
			Help: "Policy loads by result; on failure the last good policy stays in force.",
		}, []string{"result"}),
		reloadHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_policy_last_reload_successful",
			Help: "1 when the newest policy source loaded, 0 when it was refused and an older policy is in force.",
		}),
		reloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_policy_last_reload_success_timestamp_seconds",
			Help: "When the policy in force was loaded.",
		}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_serving_certificate_expiry_timestamp_seconds",
			Help: "When the serving certificate kpoguard presents expires.",
		}),
		parentResolutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_parent_resolutions_total",
			Help: "How the worker that launched a task pod was found, by webhook and result: found, found-after-cache-miss, kubernetes-executor, default-queue, unknown (denied); conflict counts pods asking for another pool than their worker's.",
		}, []string{"webhook", "result"}),
		workerCachePods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_worker_cache_pods",
			Help: "Worker pods in the worker cache, at most --worker-cache-size.",
		}),
		workerCacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kpoguard_worker_cache_evictions_total",
			Help: "Worker pods dropped from the full worker cache to make room for another; the next task of a dropped worker costs a GET.",
		}),
	}
	m.Registry.MustRegister(m.admissions, m.ruleResults, m.duration, m.panics, m.reloads, m.reloadHealthy, m.reloadTimestamp, m.certExpiry, m.parentResolutions,
		m.workerCachePods, m.workerCacheEvictions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Zero series exist from the start, so rates and alerts need no
	// first event.
	for _, hook := range []string{hookMutate, hookValidate, hookValidatePolicy, hookGuardWorkers} {
		for _, d := range review.Decisions {
			m.admissions.WithLabelValues(hook, string(d))
		}
		m.panics.WithLabelValues(hook)
	}
	m.panics.WithLabelValues(panicImageLookup)
	for _, hook := range []string{hookMutate, hookValidate} {
		for _, r := range resolutionResults {
			m.parentResolutions.WithLabelValues(hook, r)
		}
	}
	m.parentResolutions.WithLabelValues(hookMutate, resolutionConflict)
	for _, r := range []string{reloadSuccess, reloadFailure} {
		m.reloads.WithLabelValues(r)
	}
	for _, id := range policy.RuleIDs() {
		for _, mode := range []policy.Mode{policy.Audit, policy.Warn, policy.Enforce} {
			if policy.Mutates(id) {
				m.ruleResults.WithLabelValues(string(id), string(mode), resultChanged)
			}
			if policy.Validates(id) {
				m.ruleResults.WithLabelValues(string(id), string(mode), resultViolated)
			}
		}
	}
	return m
}

func (m *Metrics) countChanges(changes []policy.Change) {
	for _, c := range changes {
		m.ruleResults.WithLabelValues(string(c.Rule), string(c.Mode), resultChanged).Inc()
	}
}

func (m *Metrics) countViolations(violations []policy.Violation) {
	for _, v := range violations {
		m.ruleResults.WithLabelValues(string(v.Rule), string(v.Mode), resultViolated).Inc()
	}
}

// PolicyLoaded records a policy source that loaded.
func (m *Metrics) PolicyLoaded(unixSeconds float64) {
	m.reloads.WithLabelValues(reloadSuccess).Inc()
	m.reloadHealthy.Set(1)
	m.reloadTimestamp.Set(unixSeconds)
}

// PolicyRefused records a policy source that did not load.
func (m *Metrics) PolicyRefused() {
	m.reloads.WithLabelValues(reloadFailure).Inc()
	m.reloadHealthy.Set(0)
}
