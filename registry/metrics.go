package registry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the registry lookups' Prometheus metrics. Labels are
// bounded: a registry label is a name from the policy or "other", never a
// host or image taken from a pod.
type Metrics struct {
	lookups            *prometheus.CounterVec
	duration           *prometheus.HistogramVec
	requests           *prometheus.CounterVec
	rateLimitRemaining *prometheus.GaugeVec
	cacheEntries       *prometheus.GaugeVec
}

// Lookup results besides the failure reasons.
const (
	resultHit  = "hit"
	resultMiss = "miss"
)

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_registry_lookups_total",
			Help: "Image platform lookups by result: hit (answered from the cache), miss (asked the registry), or why it failed.",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kpoguard_registry_lookup_duration_seconds",
			Help:    "Time to find one image's platforms, by result class: hit, miss or error.",
			Buckets: []float64{0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_registry_requests_total",
			Help: "HTTP requests to registries by registry (the policy's name for it, or other), method and status code (error: no response).",
		}, []string{"registry", "method", "code"}),
		rateLimitRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpoguard_registry_ratelimit_remaining",
			Help: "The pulls a registry says are left in its window (Docker Hub's RateLimit-Remaining header).",
		}, []string{"registry"}),
		cacheEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kpoguard_registry_cache_entries",
			Help: "Entries in the lookup cache: tags (tag to digest) and manifests (digest to platforms).",
		}, []string{"cache"}),
	}
	reg.MustRegister(m.lookups, m.duration, m.requests, m.rateLimitRemaining, m.cacheEntries)
	for _, r := range append([]string{resultHit, resultMiss}, reasonStrings()...) {
		m.lookups.WithLabelValues(r)
	}
	return m
}

func reasonStrings() []string {
	out := make([]string, len(Reasons))
	for i, r := range Reasons {
		out[i] = string(r)
	}
	return out
}
