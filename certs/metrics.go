package certs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stages of a sync, the values of kpoguard_certificate_sync_errors_total's
// stage label.
const (
	stageSecret = "secret" // reading, renewing or writing the Secret
	stageInject = "inject" // updating the webhook configurations' caBundle
	stageTrust  = "trust"  // the caBundle does not yet trust the new serving certificate
	stageWrite  = "write"  // writing the serving pair to --cert-dir
)

// Metrics say whether certificate upkeep works, before an expiry does.
// A nil *Metrics records nothing.
type Metrics struct {
	syncErrors   *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	bundleTrusts prometheus.Gauge
	renewalDue   prometheus.Gauge
}

// NewMetrics registers the certificate upkeep metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kpoguard_certificate_sync_errors_total",
			Help: "Failed self-managed certificate syncs by stage: secret, inject, trust (the caBundle does not yet trust the new serving certificate, which is held back) or write.",
		}, []string{"stage"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_certificate_last_successful_sync_timestamp_seconds",
			Help: "When the self-managed certificates were last synced without error.",
		}),
		bundleTrusts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_certificate_bundle_trusts_serving",
			Help: "1 when the caBundle of every webhook in kpoguard's webhook configurations verifies the certificate this replica serves (also when no configuration exists), else 0.",
		}),
		renewalDue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kpoguard_certificate_renewal_due_timestamp_seconds",
			Help: "When the certificate this replica serves is due for self-managed renewal (30% of its life left).",
		}),
	}
	reg.MustRegister(m.syncErrors, m.lastSuccess, m.bundleTrusts, m.renewalDue)
	for _, stage := range []string{stageSecret, stageInject, stageTrust, stageWrite} {
		m.syncErrors.WithLabelValues(stage)
	}
	return m
}

func (m *Metrics) failed(stage string) {
	if m != nil {
		m.syncErrors.WithLabelValues(stage).Inc()
	}
}

func (m *Metrics) synced(now time.Time) {
	if m != nil {
		m.lastSuccess.Set(float64(now.Unix()))
	}
}

func (m *Metrics) served(trusted bool, renewalDue time.Time) {
	if m == nil {
		return
	}
	if trusted {
		m.bundleTrusts.Set(1)
	} else {
		m.bundleTrusts.Set(0)
	}
	if !renewalDue.IsZero() {
		m.renewalDue.Set(float64(renewalDue.Unix()))
	}
}
