package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpoguard/kpoguard/internal/monitoring"
	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// dashboardPNG, when set, is where TestDashboardAgainstPrometheus renders
// the key panels (make dashboard-png).
var dashboardPNG = flag.String("dashboard-png", "", "render the dashboard's key panels from the test's Prometheus into this directory")

// dashboardPolicy turns on only the rules the workload exercises, each in
// the mode it needs: an enforced default and maximum, an enforced image
// architecture that admits pods whose lookup fails, with a warning, and
// persistent volumes in audit mode. It lists a registry at downRegistry,
// where nothing listens.
func dashboardPolicy(downRegistry string) string {
	return `apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
metadata: {name: dashboard}
spec:
  scope:
    taskPodSelector: {matchLabels: {kubernetes_pod_operator: "True"}}
  rules:
    defaultResources: {mode: enforce, requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "1", memory: 2Gi}}
    maxResources: {mode: enforce, container: {cpu: "4", memory: 8Gi}, pod: {cpu: "4", memory: 8Gi}}
    noPersistentVolumes: {mode: audit}
    imageArchitecture:
      mode: enforce
      architectures: [amd64]
      os: linux
      onLookupFailure: allow
      lookupTimeout: 2s
      registries: [{name: down, host: "` + downRegistry + `"}]
    ephemeralStorage: {mode: "off"}
    envSecrets: {mode: "off"}
    serviceAccount: {mode: "off"}
    imagePullSecrets: {mode: "off"}
    nodePool: {mode: "off"}
`
}

// The scrape and rule evaluation interval of the test's Prometheus.
const promInterval = time.Second

// The dashboard and the alert rules, evaluated by a real Prometheus that
// scrapes the suite's kpoguard on loopback while a scripted workload goes
// through the API server: every panel's every query returns data, and the
// counting ones count exactly what the workload did (admissions by
// decision, findings by rule and mode, lookups by result); every alert
// expression returns data exactly when the workload should make it fire;
// the rule file loads healthy; the audit row counts what an auditing
// replica found while max-resources was rolled out from audit to enforce
// (dashboard_audit_test.go), and KpoguardAuditStale's expression fires
// only once audits stop; and with kpoguard stopped, KpoguardDown's
// expression fires. A panel or alert without an expectation here fails.
func TestDashboardAgainstPrometheus(t *testing.T) {
	downPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	downRegistry := "127.0.0.1:" + strconv.Itoa(downPort)
	setPolicy(t, dashboardPolicy(downRegistry))
	chart := filepath.Join(repoRoot, "charts", "kpoguard")
	dashboard, err := monitoring.LoadDashboard(filepath.Join(chart, "dashboards", "kpoguard.json"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.LoadRules(filepath.Join(chart, "alerts", "kpoguard-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// A second replica that is down: nothing listens on its port.
	stopped, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kpoguardTarget, stoppedTarget := cluster.Kpoguard.MetricsAddr, "127.0.0.1:"+strconv.Itoa(stopped)
	// An auditing replica, started after the workload's window: down
	// until then, like the stopped one.
	auditor := newAuditor(t, cluster.Kpoguard.Kubeconfig, "--audit-interval=1h", "--audit-namespace-metrics-limit=10")
	prom, err := sandbox.StartPrometheus(t.Context(), sandbox.PrometheusOptions{
		Dir: t.TempDir(), Job: "kpoguard", Targets: []string{kpoguardTarget, stoppedTarget, auditor.MetricsAddr},
		Labels:    map[string]string{"namespace": sandbox.KpoguardNamespace},
		RuleFiles: []string{filepath.Join(chart, "alerts", "kpoguard-rules.yaml")}, Interval: promInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	q := &promQuerier{t: t, api: prom.API, instance: kpoguardTarget}

	// Pictures show each kind of pod apart; assertions need no pause.
	var pace time.Duration
	if *dashboardPNG != "" {
		pace = 5 * time.Second
	}
	// Once before the window, so that every series the workload touches
	// exists in it: rate() has no sample of a counter before its first,
	// so it misses what a series born inside the window counted first.
	runWorkload(t, downRegistry, 0)
	time.Sleep(pace) // pictures start once it has left their rate interval
	// The window opens on a scrape that finished before the workload
	// began, and closes on one that began after it ended: a rate over
	// exactly that range, from sample to sample, is the workload's count
	// divided by the range, with no extrapolation.
	start := q.scrapeAfter(time.Now())
	w := runWorkload(t, downRegistry, pace)
	// A window of several seconds, so that a rate mistaken for an
	// increase (or the other way round) cannot pass.
	end := q.scrapeAfter(time.Now().Add(2 * promInterval))
	win := window{start: start, end: end, before: q.scraped(start), after: q.scraped(end)}
	t.Logf("workload window: %v", end.Sub(start))

	checkWorkloadCounted(t, w, win)
	// The audit's part comes after the workload's window, which must not
	// count its pods' admissions: the auditor audits the running task
	// pods while max-resources is tightened, in a window of its own on
	// the auditor's scrapes. Queries at a window's end read the past.
	qa := &promQuerier{t: t, api: prom.API, instance: auditor.MetricsAddr}
	a := runAudit(t, qa, auditor, downRegistry, pace)
	checkAuditCounted(t, a)

	checks, auditChecks := panelChecks(w), auditPanelChecks(a)
	seen := map[string]bool{}
	for _, query := range dashboard.Queries() {
		key := query.Key()
		seen[key] = true
		check, over := checks[key], win
		if c, ok := auditChecks[key]; ok {
			check, over = c, a.win
		}
		if check == nil {
			t.Errorf("%s: no expectation in panelChecks or auditPanelChecks: add one", key)
			continue
		}
		// The audit panels' window is the audit's here.
		expr, err := monitoring.Expand(query.Expr, map[string]string{"__rate_interval": rangeOf(over), "audit_window": rangeOf(over), "namespace": ".*"})
		if err != nil {
			t.Error(err)
			continue
		}
		got := q.vector(expr, over.end)
		if len(got) == 0 {
			t.Errorf("%s: %s returned no data", key, expr)
			continue
		}
		check(t, key, got, over)
	}
	for _, c := range []map[string]panelCheck{checks, auditChecks} {
		for key := range c {
			if !seen[key] {
				t.Errorf("the test expects %s, which the dashboard lacks", key)
			}
		}
	}

	checkRulesLoaded(t, prom.API, rules)
	exprOf := func(alert string) string {
		i := slices.IndexFunc(rules, func(r monitoring.Rule) bool { return r.Alert == alert })
		if i < 0 {
			t.Fatalf("no alert %s in the rule file", alert)
		}
		return rules[i].Expr
	}
	checkAuditStale(t, qa, exprOf("KpoguardAuditStale"), a)
	fires := alertsUnderWorkload(w, win)
	for _, r := range rules {
		want, ok := fires[r.Alert]
		if !ok {
			t.Errorf("%s: no expectation in alertsUnderWorkload: add one", r.Alert)
			continue
		}
		if got := len(q.vector(r.Expr, end)) > 0; got != want {
			t.Errorf("%s under the workload: fires %v, want %v (%s)", r.Alert, got, want, r.Expr)
		}
	}

	if *dashboardPNG != "" {
		renderDashboard(t, prom.API, dashboard, pictures, w.phases, start, end, *dashboardPNG)
		renderDashboard(t, prom.API, dashboard, auditPictures, a.phases, a.win.start, a.win.end, *dashboardPNG)
	}

	// Every replica down: KpoguardDown's expression fires, and the
	// replica alert leaves it the saying. The auditor goes first, and
	// Prometheus sees it down.
	auditor.Stop()
	qa.scrapeAfter(time.Now())
	restartKpoguardAfter(t)
	cluster.Kpoguard.Stop()
	down := q.scrapeAfter(time.Now())
	if v := q.vector(`up{instance="`+kpoguardTarget+`"}`, down); len(v) != 1 || v[0].Value != 0 {
		t.Fatalf("kpoguard stopped: up %v, want 0", v)
	}
	if got := q.vector(exprOf("KpoguardDown"), down); len(got) != 1 || got[0].Metric["namespace"] != sandbox.KpoguardNamespace {
		t.Errorf("every replica down: KpoguardDown's expression gave %v, want one alert for namespace %s", got, sandbox.KpoguardNamespace)
	}
	if got := q.vector(exprOf("KpoguardReplicaDown"), down); len(got) != 0 {
		t.Errorf("every replica down: KpoguardReplicaDown's expression gave %v, want nothing", got)
	}
}

// rangeOf is a range query's range over exactly a window: one
// millisecond more, so that the opening scrape is in the range whether it
// is closed at its start (Prometheus 2) or open (Prometheus 3). Its rate
// is still exact: extrapolated over that millisecond, then divided by
// the range, it is the increase between the two scrapes over the time
// between them. An increase is that much over, which counting in whole
// numbers leaves room for.
func rangeOf(win window) string {
	return strconv.FormatInt(win.end.Sub(win.start).Milliseconds()+1, 10) + "ms"
}

// restartKpoguardAfter starts the suite's kpoguard again when the test
// ends, however it ends.
func restartKpoguardAfter(t *testing.T) {
	t.Cleanup(func() {
		if err := cluster.Kpoguard.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitForWebhooks(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// workload is what the scripted workload did, as the API server told it.
type workload struct {
	// admissions by webhook and decision.
	admissions map[string]float64
	// findings by rule, mode and result.
	findings map[string]float64
	// lookupFailures are the failed image lookups by reason; lookups
	// counts every lookup.
	lookupFailures map[string]float64
	lookups        float64
	// phases are when each kind of pod began.
	phases []phase
}

type phase struct {
	name string
	at   time.Time
}

// labelKey is a series' identity in these tables: label=value pairs in
// the order given.
func labelKey(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i] + "=" + pairs[i+1])
	}
	return b.String()
}

// ruleTag finds the rule IDs a refusal message names, one per violation.
var ruleTag = regexp.MustCompile(`\[([a-z0-9-]+)\]`)

// runWorkload creates task pods (dry runs) through the API server, one
// kind after another, and posts one malformed AdmissionReview: pods
// mutated and admitted, admitted unchanged, refused by two rules, admitted
// with an audit-mode finding, and admitted with a warning because their
// image's lookup failed (missing from the registry, or the registry down);
// pace apart.
func runWorkload(t *testing.T, downRegistry string, pace time.Duration) workload {
	t.Helper()
	w := workload{admissions: map[string]float64{}, findings: map[string]float64{}, lookupFailures: map[string]float64{}}
	admitted := func(mutate, validate string) {
		w.admissions[labelKey("webhook", "mutate-pods", "decision", mutate)]++
		w.admissions[labelKey("webhook", "validate-pods", "decision", validate)]++
	}
	sized := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
		}
	}
	next := func(name string) {
		if len(w.phases) > 0 {
			time.Sleep(pace)
		}
		w.phases = append(w.phases, phase{name, time.Now()})
	}
	var warnings warningCounter
	pods := warningClient(t, &warnings).CoreV1().Pods(taskNamespace)
	create := func(name string, mods ...func(*corev1.Pod)) (*corev1.Pod, error) {
		pod := sandbox.TaskPod(name)
		for _, m := range mods {
			m(pod)
		}
		w.lookups++ // one image, not trusted: looked up by the validating webhook
		return pods.Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	next("defaults")
	// The default size, applied: each change counted.
	var changesPerPod float64
	for i := range 3 {
		pod, err := create(fmt.Sprintf("dashboard-defaults-%d", i))
		if err != nil {
			t.Fatalf("a task pod without resources: %v", err)
		}
		changes := strings.Split(pod.Annotations[review.AnnotationMutations], "; ")
		if len(changes) == 0 || !strings.HasPrefix(changes[0], string(policy.DefaultResources)) {
			t.Fatalf("a task pod without resources got mutations %q, want default-resources'", pod.Annotations[review.AnnotationMutations])
		}
		changesPerPod = float64(len(changes))
		w.findings[labelKey("rule", "default-resources", "mode", "enforce", "result", "changed")] += changesPerPod
		admitted("mutated", "allowed")
	}
	next("sized")
	// Already within the policy: nothing to change.
	for i := range 2 {
		pod, err := create(fmt.Sprintf("dashboard-sized-%d", i), sized)
		if err != nil || pod.Annotations[review.AnnotationMutations] != "" {
			t.Fatalf("a sized task pod: %v, mutations %q; want it admitted unchanged", err, pod.Annotations[review.AnnotationMutations])
		}
		admitted("allowed", "allowed")
	}
	next("refused")
	// Refused: over the maximum, and an arm64-only image (which, without
	// resources, gets the default size first).
	tooBig := func(p *corev1.Pod) {
		sized(p)
		p.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = resource.MustParse("8")
	}
	arm64 := func(p *corev1.Pod) { p.Spec.Containers[0].Image = cluster.Registry.Ref(registrytest.ARM64Only) }
	for _, c := range []struct {
		name, mutate, rule string
		mod                func(*corev1.Pod)
	}{{"dashboard-too-big", "allowed", "max-resources", tooBig}, {"dashboard-arm64", "mutated", "image-architecture", arm64}} {
		_, err := create(c.name, c.mod)
		if err == nil || !strings.Contains(err.Error(), "["+c.rule+"]") {
			t.Fatalf("%s: %v, want it refused by %s", c.name, err, c.rule)
		}
		for _, m := range ruleTag.FindAllStringSubmatch(err.Error(), -1) {
			if slices.Contains(policy.RuleIDs(), policy.RuleID(m[1])) {
				w.findings[labelKey("rule", m[1], "mode", "enforce", "result", "violated")]++
			}
		}
		if c.mutate == "mutated" {
			w.findings[labelKey("rule", "default-resources", "mode", "enforce", "result", "changed")] += changesPerPod
		}
		admitted(c.mutate, "denied")
	}
	next("audit")
	// Audit mode: a PersistentVolumeClaim is recorded, not refused.
	for i := range 2 {
		_, err := create(fmt.Sprintf("dashboard-pvc-%d", i), sized, func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		})
		if err != nil {
			t.Fatalf("a task pod with a PVC under an audit-mode rule: %v", err)
		}
		w.findings[labelKey("rule", "no-persistent-volumes", "mode", "audit", "result", "violated")]++
		admitted("allowed", "allowed")
	}
	next("lookup fails")
	// The image's lookup fails: admitted with a warning.
	for _, c := range []struct{ image, reason string }{
		{cluster.Registry.Ref(registrytest.Missing), "not_found"},
		{downRegistry + "/app:1.0", "unreachable"},
	} {
		before := warnings.count()
		_, err := create("dashboard-"+strings.ReplaceAll(c.reason, "_", "-"), sized, func(p *corev1.Pod) { p.Spec.Containers[0].Image = c.image })
		if err != nil || warnings.count() != before+1 {
			t.Fatalf("a task pod whose image lookup fails (%s): %v, %d warnings; want it admitted with one", c.reason, err, warnings.count()-before)
		}
		w.findings[labelKey("rule", "image-architecture", "mode", "warn", "result", "violated")]++
		w.lookupFailures[c.reason]++
		admitted("allowed", "warned")
	}
	next("malformed")
	// A pod that does not decode, posted straight to kpoguard: an error.
	res := postReview(t, "/validate-pods", &admissionv1.AdmissionRequest{
		UID: "dashboard-malformed", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
		Namespace: taskNamespace, Object: runtime.RawExtension{Raw: []byte(`{"spec": "not a spec"}`)},
	})
	if res.Allowed || res.Result.Code != http.StatusBadRequest {
		t.Fatalf("a pod that does not decode: %+v, want a 400 refusal", res.Result)
	}
	w.admissions[labelKey("webhook", "validate-pods", "decision", "error")]++
	return w
}

// warningCounter counts the warnings the API server returns.
type warningCounter struct {
	mu sync.Mutex
	n  int
}

func (c *warningCounter) HandleWarningHeader(code int, _ string, text string) {
	if code == 299 && strings.HasPrefix(text, "kpoguard ") {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
}

func (c *warningCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// warningClient acts as the sandbox user and counts kpoguard's warnings.
func warningClient(t *testing.T, warnings *warningCounter) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WarningHandler = warnings
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// series are kpoguard's series as one scrape found them, by metric name.
type series map[string][]sample

type sample struct {
	labels map[string]string
	value  float64
}

// sumBy sums a metric's series that have the labels of where, grouped by
// the labels named.
func (s series) sumBy(metric string, where map[string]string, by ...string) map[string]float64 {
	out := map[string]float64{}
	for _, smp := range s[metric] {
		if !matches(smp.labels, where) {
			continue
		}
		out[groupKey(smp.labels, by)] += smp.value
	}
	return out
}

func matches(labels, where map[string]string) bool {
	for k, v := range where {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func groupKey(labels map[string]string, by []string) string {
	pairs := make([]string, 0, 2*len(by))
	for _, l := range by {
		pairs = append(pairs, l, labels[l])
	}
	return labelKey(pairs...)
}

// window is the span the workload ran in: the scrapes that open and close
// it, and what they found.
type window struct {
	start, end    time.Time
	before, after series
}

func (w window) seconds() float64 { return w.end.Sub(w.start).Seconds() }

// delta is what a metric grew by over the window, grouped.
func (w window) delta(metric string, where map[string]string, by ...string) map[string]float64 {
	out := w.after.sumBy(metric, where, by...)
	for k, v := range w.before.sumBy(metric, where, by...) {
		out[k] -= v
	}
	return out
}

// checkWorkloadCounted: kpoguard's counters, as scraped, grew by exactly
// what the workload did, so that the panels, held to those counters, show
// it.
func checkWorkloadCounted(t *testing.T, w workload, win window) {
	t.Helper()
	expectCounts(t, "kpoguard's admissions by webhook and decision", win.delta("kpoguard_admission_requests_total", nil, "webhook", "decision"), w.admissions)
	expectCounts(t, "kpoguard's findings by rule, mode and result", win.delta("kpoguard_rule_results_total", nil, "rule", "mode", "result"), w.findings)
	lookups := win.delta("kpoguard_registry_lookups_total", nil, "result")
	total := 0.0
	for result, n := range lookups {
		total += n
		if result != "result=hit" && result != "result=miss" && n != w.lookupFailures[strings.TrimPrefix(result, "result=")] {
			t.Errorf("kpoguard's lookups %s: %v, want %v", result, n, w.lookupFailures[strings.TrimPrefix(result, "result=")])
		}
	}
	if total != w.lookups {
		t.Errorf("kpoguard's image lookups: %v, want %v (one per pod)", total, w.lookups)
	}
}

// expectCounts compares counts, whole numbers; a key missing on either
// side counts 0.
func expectCounts(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	for _, k := range keysOf(got, want) {
		if math.Abs(got[k]-want[k]) > 0.01 {
			t.Errorf("%s: %s = %v, want %v", what, k, got[k], want[k])
		}
	}
}

func keysOf(maps ...map[string]float64) []string {
	var keys []string
	for _, m := range maps {
		for k := range m {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// panelCheck holds one dashboard query's result to what the workload did.
type panelCheck func(t *testing.T, key string, got model.Vector, win window)

// panelChecks has one check per dashboard query, by panel title and
// refId, but the audit row's (auditPanelChecks). A new panel needs its
// entry here or there.
func panelChecks(w workload) map[string]panelCheck {
	return map[string]panelCheck{
		"Admissions by decision / A":                               rateOf("kpoguard_admission_requests_total", nil, "webhook", "decision"),
		"Findings by rule (audit shows what enforce would do) / A": rateOf("kpoguard_rule_results_total", nil, "rule", "mode", "result"),
		"kpoguard latency p99 / A":                                 latencies("mutate-pods", "validate-pods"),
		"Policy reloads / A":                                       increaseOf("kpoguard_policy_reloads_total", "result"),
		"Last policy reload successful / A":                        gaugeOf("kpoguard_policy_last_reload_successful", slices.Min),
		"Serving certificate expires in / A":                       expiresIn,
		"Image lookups by result / A":                              rateOf("kpoguard_registry_lookups_total", nil, "result"),
		"Registry requests and Docker Hub pulls left / A":          rateOf("kpoguard_registry_requests_total", nil, "registry", "code"),
		"Registry requests and Docker Hub pulls left / B":          gaugeBy("kpoguard_registry_ratelimit_remaining", "registry"),
		"Launching workers found, by result / A":                   rateOf("kpoguard_parent_resolutions_total", map[string]string{"webhook": "validate-pods"}, "result"),
	}
}

// vectorBy is a query's result keyed like sumBy's, its values scaled.
func vectorBy(got model.Vector, scale float64, by ...string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range got {
		labels := map[string]string{}
		for k, v := range s.Metric {
			labels[string(k)] = string(v)
		}
		out[groupKey(labels, by)] = float64(s.Value) * scale
	}
	return out
}

// rateOf: a per-second rate over the window, times the window, is what
// the counter grew by: what the workload did.
func rateOf(metric string, where map[string]string, by ...string) panelCheck {
	return func(t *testing.T, key string, got model.Vector, win window) {
		expectCounts(t, key, vectorBy(got, win.seconds(), by...), win.delta(metric, where, by...))
	}
}

// increaseOf: an increase over the window is what the counter grew by.
func increaseOf(metric string, by ...string) panelCheck {
	return func(t *testing.T, key string, got model.Vector, win window) {
		expectCounts(t, key, vectorBy(got, 1, by...), win.delta(metric, nil, by...))
	}
}

// gaugeOf: one value, the gauge's across kpoguard's series as agg makes it.
func gaugeOf(metric string, agg func([]float64) float64) panelCheck {
	return func(t *testing.T, key string, got model.Vector, win window) {
		var values []float64
		for _, s := range win.after[metric] {
			values = append(values, s.value)
		}
		if len(got) != 1 || len(values) == 0 || float64(got[0].Value) != agg(values) {
			t.Errorf("%s: %v, want one value %v", key, got, values)
		}
	}
}

// gaugeBy: a gauge's value per label, as kpoguard serves it.
func gaugeBy(metric, by string) panelCheck {
	return func(t *testing.T, key string, got model.Vector, win window) {
		expectCounts(t, key, vectorBy(got, 1, by), win.after.sumBy(metric, nil, by))
	}
}

// expiresIn: the certificate's expiry less the query's time.
func expiresIn(t *testing.T, key string, got model.Vector, win window) {
	expiry := win.after["kpoguard_serving_certificate_expiry_timestamp_seconds"]
	if len(got) != 1 || len(expiry) != 1 || math.Abs(float64(got[0].Value)-(expiry[0].value-float64(win.end.UnixMilli())/1000)) > 1e-3 {
		t.Errorf("%s: %v, want the expiry %v less the query's time %v", key, got, expiry, win.end)
	}
}

// latencies: a p99 for each webhook the workload called, within the
// histogram's buckets, and none for the others.
func latencies(hooks ...string) panelCheck {
	return func(t *testing.T, key string, got model.Vector, win window) {
		var with []string
		for _, s := range got {
			v := float64(s.Value)
			if math.IsNaN(v) {
				continue
			}
			with = append(with, string(s.Metric["webhook"]))
			if v <= 0 || v > 2.5 {
				t.Errorf("%s: %s p99 %vs, want within the buckets (0, 2.5]", key, s.Metric["webhook"], v)
			}
		}
		slices.Sort(with)
		if !slices.Equal(with, hooks) {
			t.Errorf("%s: a p99 for %v, want for %v", key, with, hooks)
		}
	}
}

// alertsUnderWorkload says which alert expressions return data at the
// window's end: the stopped replica's, the malformed request's and the
// failed lookups' (two of eleven, over a tenth); the certificate's only if
// it expires within a week. The suite's kpoguard serves envtest's
// certificate, not self-managed ones, so the self-managed certificate
// alerts have no series to fire on (promtool's cases make them fire;
// TestSelfManagedCertificateUpkeep reads their metrics from replicas that
// manage). A new alert needs its entry here.
func alertsUnderWorkload(w workload, win window) map[string]bool {
	expiry := win.after["kpoguard_serving_certificate_expiry_timestamp_seconds"]
	failed := 0.0
	for _, n := range w.lookupFailures {
		failed += n
	}
	return map[string]bool{
		"KpoguardDown":                      false,
		"KpoguardReplicaDown":               true,
		"KpoguardAdmissionErrors":           w.admissions[labelKey("webhook", "validate-pods", "decision", "error")] > 0,
		"KpoguardPolicyRefused":             false,
		"KpoguardTaskPodsWithoutWorker":     false,
		"KpoguardCertificateExpiring":       len(expiry) == 1 && expiry[0].value-float64(win.end.Unix()) < 7*24*3600,
		"KpoguardImageLookupsFailing":       failed/w.lookups > 0.1,
		"KpoguardCertificateNotTrusted":     false,
		"KpoguardCertificateSyncFailing":    false,
		"KpoguardCertificateRenewalOverdue": false,
		// No audit ran yet: no audit series (checkAuditStale has the
		// audit's window).
		"KpoguardAuditStale":          false,
		"KpoguardAuditReportsFailing": false,
	}
}

// checkRulesLoaded: Prometheus loaded every alert of the rule file, and
// evaluates each without error.
func checkRulesLoaded(t *testing.T, api promv1.API, rules []monitoring.Rule) {
	t.Helper()
	result, err := api.Rules(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	health := map[string]promv1.RuleHealth{}
	for _, g := range result.Groups {
		for _, r := range g.Rules {
			if a, ok := r.(promv1.AlertingRule); ok {
				health[a.Name] = a.Health
				if a.LastError != "" {
					t.Errorf("alert %s: %s", a.Name, a.LastError)
				}
			}
		}
	}
	for _, r := range rules {
		if h := health[r.Alert]; h != promv1.RuleHealthGood {
			t.Errorf("alert %s: health %q in Prometheus, want ok", r.Alert, h)
		}
	}
}

// promQuerier queries the test's Prometheus, failing the test on errors.
type promQuerier struct {
	t        *testing.T
	api      promv1.API
	instance string
}

func (q *promQuerier) vector(expr string, at time.Time) model.Vector {
	q.t.Helper()
	value, warnings, _, err := q.api.Query(q.t.Context(), expr, at)
	if err != nil || len(warnings) > 0 {
		q.t.Fatalf("query %s: %v %v", expr, err, warnings)
	}
	v, ok := value.(model.Vector)
	if !ok {
		q.t.Fatalf("query %s: a %s, want a vector", expr, value.Type())
	}
	return v
}

// scraped is every kpoguard series of the scrape at t, as kpoguard served
// it: the raw samples the panels' queries compute from.
func (q *promQuerier) scraped(at time.Time) series {
	q.t.Helper()
	out := series{}
	for _, s := range q.vector(`{__name__=~"kpoguard_.+",instance="`+q.instance+`"}`, at) {
		labels := map[string]string{}
		for k, v := range s.Metric {
			labels[string(k)] = string(v)
		}
		name := labels[model.MetricNameLabel]
		delete(labels, model.MetricNameLabel)
		out[name] = append(out[name], sample{labels, float64(s.Value)})
	}
	if len(out) == 0 {
		q.t.Fatalf("no kpoguard series scraped at %v", at)
	}
	return out
}

// scrapeAfter waits for a scrape of kpoguard that began after t, and
// returns its time. Once Prometheus answers with it, it has finished.
func (q *promQuerier) scrapeAfter(t time.Time) time.Time {
	q.t.Helper()
	for deadline := time.Now().Add(15 * promInterval); time.Now().Before(deadline); time.Sleep(promInterval / 5) {
		value, _, _, err := q.api.Query(q.t.Context(), `up{instance="`+q.instance+`"}[1m]`, time.Now())
		if err != nil {
			q.t.Fatal(err)
		}
		m, ok := value.(model.Matrix)
		if !ok || len(m) != 1 || len(m[0].Values) == 0 {
			continue
		}
		if last := m[0].Values[len(m[0].Values)-1].Timestamp.Time(); last.After(t) {
			return last
		}
	}
	q.t.Fatalf("Prometheus scraped %s no more after %v", q.instance, t)
	return time.Time{}
}
