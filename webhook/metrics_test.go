package webhook

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every series exists before the first request, so dashboards and alerts
// see zeros rather than gaps; only real rule/result pairs are created.
func TestMetricsStartAtZero(t *testing.T) {
	m := NewMetrics()
	for _, c := range []struct {
		name string
		got  int
		want int
	}{
		{"admission series (4 webhooks x 6 decisions)", testutil.CollectAndCount(m.admissions), 24},
		// 6 mutating and 6 validating rules, each in audit, warn and enforce.
		{"rule result series", testutil.CollectAndCount(m.ruleResults), 36},
		{"reload series", testutil.CollectAndCount(m.reloads), 2},
		// 5 ways a resolution ends, per pod webhook, and conflicts (mutating only).
		{"parent resolution series", testutil.CollectAndCount(m.parentResolutions), 11},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if v := testutil.ToFloat64(m.ruleResults.WithLabelValues("ephemeral-storage", "enforce", resultChanged)); v != 0 {
		t.Errorf("fresh counter = %v", v)
	}
}
