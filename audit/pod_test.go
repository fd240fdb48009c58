package audit

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// tightAccounts allows tasks another service account than the default,
// in the given mode.
func tightAccounts(mode string) []string {
	return []string{"    serviceAccount:\n      mode: enforce\n      allowed: [default]",
		"    serviceAccount:\n      mode: " + mode + "\n      allowed: [tasks]"}
}

func TestReview(t *testing.T) {
	loose := examplePolicy(t)
	basic := kpoPod(t, "01-kpo-basic-no-resources.yaml")
	running := admitted(t, loose, basic)
	// Bound to a node by the scheduler after admission.
	scheduled := running.DeepCopy()
	scheduled.Spec.NodeName = "pool-default-0"
	notTask := running.DeepCopy()
	delete(notTask.Labels, policy.TaskPodLabel)
	exempt := running.DeepCopy()
	exempt.Namespace = "kpoguard"
	// A pod created before kpoguard was installed: no defaults.
	unguarded := basic.DeepCopy()
	unguarded.UID, unguarded.Status.Phase = "uid-0", corev1.PodRunning
	defaults := loose
	// requests-equal-limits turned off in the policy in force: the pod
	// admitted under it lacks what a stricter policy now sets.
	loosest := examplePolicy(t, "    requestsEqualLimits:\n      mode: enforce", "    requestsEqualLimits:\n      mode: off")
	admittedLoosest := admitted(t, loosest, basic)
	parent := examplePolicy(t, "      queueLabel: kpoguard.io/queue\n", "      queueLabel: kpoguard.io/queue\n      parent: {source: label, queueLabels: [queue], fallbacks: [default-queue]}\n")

	type want struct {
		reviewed      bool
		findings      []string // rule/mode/result of each finding, in order
		denied        bool
		parentUnknown bool
	}
	for _, c := range []struct {
		name string
		p    *policy.Policy
		pod  *corev1.Pod
		want want
	}{
		{"admitted under the policy in force: nothing", loose, running, want{reviewed: true}},
		{"scheduled since admission: still nothing", loose, scheduled, want{reviewed: true}},
		{"not a task pod: not reviewed", loose, notTask, want{}},
		{"in an exempt namespace: not reviewed", loose, exempt, want{}},
		{"created before kpoguard: every default it lacks", defaults, unguarded, want{reviewed: true, findings: []string{
			"default-resources/enforce/changed", "default-resources/enforce/changed", "default-resources/enforce/changed",
			"default-resources/enforce/changed", "default-resources/enforce/changed", "default-resources/enforce/changed",
			"requests-equal-limits/enforce/changed", "requests-equal-limits/enforce/changed",
			"env-secrets/enforce/changed", "node-pool/enforce/changed"}}},
		{"a mutating rule turned on since admission: what it would change now", loose, admittedLoosest, want{reviewed: true, findings: []string{
			"requests-equal-limits/enforce/changed", "requests-equal-limits/enforce/changed"}}},
		{"a validating rule tightened in audit mode", examplePolicy(t, tightAccounts("audit")...), running, want{reviewed: true, findings: []string{
			"service-account/audit/violated"}}},
		{"tightened in warn mode", examplePolicy(t, tightAccounts("warn")...), running, want{reviewed: true, findings: []string{
			"service-account/warn/violated"}}},
		{"tightened in enforce mode: it would be denied now", examplePolicy(t, tightAccounts("enforce")...), running, want{reviewed: true, denied: true, findings: []string{
			"service-account/enforce/violated"}}},
		{"rules following the worker: node-pool's findings left out", parent, unguarded, want{reviewed: true, parentUnknown: true, findings: []string{
			"default-resources/enforce/changed", "default-resources/enforce/changed", "default-resources/enforce/changed",
			"default-resources/enforce/changed", "default-resources/enforce/changed", "default-resources/enforce/changed",
			"requests-equal-limits/enforce/changed", "requests-equal-limits/enforce/changed",
			"env-secrets/enforce/changed"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := c.pod.DeepCopy()
			got, reviewed, err := Review(context.Background(), c.p, c.pod, resolvers())
			if err != nil {
				t.Fatal(err)
			}
			var findings []string
			for _, f := range got.Findings {
				findings = append(findings, string(f.Rule)+"/"+string(f.Mode)+"/"+string(f.Result))
				if f.Message == "" || f.Path == "" {
					t.Errorf("finding %+v: no message or path", f)
				}
			}
			if reviewed != c.want.reviewed || !slices.Equal(findings, c.want.findings) || got.Denied() != c.want.denied || got.ParentUnknown != c.want.parentUnknown {
				t.Errorf("reviewed %v, findings %q, denied %v, parentUnknown %v\nwant %+v", reviewed, findings, got.Denied(), got.ParentUnknown, c.want)
			}
			if reviewed && (got.Name != c.pod.Name || got.Namespace != c.pod.Namespace || got.UID != c.pod.UID || got.Task.DagID != "etl_orders_daily" || got.Task.TaskID != "extract_orders" || got.Task.TryNumber != "1") {
				t.Errorf("pod identity %+v", got)
			}
			if c.pod.String() != before.String() {
				t.Error("the review changed the cached pod")
			}
		})
	}
}

func TestReviewFailures(t *testing.T) {
	p := examplePolicy(t)
	pod := admitted(t, p, kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	if _, _, err := Review(context.Background(), p, pod, review.Resolvers{Namespaces: brokenLabels{}}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("unreadable namespace labels: %v, want the read's error", err)
	}
	if _, _, err := Review(context.Background(), nil, pod, resolvers()); err == nil {
		t.Error("no policy: no error")
	}
}

// A pod's env values are secrets often enough that no finding, and no
// PolicyReport built from findings, may carry one. env-secrets' finding
// is about the very container whose env holds the value, and
// service-account's violation names the pod; both must leave it out.
func TestFindingsCarryNoEnvValue(t *testing.T) {
	const secret = "hunter2-secret-value"
	p := examplePolicy(t, tightAccounts("audit")...)
	// Created before kpoguard: no envFrom, so env-secrets has a finding.
	pod := kpoPod(t, "01-kpo-basic-no-resources.yaml")
	pod.UID, pod.Status.Phase = "uid-0", corev1.PodRunning
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", Value: secret}}
	got, _, err := Review(context.Background(), p, pod, resolvers())
	if err != nil {
		t.Fatal(err)
	}
	rules := map[policy.RuleID]bool{}
	for _, f := range got.Findings {
		rules[f.Rule] = true
	}
	if !rules[policy.EnvSecrets] || !rules[policy.ServiceAccount] {
		t.Fatalf("findings %+v: want env-secrets' and service-account's to check", got.Findings)
	}
	findings, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := json.Marshal(BuildReports(DefaultReportName, []PodFindings{got}, []string{got.Namespace}, auditTime, 100))
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string][]byte{"the findings": findings, "the PolicyReport": reports} {
		if strings.Contains(string(text), secret) {
			t.Errorf("%s carry the env value", what)
		}
	}
}

func TestRunning(t *testing.T) {
	for phase, want := range map[corev1.PodPhase]bool{corev1.PodPending: true, corev1.PodRunning: true, corev1.PodSucceeded: false, corev1.PodFailed: false, corev1.PodUnknown: true} {
		if got := Running(&corev1.Pod{Status: corev1.PodStatus{Phase: phase}}); got != want {
			t.Errorf("%s: %v, want %v", phase, got, want)
		}
	}
	// A running pod being deleted (its grace period under way) is done
	// for the audit: its next create, if any, is another pod.
	deleting := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	deleting.DeletionTimestamp = &metav1.Time{Time: auditTime}
	if Running(deleting) {
		t.Error("a pod being deleted counts as running")
	}
}
