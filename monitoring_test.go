package repo_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kpoguard/kpoguard/audit"
	"github.com/kpoguard/kpoguard/certs"
	"github.com/kpoguard/kpoguard/internal/monitoring"
	"github.com/kpoguard/kpoguard/registry"
	"github.com/kpoguard/kpoguard/webhook"
)

// The chart's monitoring, checked without a cluster: the alert rules by
// promtool, the dashboard and the metrics reference against the metrics
// kpoguard registers. The e2e suite evaluates both against a real
// Prometheus scraping kpoguard (TestDashboardAgainstPrometheus).

var (
	rulesFile     = filepath.Join("charts", "kpoguard", "alerts", "kpoguard-rules.yaml")
	ruleTestsFile = filepath.Join("charts", "kpoguard", "alerts", "kpoguard-rules_test.yaml")
	dashboardFile = filepath.Join("charts", "kpoguard", "dashboards", "kpoguard.json")
	metricsDoc    = filepath.Join("docs", "metrics.md")
)

// promtool is Debian's, which `make tools` installs: a machine without it
// fails these tests rather than skipping them.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: `make tools` installs Debian's prometheus package (hack/install-prometheus.sh)")
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool(t, "check", "rules", rulesFile)
	promtool(t, "test", "rules", ruleTestsFile)
}

// Every alert has a promtool case where it fires and one where it stays
// silent, its severity, and a runbook that is a section of
// docs/operations.md.
func TestAlertRulesTested(t *testing.T) {
	rules, err := monitoring.LoadRules(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := monitoring.LoadAlertCases(ruleTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatalf("no alerts in %s", rulesFile)
	}
	anchors := markdownAnchors(t, filepath.Join("docs", "operations.md"))
	alerts := map[string]bool{}
	for _, r := range rules {
		alerts[r.Alert] = true
		if c := cases[r.Alert]; !c.Fires || !c.Silent {
			t.Errorf("%s: a case where it fires %v, one where it stays silent %v; want both in %s", r.Alert, c.Fires, c.Silent, ruleTestsFile)
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		runbook, ok := strings.CutPrefix(r.Annotations["runbook"], "docs/operations.md#")
		if !ok || !anchors[runbook] {
			t.Errorf("%s: runbook %q, want docs/operations.md#<a section of it>", r.Alert, r.Annotations["runbook"])
		}
	}
	for alert := range cases {
		if !alerts[alert] {
			t.Errorf("%s tests alert %s, which %s lacks", ruleTestsFile, alert, rulesFile)
		}
	}
}

// markdownAnchors are the anchors GitHub gives a document's headings.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			anchor := strings.ToLower(strings.ReplaceAll(heading, " ", "-"))
			anchors[regexp.MustCompile(`[^a-z0-9_-]`).ReplaceAllString(anchor, "")] = true
		}
	}
	return anchors
}

// descName and descLabels read a metric's name and label names from its
// descriptor, which has no getters for them.
var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// registration is how kpoguard registers a metric: its type (counter,
// gauge, histogram) and its label names in order.
type registration struct {
	kind   string
	labels []string
}

// sameDesc describes one descriptor, so that registering it again hands
// back the collector that owns it (prometheus.AlreadyRegisteredError):
// the only way to learn the type of a vector with no series yet, which a
// Gather leaves out.
type sameDesc struct{ desc *prometheus.Desc }

func (s sameDesc) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }
func (sameDesc) Collect(chan<- prometheus.Metric)      {}

// kindOf is the type of the collector that registered desc in reg.
func kindOf(t *testing.T, reg *prometheus.Registry, desc *prometheus.Desc) string {
	t.Helper()
	var already prometheus.AlreadyRegisteredError
	if err := reg.Register(sameDesc{desc}); !errors.As(err, &already) {
		t.Fatalf("%s: registering its descriptor again gave %v, want the collector that owns it", desc, err)
	}
	// A gauge has a counter's methods too: asked first.
	switch already.ExistingCollector.(type) {
	case prometheus.Gauge, *prometheus.GaugeVec:
		return "gauge"
	case prometheus.Histogram, *prometheus.HistogramVec:
		return "histogram"
	case prometheus.Counter, *prometheus.CounterVec:
		return "counter"
	}
	t.Fatalf("%s: collector %T, not a counter, gauge or histogram", desc, already.ExistingCollector)
	return ""
}

// exportedMetrics are the metrics kpoguard serves on /metrics, by name:
// what its metrics register, as serve registers them with every option
// on (the audit and its per-namespace series, self-managed
// certificates). Histograms' and summaries' series names add suffixes
// (served). kpoguard_* metrics come with their registration.
func exportedMetrics(t *testing.T) map[string]registration {
	t.Helper()
	m := webhook.NewMetrics()
	registry.NewMetrics(m.Registry)
	audit.NewMetrics(m.Registry, 1)
	certs.NewMetrics(m.Registry)
	descs := make(chan *prometheus.Desc)
	go func() { m.Registry.Describe(descs); close(descs) }()
	var all []*prometheus.Desc
	for d := range descs {
		all = append(all, d)
	}
	metrics := map[string]registration{}
	for _, d := range all {
		name, labels := descName.FindStringSubmatch(d.String()), descLabels.FindStringSubmatch(d.String())
		if name == nil || labels == nil {
			t.Fatalf("no name or labels in descriptor %s", d)
		}
		var r registration
		if strings.HasPrefix(name[1], "kpoguard_") {
			r = registration{kind: kindOf(t, m.Registry, d), labels: strings.FieldsFunc(labels[1], func(c rune) bool { return c == ',' })}
		}
		metrics[name[1]] = r
	}
	return metrics
}

func isExported(exported map[string]registration, name string) bool {
	_, ok := exported[name]
	return ok
}

// served reports whether kpoguard serves a series of this name.
func served(exported map[string]registration, name string) bool {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && isExported(exported, base) {
			return true
		}
	}
	// up is Prometheus' own, for every target it scrapes.
	return name == "up"
}

// metricSelector is a selector of a kpoguard metric, with its matchers
// if it has any.
var metricSelector = regexp.MustCompile(`\b(kpoguard_\w+)(?:\{([^}]*)\})?`)

// The dashboard works in any Grafana: every panel and query reads the
// datasource variable, every selector the namespace variable, panel IDs
// are unique (rows' panels too), rates follow the scrape interval (the
// audit's the audit window), and every
// metric queried is one kpoguard serves; so is every metric the alert
// rules use.
func TestDashboardAndRulesUseServedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	d, err := monitoring.LoadDashboard(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(d.Templating.List, func(v monitoring.Variable) bool { return v.Name == "datasource" }); i < 0 ||
		d.Templating.List[i].Type != "datasource" || d.Templating.List[i].Query != "prometheus" {
		t.Errorf("no template variable datasource of type datasource querying prometheus: %+v", d.Templating.List)
	}
	if i := slices.IndexFunc(d.Templating.List, func(v monitoring.Variable) bool { return v.Name == "namespace" }); i < 0 ||
		d.Templating.List[i].Type != "query" || !strings.Contains(d.Templating.List[i].Query, ", namespace)") {
		t.Errorf("no template variable namespace of type query over the namespace label: %+v", d.Templating.List)
	}
	if i := slices.IndexFunc(d.Templating.List, func(v monitoring.Variable) bool { return v.Name == "audit_window" }); i < 0 ||
		d.Templating.List[i].Type != "interval" || !strings.HasPrefix(d.Templating.List[i].Query, "1h,") {
		t.Errorf("no template variable audit_window of type interval, 1h first: %+v", d.Templating.List)
	}
	uses := func(what string, ds *monitoring.Datasource) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want prometheus ${datasource}", what, ds)
		}
	}
	ids := map[int]string{}
	for _, p := range d.AllPanels() {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d, already %q's (or missing)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.Type != "row" {
			uses(fmt.Sprintf("panel %q", p.Title), p.Datasource)
		}
	}
	queries := d.Queries()
	if len(queries) == 0 {
		t.Fatal("no queries in the dashboard")
	}
	for _, q := range queries {
		if q.Datasource != nil {
			uses(q.Key(), q.Datasource)
		}
		if r := regexp.MustCompile(`\[[0-9]+[smhd]\]`).FindString(q.Expr); r != "" {
			t.Errorf("%s: range %s, want [$__rate_interval], which follows the scrape interval", q.Key(), r)
		}
		// The one exception: the audit runs every 10 minutes by default,
		// so a scrape-sized range holds no audit most of the time; its
		// rates take the audit window (an hour by default), and nothing
		// else does.
		audits := !slices.ContainsFunc(monitoring.MetricNames(q.Expr), func(n string) bool { return !strings.HasPrefix(n, "kpoguard_audit_") })
		window, rateInterval := strings.Contains(q.Expr, "audit_window"), strings.Contains(q.Expr, "__rate_interval")
		switch {
		case audits && rateInterval:
			t.Errorf("%s: the audit's series over $__rate_interval, want [$audit_window]: an audit every 10 minutes leaves the scrape-sized range empty", q.Key())
		case window && !audits:
			t.Errorf("%s: $audit_window over series other than the audit's, want [$__rate_interval]", q.Key())
		}
		// Every selector keeps to the releases the namespace variable
		// picks.
		for _, sel := range metricSelector.FindAllStringSubmatch(q.Expr, -1) {
			if !slices.Contains(strings.Split(sel[2], ","), `namespace=~"$namespace"`) {
				t.Errorf("%s: %s without namespace=~\"$namespace\"", q.Key(), sel[0])
			}
		}
		checkServed(t, exported, q.Key(), q.Expr)
	}
	rules, err := monitoring.LoadRules(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		checkServed(t, exported, r.Alert, r.Expr)
	}
}

func checkServed(t *testing.T, exported map[string]registration, what, expr string) {
	t.Helper()
	names := monitoring.MetricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", what, expr)
	}
	for _, name := range names {
		if !served(exported, name) {
			t.Errorf("%s queries %s, which kpoguard does not serve", what, name)
		}
	}
}

// docRow is a row of docs/metrics.md's table: | `name` | type | labels |
// meaning | `example query` |.
var docRow = regexp.MustCompile("^\\| `([a-z_]+)` \\|([^|]*)\\|([^|]*)\\|([^|]*)\\| `([^`]+)` \\|$")

// docLabels are the label names a row's labels column gives: the names in
// backquotes outside parentheses, which say the values.
func docLabels(column string) []string {
	depth, outside := 0, strings.Builder{}
	for _, c := range column {
		switch {
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0:
			outside.WriteRune(c)
		}
	}
	var labels []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(outside.String(), -1) {
		labels = append(labels, m[1])
	}
	return labels
}

// docs/metrics.md has a row for every metric kpoguard serves, and for no
// other, each with the type and label names kpoguard registers it with
// and an example query that uses it.
func TestMetricsDocumented(t *testing.T) {
	exported := exportedMetrics(t)
	data, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `kpoguard_") {
			continue
		}
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s: a metric row not shaped | `name` | type | labels | meaning | `example` |: %s", metricsDoc, line)
			continue
		}
		name, typ, labels, example := m[1], strings.TrimSpace(m[2]), docLabels(m[3]), m[5]
		rows[name] = true
		r, ok := exported[name]
		if !ok {
			t.Errorf("%s documents %s, which kpoguard does not serve", metricsDoc, name)
			continue
		}
		if typ != r.kind {
			t.Errorf("%s: documented as %q, registered as a %s", name, typ, r.kind)
		}
		if !slices.Equal(sorted(labels), sorted(r.labels)) {
			t.Errorf("%s: documented labels %v, registered %v", name, labels, r.labels)
		}
		if uses := monitoring.MetricNames(example); !slices.ContainsFunc(uses, func(u string) bool { return u == name || u == name+"_bucket" }) {
			t.Errorf("%s: example %q does not query it", name, example)
		}
	}
	for name := range exported {
		if strings.HasPrefix(name, "kpoguard_") && !rows[name] {
			t.Errorf("kpoguard serves %s, which %s's table lacks", name, metricsDoc)
		}
	}
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
