package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// runnerOver is a runner over a fixed set of pods, with its registry.
func runnerOver(t *testing.T, p *policy.Policy, pods []*corev1.Pod, namespaceLimit int) (*Runner, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return &Runner{
		Pods:      func() ([]*corev1.Pod, error) { return pods, nil },
		Policy:    func() *policy.Policy { return p },
		Resolvers: resolvers(),
		Metrics:   NewMetrics(reg, namespaceLimit),
		Log:       logr.Discard(),
		Now:       func() time.Time { return time.Unix(1_800_000_000, 0) },
	}, reg
}

// inNamespace is a copy of pod named name in ns.
func inNamespace(pod *corev1.Pod, ns, name string) *corev1.Pod {
	out := pod.DeepCopy()
	out.Namespace, out.Name = ns, name
	return out
}

func TestPassPublishesWhatItFinds(t *testing.T) {
	loose := examplePolicy(t)
	running := admitted(t, loose, kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	done := inNamespace(running, "team-a", "finished")
	done.Status.Phase = corev1.PodSucceeded
	notTask := inNamespace(running, "team-a", "not-a-task")
	delete(notTask.Labels, policy.TaskPodLabel)
	pods := []*corev1.Pod{
		inNamespace(running, "team-a", "a1"), inNamespace(running, "team-a", "a2"),
		inNamespace(running, "team-b", "b1"), done, notTask,
	}
	r, reg := runnerOver(t, examplePolicy(t, tightAccounts("audit")...), pods, 1)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP kpoguard_audit_pods_reviewed Running task pods the last completed audit reviewed.
# TYPE kpoguard_audit_pods_reviewed gauge
kpoguard_audit_pods_reviewed 3
# HELP kpoguard_audit_namespace_pods kpoguard_audit_pods by the task pods' namespace: the namespaces with the most findings, the rest summed under task_namespace="_other".
# TYPE kpoguard_audit_namespace_pods gauge
kpoguard_audit_namespace_pods{mode="audit",result="violated",rule="service-account",task_namespace="_other"} 1
kpoguard_audit_namespace_pods{mode="audit",result="violated",rule="service-account",task_namespace="team-a"} 2
# HELP kpoguard_audit_last_success_timestamp_seconds When the last audit completed.
# TYPE kpoguard_audit_last_success_timestamp_seconds gauge
kpoguard_audit_last_success_timestamp_seconds 1.8e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kpoguard_audit_pods_reviewed", "kpoguard_audit_namespace_pods", "kpoguard_audit_last_success_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "audit", "violated")); got != 3 {
		t.Errorf("service-account/audit/violated: %v pods, want 3", got)
	}
	if got := testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "enforce", "violated")); got != 0 {
		t.Errorf("service-account/enforce/violated: %v pods, want 0", got)
	}
	if got := testutil.ToFloat64(r.Metrics.runs.WithLabelValues(runSuccess)); got != 1 {
		t.Errorf("runs: %v successes, want 1", got)
	}

	// The policy loosened again: the findings go to zero, not stay.
	r.Policy = func() *policy.Policy { return loose }
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "audit", "violated")); got != 0 {
		t.Errorf("after loosening: %v pods, want 0", got)
	}
	if n := testutil.CollectAndCount(r.Metrics.namespaces); n != 0 {
		t.Errorf("after loosening: %d per-namespace series, want none", n)
	}
}

func TestFailedPassKeepsTheLastFigures(t *testing.T) {
	p := examplePolicy(t, tightAccounts("audit")...)
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	r, _ := runnerOver(t, p, []*corev1.Pod{running}, 0)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		break_ func(r *Runner)
	}{
		{"namespace labels unreadable", func(r *Runner) { r.Resolvers = review.Resolvers{Namespaces: brokenLabels{}} }},
		{"pods cannot be listed", func(r *Runner) { r.Pods = func() ([]*corev1.Pod, error) { return nil, errors.New("not synced") } }},
		{"no policy yet", func(r *Runner) { r.Policy = func() *policy.Policy { return nil } }},
	} {
		t.Run(c.name, func(t *testing.T) {
			broken := *r
			c.break_(&broken)
			failures := testutil.ToFloat64(r.Metrics.runs.WithLabelValues(runFailure))
			if err := broken.Pass(context.Background()); err == nil {
				t.Error("no error")
			}
			if got := testutil.ToFloat64(r.Metrics.runs.WithLabelValues(runFailure)); got != failures+1 {
				t.Errorf("failures %v, want %v", got, failures+1)
			}
			if got := testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "audit", "violated")); got != 1 {
				t.Errorf("the last audit's figure: %v, want it kept (1)", got)
			}
		})
	}
}

func TestLosingTheLeaseDropsTheFigures(t *testing.T) {
	p := examplePolicy(t, tightAccounts("audit")...)
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	r, _ := runnerOver(t, p, []*corev1.Pod{running}, 10)
	r.Metrics.leading(true)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(r.Metrics.leader) != 1 || testutil.ToFloat64(r.Metrics.reviewed) != 1 {
		t.Fatal("the leader's figures are not published")
	}
	r.Metrics.leading(false)
	if got := testutil.ToFloat64(r.Metrics.leader); got != 0 {
		t.Errorf("leader gauge %v after losing the Lease", got)
	}
	if testutil.ToFloat64(r.Metrics.reviewed) != 0 || testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "audit", "violated")) != 0 ||
		testutil.CollectAndCount(r.Metrics.namespaces) != 0 {
		t.Error("a replica without the Lease still publishes the audit's figures: a sum over replicas would count them twice")
	}
}

func TestPolicyChangeStartsAPass(t *testing.T) {
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	r, _ := runnerOver(t, examplePolicy(t), []*corev1.Pod{running}, 0)
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { r.Run(ctx, time.Hour, changed); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	runs := func() float64 { return testutil.ToFloat64(r.Metrics.runs.WithLabelValues(runSuccess)) }
	waitFor(t, "the first pass", func() bool { return runs() == 1 })
	changed <- struct{}{}
	waitFor(t, "a pass after the policy change", func() bool { return runs() == 2 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// A PolicyReport that cannot be written fails the pass's return, not its
// metrics: the figures are published, and the report written next time.
func TestReportFailureStillPublishes(t *testing.T) {
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	r, _ := runnerOver(t, examplePolicy(t, tightAccounts("audit")...), []*corev1.Pod{running}, 0)
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"})
	refuse := true
	client.PrependReactor("create", "policyreports", func(clienttesting.Action) (bool, runtime.Object, error) {
		if refuse {
			return true, nil, errForbidden
		}
		return false, nil, nil
	})
	r.Reports = &ReportWriter{Client: client, Name: DefaultReportName, Limit: 10}
	if err := r.Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("err %v, want the refused create", err)
	}
	if got := testutil.ToFloat64(r.Metrics.pods.WithLabelValues("service-account", "audit", "violated")); got != 1 {
		t.Errorf("service-account/audit/violated %v, want the pass's figure published (1)", got)
	}
	if got := testutil.ToFloat64(r.Metrics.runs.WithLabelValues(runSuccess)); got != 1 {
		t.Errorf("successful runs %v, want 1: the review completed", got)
	}
	if got := testutil.ToFloat64(r.Metrics.reportErrors); got != 1 {
		t.Errorf("kpoguard_audit_report_errors_total %v, want 1", got)
	}
	refuse = false
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.Metrics.reportErrors); got != 1 {
		t.Errorf("kpoguard_audit_report_errors_total %v after a pass whose report was written, want 1 still", got)
	}
}

// The report error counter exists from the start, at 0, so that rate()
// and increase() see its first error.
func TestReportErrorsStartAtZero(t *testing.T) {
	_, reg := runnerOver(t, examplePolicy(t), nil, 0)
	want := `
# HELP kpoguard_audit_report_errors_total Audits whose PolicyReports could not all be written (listed, created, updated or deleted); the next audit writes them again.
# TYPE kpoguard_audit_report_errors_total counter
kpoguard_audit_report_errors_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kpoguard_audit_report_errors_total"); err != nil {
		t.Error(err)
	}
}

// A scrape during publishing sees the last pass's figures or the new
// ones, never a zero in between: two passes finding the same publish over
// and over while another goroutine scrapes.
func TestScrapeNeverSeesZerosBetweenPasses(t *testing.T) {
	p := examplePolicy(t, tightAccounts("audit")...)
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	r, reg := runnerOver(t, p, []*corev1.Pod{running}, 10)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if err := r.Pass(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for scrapes := 0; ; scrapes++ {
		select {
		case <-done:
			if scrapes == 0 {
				t.Error("no scrape while publishing")
			}
			return
		default:
		}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if f.GetName() == "kpoguard_audit_pods_reviewed" || (f.GetName() == "kpoguard_audit_namespace_pods" || f.GetName() == "kpoguard_audit_pods") && labelIs(m.GetLabel(), "rule", "service-account") && labelIs(m.GetLabel(), "mode", "audit") {
					seen[f.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		for _, name := range []string{"kpoguard_audit_pods_reviewed", "kpoguard_audit_pods", "kpoguard_audit_namespace_pods"} {
			if seen[name] != 1 {
				t.Fatalf("scrape %d: %s %v, want 1 throughout", scrapes, name, seen[name])
			}
		}
	}
}

func labelIs(labels []*dto.LabelPair, name, value string) bool {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}
