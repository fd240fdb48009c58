package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The rollout workflow of docs/operations.md ("Rolling out a rule"),
// walked on the scheduled cluster: task pods admitted and running under
// the example policy, then a lower CPU maximum rolled out in audit, warn
// and enforce mode. At each step the background audit names exactly the
// running pods the new maximum finds, and a new pod meets the mode: in
// audit mode it is admitted silently, in warn mode with kubectl's
// warning, in enforce mode it is refused. Running pods are never touched;
// the operator deletes them, and `kpoguard audit` then finds none.
func TestRolloutWorkflow(t *testing.T) {
	startScheduling(t)
	const ns = "rollout-e2e"
	if err := cluster.CreateNamespace(t.Context(), ns, nil); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePodsOf(t, ns, "dag_id=rollout_dag") })

	const small, big = 4, 3
	var pods []*corev1.Pod
	var offending []string
	for i := range small + big {
		p := rolloutTask(fmt.Sprintf("task-%02d", i), i >= small)
		if i >= small {
			offending = append(offending, p.Name)
		}
		pods = append(pods, p)
	}
	for i, err := range createPods(cluster.Client, ns, pods) {
		if err != nil {
			t.Fatalf("under the example policy, %s: %v", pods[i].Name, err)
		}
	}
	waitRunning(t, ns, "dag_id=rollout_dag", small+big)

	auditor := startAuditor(t, cluster.Kpoguard.Kubeconfig, "--audit-interval=1h", "--audit-policy-reports", "--audit-namespace-metrics-limit=100")
	runs := func() float64 { return metricOf(t, auditor, `kpoguard_audit_runs_total{result="success"}`) }
	waitUntil(t, "the first audit", func() bool { return runs() >= 1 })
	found := func(mode string) int {
		series := fmt.Sprintf(`kpoguard_audit_namespace_pods{mode=%q,result="violated",rule="max-resources",task_namespace=%q}`, mode, ns)
		return int(metricOf(t, auditor, series))
	}
	if n := found("enforce"); n != 0 {
		t.Fatalf("under the example policy the audit finds %d pods over the maximum, want 0", n)
	}

	// rollOut puts the tightened maximum in force in a mode, waits for
	// the audit it starts, and checks that the audit names exactly the
	// running pods over the new maximum, in its metrics and in the
	// namespace's PolicyReport.
	rollOut := func(mode, result string) {
		t.Helper()
		before := runs()
		setPolicy(t, tightenedCPU(t, mode))
		waitUntil(t, "an audit after the "+mode+" policy", func() bool { return runs() > before })
		if n := found(mode); n != len(offending) {
			t.Errorf("%s mode: the audit finds %d running pods over the maximum, want %d", mode, n, len(offending))
		}
		var rep policyReport
		waitUntil(t, "the PolicyReport of "+mode+" mode", func() bool {
			var ok bool
			rep, ok = readPolicyReport(t, ns)
			return ok && len(rep.Results) > 0 && rep.Results[0].Properties["mode"] == mode
		})
		var names []string
		for _, r := range rep.Results {
			if r.Rule != "max-resources" || r.Result != result || r.Properties["dag_id"] != "rollout_dag" || len(r.Resources) != 1 {
				t.Errorf("%s mode: report result %+v, want a max-resources %s of one rollout_dag pod", mode, r, result)
				continue
			}
			if !slices.Contains(names, r.Resources[0].Name) {
				names = append(names, r.Resources[0].Name)
			}
		}
		slices.Sort(names)
		if want := slices.Sorted(slices.Values(offending)); !slices.Equal(names, want) {
			t.Errorf("%s mode: the PolicyReport names %v, want exactly %v", mode, names, want)
		}
	}
	// create makes one more big task pod with the real kubectl, as a DAG
	// author's pod would meet the policy in force.
	create := func(name string) kubectlResult {
		t.Helper()
		body, err := json.Marshal(rolloutTask(name, true))
		if err != nil {
			t.Fatal(err)
		}
		return kubectl(t, string(body), "create", "-n", ns, "-f", "-")
	}
	const warning = "Warning: kpoguard [max-resources]"

	// 1. Audit: the running pods over the new maximum are named; a new
	// one is admitted without a word to its author.
	rollOut("audit", "warn")
	r := create("late-audit")
	if r.code != 0 || strings.Contains(r.stderr, "Warning:") {
		t.Errorf("audit mode: kubectl create exit %d, want 0 without warnings:\n%s", r.code, r.stderr)
	}
	offending = append(offending, "late-audit")
	waitRunning(t, ns, "dag_id=rollout_dag", small+len(offending))

	// 2. Warn: the author sees the finding; the pod is admitted.
	rollOut("warn", "warn")
	r = create("late-warn")
	if r.code != 0 || !strings.Contains(r.stderr, warning) {
		t.Errorf("warn mode: kubectl create exit %d, want 0 with %q:\n%s", r.code, warning, r.stderr)
	}
	offending = append(offending, "late-warn")
	waitRunning(t, ns, "dag_id=rollout_dag", small+len(offending))

	// 3. Enforce: a new pod over the maximum is refused; the running
	// ones stay, reported as failing.
	rollOut("enforce", "fail")
	r = create("late-enforce")
	if r.code == 0 || !strings.Contains(r.stderr, "[max-resources]") || !strings.Contains(r.stderr, "denied the request") {
		t.Errorf("enforce mode: kubectl create exit %d, want a refusal by max-resources:\n%s", r.code, r.stderr)
	}
	running := waitRunning(t, ns, "dag_id=rollout_dag", small+len(offending))
	if len(running) != small+len(offending) {
		t.Errorf("enforce mode: %d pods running, want every admitted one (%d)", len(running), small+len(offending))
	}

	// 4. What to do with the running pods that now fail: find them with
	// kpoguard audit (exit 1 as kpoguard check: an enforce-mode
	// violation), delete them, and the audit finds none.
	audit := func() kubectlResult {
		return runBinary(t, auditor.Binary, "", "audit", "--kubeconfig", cluster.Kubeconfig, "-n", ns, "--registry-ca-file", cluster.RegistryCAFile)
	}
	r = audit()
	var listed []string
	for line := range strings.Lines(r.stdout) {
		f := strings.Fields(line)
		if len(f) > 4 && f[0] == ns && f[2] == "rollout_dag" && f[4] == "max-resources" && !slices.Contains(listed, f[1]) {
			listed = append(listed, f[1])
		}
	}
	slices.Sort(listed)
	if want := slices.Sorted(slices.Values(offending)); !slices.Equal(listed, want) {
		t.Errorf("kpoguard audit lists %v, want exactly %v:\n%s", listed, want, r.stdout)
	}
	if r.code != 1 {
		t.Errorf("kpoguard audit: exit %d with enforce-mode violations, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, name := range offending {
		deletePod(t, ns, name)
	}
	if r = audit(); r.code != 0 || strings.Contains(r.stdout, "max-resources") {
		t.Errorf("kpoguard audit after deleting the offending pods: exit %d, want 0 and no findings\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// rolloutTask is a task pod of the rollout test's DAG: small, or big
// enough (2 CPUs) to exceed the tightened maximum of tightenedCPU.
func rolloutTask(name string, big bool) *corev1.Pod {
	p := sandbox.TaskPod(name)
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	p.Labels["dag_id"], p.Labels["task_id"] = "rollout_dag", name
	smallTask(p)
	if big {
		two := resource.MustParse("2")
		p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = two
		p.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = two
	}
	return p
}
