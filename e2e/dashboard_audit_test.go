package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The audit part of TestDashboardAgainstPrometheus: the dashboard's
// "Running pods (background audit)" row and KpoguardAuditStale, against
// an auditor that Prometheus scrapes while a platform team rolls a
// tightened rule out: audit mode, then warn, then enforce.

// The audit's pods: small ones within every step of the rollout, big
// ones (2 CPUs) against it.
const auditSmall, auditBig = 4, 3

// dashboardAuditPolicy is dashboardPolicy with max-resources tightened to
// 1500m CPU in mode: createAuditPods' big pods offend it, the small ones
// do not.
func dashboardAuditPolicy(t *testing.T, downRegistry, mode string) string {
	t.Helper()
	doc := dashboardPolicy(downRegistry)
	old := `maxResources: {mode: enforce, container: {cpu: "4", memory: 8Gi}, pod: {cpu: "4", memory: 8Gi}}`
	if !strings.Contains(doc, old) {
		t.Fatal("dashboardPolicy changed: update dashboardAuditPolicy")
	}
	return strings.Replace(doc, old, "maxResources: {mode: "+mode+", container: {cpu: 1500m, memory: 8Gi}, pod: {cpu: 1500m, memory: 8Gi}}", 1)
}

// auditRun is what the audit part did and what it expects the audit to
// have found at its window's end.
type auditRun struct {
	// win opens on a scrape of the auditor after its first audit and
	// closes on one after its last.
	win window
	// reviewed is every unfinished task pod of the cluster.
	reviewed int
	// findings are the pods with a finding, by rule, mode and result, as
	// `kpoguard audit` finds them under the final policy; byNamespace the
	// same by task pods' namespace too.
	findings, byNamespace map[string]float64
	// audits is how many audits completed in the window.
	audits float64
	// phases are when each step of the rollout began.
	phases []phase
}

// runAudit creates running task pods, starts the auditor (Prometheus
// scrapes its metrics address already), and rolls max-resources' 1500m
// out: audit, warn, enforce, each step once the auditor has audited the
// one before; pace apart.
func runAudit(t *testing.T, qa *promQuerier, auditor *sandbox.Process, downRegistry string, pace time.Duration) auditRun {
	t.Helper()
	createAuditPods(t, auditSmall, auditBig)
	startAuditorProcess(t, auditor)
	runs := func() float64 { return metricOf(t, auditor, `kpoguard_audit_runs_total{result="success"}`) }
	waitUntil(t, "the auditor's first audit", func() bool { return runs() >= 1 })
	a := auditRun{findings: map[string]float64{}, byNamespace: map[string]float64{}}
	start := qa.scrapeAfter(time.Now())
	a.phases = append(a.phases, phase{fmt.Sprintf("%d of %d task pods with 2 CPUs", auditBig, auditSmall+auditBig), start})
	rollout := []string{"audit", "warn", "enforce"}
	for i, mode := range rollout {
		time.Sleep(pace)
		before := runs()
		changed := time.Now()
		a.phases = append(a.phases, phase{"max-resources " + mode, changed})
		if doc := dashboardAuditPolicy(t, downRegistry, mode); i == 0 {
			setPolicy(t, doc)
		} else {
			writePolicy(t, doc)
		}
		waitUntil(t, "the audit after max-resources went "+mode, func() bool { return runs() > before })
		t.Logf("max-resources in %s mode: audited within %v", mode, time.Since(changed).Round(10*time.Millisecond))
		series := fmt.Sprintf(`kpoguard_audit_pods{mode=%q,result="violated",rule="max-resources"}`, mode)
		if got := metricOf(t, auditor, series); got < auditBig {
			t.Fatalf("max-resources in %s mode: %v running pods against it, want at least the %d big ones", mode, got, auditBig)
		}
	}
	time.Sleep(pace)
	end := qa.scrapeAfter(time.Now().Add(2 * promInterval))
	a.win = window{start: start, end: end, before: qa.scraped(start), after: qa.scraped(end)}
	a.audits = float64(len(rollout)) // one per step: the interval is an hour

	taskPods, err := cluster.Client.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{LabelSelector: "kubernetes_pod_operator=True", FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		t.Fatal(err)
	}
	a.reviewed = len(taskPods.Items)
	a.findings, a.byNamespace = auditedByCLI(t, auditor.Binary)
	// What the test made, whatever else runs in the cluster.
	if got := a.byNamespace[labelKey("task_namespace", auditNamespace, "rule", "max-resources", "mode", "enforce", "result", "violated")]; got != auditBig {
		t.Errorf("kpoguard audit: %v pods of %s against max-resources in enforce mode, want the %d big ones", got, auditNamespace, auditBig)
	}
	return a
}

// auditedByCLI counts what `kpoguard audit` finds in the cluster's task
// pods under the policy in force: the pods with a finding, by rule, mode
// and result, and by namespace too.
func auditedByCLI(t *testing.T, binary string) (findings, byNamespace map[string]float64) {
	t.Helper()
	r := runBinary(t, binary, "", "audit", "--kubeconfig", cluster.Kubeconfig, "--registry-ca-file", cluster.RegistryCAFile, "-o", "json")
	// 1: a pod the policy in force would refuse, the big ones.
	if r.code != 1 {
		t.Fatalf("kpoguard audit: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Pods []struct {
			Namespace string `json:"namespace"`
			Findings  []struct{ Rule, Mode, Result string }
		} `json:"pods"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	findings, byNamespace = map[string]float64{}, map[string]float64{}
	for _, p := range out.Pods {
		// A pod counts once per rule, mode and result.
		seen := map[string]bool{}
		for _, f := range p.Findings {
			key := labelKey("rule", f.Rule, "mode", f.Mode, "result", f.Result)
			if seen[key] {
				continue
			}
			seen[key] = true
			findings[key]++
			byNamespace[labelKey("task_namespace", p.Namespace)+","+key]++
		}
	}
	return findings, byNamespace
}

// auditPanelChecks are the checks of the audit row's queries, evaluated
// over the audit's window.
func auditPanelChecks(a auditRun) map[string]panelCheck {
	return map[string]panelCheck{
		"Running task pods with findings, by rule and mode / A":   countsOf(a.findings, "rule", "mode", "result"),
		"Running task pods reviewed / A":                          oneValue(float64(a.reviewed)),
		"Namespaces with the most running pods with findings / A": countsOf(a.byNamespace, "task_namespace", "rule", "mode", "result"),
		"Time since the last completed audit / A":                 sinceLastAudit,
		"Audits by result, per audit window / A":                  increaseOf("kpoguard_audit_runs_total", "result"),
		"Audits by result, per audit window / B":                  increaseOf("kpoguard_audit_report_errors_total"),
		"Audit duration p90, over the audit window / A":           auditDuration,
	}
}

// countsOf: a gauge's values by labels are what the test counted.
func countsOf(want map[string]float64, by ...string) panelCheck {
	return func(t *testing.T, key string, got model.Vector, _ window) {
		expectCounts(t, key, vectorBy(got, 1, by...), want)
	}
}

// oneValue: a single value, the one the test counted.
func oneValue(want float64) panelCheck {
	return func(t *testing.T, key string, got model.Vector, _ window) {
		if len(got) != 1 || float64(got[0].Value) != want {
			t.Errorf("%s: %v, want one value %v", key, got, want)
		}
	}
}

// lastAudit is when the auditor's last audit completed, as scraped at the
// window's end.
func lastAudit(win window) float64 {
	last := 0.0
	for _, s := range win.after["kpoguard_audit_last_success_timestamp_seconds"] {
		last = math.Max(last, s.value)
	}
	return last
}

// sinceLastAudit: the query's time less the last audit's.
func sinceLastAudit(t *testing.T, key string, got model.Vector, win window) {
	last := lastAudit(win)
	if len(got) != 1 || last == 0 || math.Abs(float64(got[0].Value)-(float64(win.end.UnixMilli())/1000-last)) > 1e-3 {
		t.Errorf("%s: %v, want the query's time %v less the last audit's %v", key, got, win.end, last)
	}
}

// auditDuration: a p90 within the histogram's buckets.
func auditDuration(t *testing.T, key string, got model.Vector, win window) {
	if len(got) != 1 || math.IsNaN(float64(got[0].Value)) || got[0].Value <= 0 || got[0].Value > 120 {
		t.Errorf("%s: %v, want one p90 within the buckets (0, 120]", key, got)
		return
	}
	t.Logf("%s: %.3fs", key, float64(got[0].Value))
}

// checkAuditCounted: the window holds the rollout's audits, all of them
// successful, so that the audit panels' rates count them.
func checkAuditCounted(t *testing.T, a auditRun) {
	t.Helper()
	expectCounts(t, "the auditor's audits by result", a.win.delta("kpoguard_audit_runs_total", nil, "result"),
		map[string]float64{labelKey("result", "success"): a.audits})
}

// checkAuditStale: KpoguardAuditStale's expression stays silent while
// audits complete; with its 20 minutes made 5 seconds, it is silent 2.5
// seconds after the last audit (a scrape has seen it by then) and fires,
// for the release's namespace, 6 seconds after it.
func checkAuditStale(t *testing.T, qa *promQuerier, expr string, a auditRun) {
	t.Helper()
	if got := qa.vector(expr, a.win.end); len(got) != 0 {
		t.Errorf("audits completing: KpoguardAuditStale's expression gave %v, want nothing", got)
	}
	const threshold = "> 1200"
	if !strings.Contains(expr, threshold) {
		t.Fatalf("KpoguardAuditStale's expression %q has no %q: update this test", expr, threshold)
	}
	short := strings.Replace(expr, threshold, "> 5", 1)
	last := time.UnixMilli(int64(lastAudit(a.win) * 1000))
	stale := qa.scrapeAfter(last.Add(6 * time.Second))
	if got := qa.vector(short, last.Add(2500*time.Millisecond)); len(got) != 0 {
		t.Errorf("2.5s after the last audit: %s gave %v, want nothing", short, got)
	}
	if got := qa.vector(short, stale); len(got) != 1 || got[0].Metric["namespace"] != sandbox.KpoguardNamespace {
		t.Errorf("%v after the last audit: %s gave %v, want one alert for namespace %s", stale.Sub(last), short, got, sandbox.KpoguardNamespace)
	}
}
