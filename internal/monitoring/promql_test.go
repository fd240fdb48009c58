package monitoring

import (
	"slices"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`sum by (webhook, decision) (rate(kpoguard_admission_requests_total[5m]))`, []string{"kpoguard_admission_requests_total"}},
		{`histogram_quantile(0.99, sum by (le, webhook) (rate(kpoguard_admission_duration_seconds_bucket{webhook!~"a|b"}[$__rate_interval])))`,
			[]string{"kpoguard_admission_duration_seconds_bucket"}},
		{`min(kpoguard_serving_certificate_expiry_timestamp_seconds > 0) - time() < 7 * 24 * 3600`, []string{"kpoguard_serving_certificate_expiry_timestamp_seconds"}},
		{`sum(rate(a_total{result!~"hit|miss"}[10m])) / ignoring(result) group_left sum(rate(b_total[10m])) > 1e-3`, []string{"a_total", "b_total"}},
		{`up{job="kpoguard"} == 0 and on (namespace) (sum by (namespace) (up) > 0) or absent(up{job="x"})`, []string{"up"}},
		{`rate(x_total[5m] offset 1h) unless y bool == 1`, []string{"x_total", "y"}},
		// A label value or a grouping label that looks like a metric is none.
		{`sum without (instance) (z{name="not_a_metric"}) by (also_not)`, []string{"z"}},
		{`max by(registry) (kpoguard_registry_ratelimit_remaining)`, []string{"kpoguard_registry_ratelimit_remaining"}},
	} {
		if got := MetricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("MetricNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	values := map[string]string{"__rate_interval": "1m", "job": "kpoguard"}
	for _, tt := range []struct {
		expr, want string
		err        bool
	}{
		{`rate(x{job="$job"}[$__rate_interval])`, `rate(x{job="kpoguard"}[1m])`, false},
		{`rate(x{job="${job}"}[${__rate_interval}])`, `rate(x{job="kpoguard"}[1m])`, false},
		{`rate(x[$__interval])`, "", true},
		{`up`, `up`, false},
		{`label_replace(up, "to", "$1", "from", "(.+)")`, `label_replace(up, "to", "$1", "from", "(.+)")`, false},
		{`label_replace(up, "$job", "${1}", "from", "(.+)")`, `label_replace(up, "kpoguard", "${1}", "from", "(.+)")`, false},
	} {
		got, err := Expand(tt.expr, values)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q, error %v", tt.expr, got, err, tt.want, tt.err)
		}
	}
}
