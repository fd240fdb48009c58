package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The chart installed with helm into the cluster, as a platform team
// installs it, with the real scheduler and controllers at work on it.
// Its pods are simulated: no kpoguard runs in them, so the chart's webhook
// configurations point at a Service nothing serves, and the suite's
// webhooks are still served by the kpoguard process on this machine. The
// test creates no task pod while the chart is installed: its validating
// webhook (failurePolicy Fail) would refuse every one.
func TestChartInstalledWithHelm(t *testing.T) {
	startScheduling(t)
	const release, ns = "chart-install", "chart-install"
	selector := "app.kubernetes.io/instance=" + release
	pods := cluster.Client.CoreV1().Pods(ns)
	// Uninstalled however the test ends, a failed or timed-out install
	// included: its webhook configurations would refuse the other tests'
	// pods.
	t.Cleanup(func() {
		helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout=60s", "--ignore-not-found")
		deletePodsOf(t, ns, selector)
	})
	// The chart's webhooks point at its Service, which nothing serves
	// here: they are confined to namespaces carrying a label none has, so
	// the API server never tries to reach that Service's address.
	if r := helm(t, "install", release, filepath.Join(repoRoot, "charts", "kpoguard"), "-n", ns, "--create-namespace",
		"--set", "certManager.enabled=false", "--set", "webhook.namespaceOptInLabel=kpoguard.io/e2e-chart-install-never",
		"--wait", "--timeout=60s"); r.code != 0 {
		t.Fatalf("helm install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	nodes := poolNodes(t)

	replicas := waitRunning(t, ns, selector, 2)
	first, second := replicas[0].Spec.NodeName, replicas[1].Spec.NodeName
	t.Logf("the Deployment's replicas on %v", placement(nodes, replicas))
	if first == second {
		t.Errorf("both replicas on %s, want them spread over nodes", first)
	}

	// Drain: with every node the replicas may use cordoned, the first
	// replica is evicted and its replacement cannot start anywhere; the
	// PodDisruptionBudget (minAvailable 1) then refuses to evict the last.
	waitForBudget(t, ns, 2)
	var defaultPool []string
	for name, n := range nodes {
		if n.Labels[sandbox.NodePoolLabel] == "default" {
			defaultPool = append(defaultPool, name)
		}
	}
	cordon := func(verb string) {
		if r := kubectl(t, "", append([]string{verb}, defaultPool...)...); r.code != 0 {
			t.Fatalf("kubectl %s: %s", verb, r.stderr)
		}
	}
	cordon("cordon")
	t.Cleanup(func() { cordon("uncordon") })
	drain := func(node, timeout string) kubectlResult {
		return kubectl(t, "", "drain", node, "--pod-selector="+selector, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout="+timeout)
	}
	r := drain(first, "30s")
	if r.code != 0 {
		t.Fatalf("draining %s, the first replica's node: exit %d\n%s%s", first, r.code, r.stdout, r.stderr)
	}
	t.Logf("kubectl drain %s: %s", first, strings.ReplaceAll(strings.TrimSpace(r.stdout), "\n", "; "))
	waitForBudget(t, ns, 1)
	r = drain(second, "5s")
	if refusal, _, _ := strings.Cut(r.stderr, "\n"); r.code == 0 || !strings.Contains(refusal, "disruption budget") {
		t.Errorf("draining %s, the last ready replica's node: exit %d, want it refused by the disruption budget\n%s%s", second, r.code, r.stdout, r.stderr)
	} else {
		t.Logf("kubectl drain %s: exit %d: %s", second, r.code, refusal)
	}
	if p, err := pods.Get(t.Context(), replicas[1].Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the last ready replica %s: %v, want it still running", replicas[1].Name, err)
	} else if !readyAndStaying(p) {
		t.Errorf("the last ready replica %s: deleted at %v, conditions %+v; want it still running", p.Name, p.DeletionTimestamp, p.Status.Conditions)
	}
	cordon("uncordon")
	waitRunning(t, ns, selector, 2)

	// Upgrade: the rollout (maxSurge 1, maxUnavailable 0) never has fewer
	// than two ready replicas that are not being deleted.
	list, err := pods.List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	w, err := pods.Watch(t.Context(), metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	serving := map[string]bool{}
	for _, p := range list.Items {
		serving[p.Name] = readyAndStaying(&p)
	}
	fewest, seen := len(list.Items), map[string]bool{}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			seen[p.Name] = true
			serving[p.Name] = ev.Type != watch.Deleted && readyAndStaying(p)
			n := 0
			for _, s := range serving {
				if s {
					n++
				}
			}
			fewest = min(fewest, n)
		}
	}()
	if r := helm(t, "upgrade", release, filepath.Join(repoRoot, "charts", "kpoguard"), "-n", ns, "--reuse-values",
		"--set", "podAnnotations.rollout=second", "--wait", "--timeout=60s"); r.code != 0 {
		t.Fatalf("helm upgrade: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var rolled []corev1.Pod
	waitUntil(t, "only the upgraded replicas left", func() bool {
		rolled = waitRunning(t, ns, selector, 2)
		return rolled[0].Annotations["rollout"] == "second" && rolled[1].Annotations["rollout"] == "second"
	})
	w.Stop()
	<-watched
	t.Logf("helm upgrade rolled %d pods through; fewest ready replicas at any moment: %d", len(seen), fewest)
	if fewest < 2 {
		t.Errorf("during the rollout only %d ready replicas at one moment, want 2 throughout", fewest)
	}

	// Uninstall: no webhook configuration of the release is left behind.
	if r := helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout=60s"); r.code != 0 {
		t.Fatalf("helm uninstall: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reg := cluster.Client.AdmissionregistrationV1()
	mutating, err := reg.MutatingWebhookConfigurations().List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	validating, err := reg.ValidatingWebhookConfigurations().List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	if len(mutating.Items)+len(validating.Items) > 0 {
		t.Errorf("after helm uninstall: %d mutating and %d validating webhook configurations of the release left", len(mutating.Items), len(validating.Items))
	}
	waitUntil(t, "the release's pods gone", func() bool {
		left, err := pods.List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(left.Items) == 0
	})
}

// helm runs the real helm against the test API server.
func helm(t *testing.T, args ...string) kubectlResult {
	t.Helper()
	return runTool(t, "helm", "", args...)
}

// waitForBudget waits until the disruption controller counts the
// release's healthy replicas in its PodDisruptionBudget.
func waitForBudget(t *testing.T, ns string, healthy int32) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("the PodDisruptionBudget counting %d healthy replicas", healthy), func() bool {
		pdbs, err := cluster.Client.PolicyV1().PodDisruptionBudgets(ns).List(t.Context(), metav1.ListOptions{})
		return err == nil && len(pdbs.Items) == 1 && pdbs.Items[0].Status.CurrentHealthy == healthy &&
			pdbs.Items[0].Status.ObservedGeneration == pdbs.Items[0].Generation
	})
}

// readyAndStaying: the pod is ready and not being deleted.
func readyAndStaying(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
