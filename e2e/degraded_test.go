package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/webhook"
)

// Each optional permission of the chart, turned off, degrades kpoguard as
// docs/operations.md says. kpoguard runs as the chart deploys it with the
// value off: with the RBAC the chart then renders, and the flags its
// Deployment then passes.

// kpoguardAsChartDeploys restarts the sandbox's kpoguard as the chart
// deploys it with these values over the sandbox's (sandbox.Values): as
// its ServiceAccount with the RBAC the chart then renders, and with the
// flags its Deployment then passes for the lookups that need RBAC. The
// sandbox's own RBAC and flags are back when the test ends.
func kpoguardAsChartDeploys(t *testing.T, values map[string]any) {
	t.Helper()
	k := cluster.Kpoguard
	usual := k.ExtraArgs
	restart := func(ctx context.Context, args []string, values ...map[string]any) error {
		if _, err := cluster.ApplyChartRBAC(ctx, sandbox.Release, values...); err != nil {
			return err
		}
		k.Stop()
		k.ExtraArgs = args
		if err := k.Start(ctx); err != nil {
			return err
		}
		// The API server's connections to the old process are gone.
		return cluster.WaitForWebhooks(ctx)
	}
	t.Cleanup(func() {
		if err := restart(context.Background(), usual); err != nil {
			t.Fatal(err)
		}
	})
	if err := restart(t.Context(), append(slices.Clone(usual), deploymentFlags(t, values, "--worker-selector=", "--read-nodes=", "--read-pull-secrets=")...), values); err != nil {
		t.Fatal(err)
	}
}

// deploymentFlags are the flags with these prefixes that the chart's
// Deployment passes kpoguard with these values over the sandbox's.
func deploymentFlags(t *testing.T, values map[string]any, prefixes ...string) []string {
	t.Helper()
	args := []string{"--show-only", "templates/deployment.yaml"}
	for _, v := range []map[string]any{sandbox.Values(), values} {
		data, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--values", file)
	}
	rendered, stderr, err := helmTemplate(t, sandbox.Release, sandbox.KpoguardNamespace, args...)
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(rendered), &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, arg := range d.Spec.Template.Spec.Containers[0].Args {
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(arg, p) }) {
			out = append(out, arg)
		}
	}
	if len(out) != len(prefixes) {
		t.Fatalf("the chart's Deployment passes %v, want one flag of each of %v", out, prefixes)
	}
	return out
}

// kpoguardLogSince is what kpoguard has logged since from, a length of
// its log.
func kpoguardLogSince(from int) string { return cluster.Kpoguard.Logs()[from:] }

// Without namespace RBAC (rbac.namespaces: false), a policy whose
// overrides select namespaces by name only reads no namespace; one whose
// override selects them by label cannot tell which rules apply, and task
// pods are refused, naming the refused read.
func TestWithoutNamespaceRBAC(t *testing.T) {
	doc := readFile(t, filepath.Join(repoRoot, "examples", "policy.yaml"))
	byName := strings.Replace(doc, "namespaceSelector:\n        matchLabels: {kpoguard.io/tier: large}", "namespaces: [astronomer-large]", 1)
	if byName == doc {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	// Before the restart, so that no label-selecting policy has made
	// kpoguard start watching namespaces.
	setPolicy(t, byName)
	from := len(cluster.Kpoguard.Logs())
	kpoguardAsChartDeploys(t, map[string]any{"rbac": map[string]any{"namespaces": false}})
	pods := cluster.Client.CoreV1().Pods(taskNamespace)
	created, err := pods.Create(t.Context(), sandbox.TaskPod("namespace-not-read"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || created.Annotations["kpoguard.io/policy"] == "" {
		t.Errorf("a task pod under a policy that selects namespaces by name: %v, want it admitted and mutated", err)
	}
	if log := kpoguardLogSince(from); strings.Contains(log, "forbidden") {
		t.Errorf("kpoguard asked for what its RBAC does not grant:\n%s", log)
	}

	// setPolicy waits for a pod the policy admits; under this one, none is.
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	cm, err := cms.Get(t.Context(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[webhook.PolicyKey] = mirrored(t, doc)
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `namespaces "` + taskNamespace + `" is forbidden`
	waitUntil(t, "task pods refused under a policy that selects namespaces by label", func() bool {
		_, err = pods.Create(t.Context(), sandbox.TaskPod("namespace-unreadable"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), `admission webhook "validate-pods.kpoguard.io"`) && strings.Contains(err.Error(), want)
	})
}

// Without node RBAC (workers.readNodes: false, the chart's default),
// kpoguard never reads nodes: a worker's queue label is verified by the
// worker's own nodeSelector, and nodeLabels refuses the task.
func TestWithoutNodeRBAC(t *testing.T) {
	setUpWorkers(t)
	from := len(cluster.Kpoguard.Logs())
	kpoguardAsChartDeploys(t, map[string]any{"workers": map[string]any{"readNodes": false}})

	setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], fallbacks: [deny]}`))
	// The default queue is a nodeSelector alone, which the worker's own
	// nodeSelector holds.
	worker := workerClient(t, startWorker(t, "worker-nodes-unread", "default"))
	pod, err := launch(t, worker, "pinned-by-worker")
	if err != nil || pod.Spec.NodeSelector[nodePoolLabel] != "default" {
		t.Errorf("a task of a worker pinned to the default pool by its nodeSelector: %v, want it there", err)
	}

	setPolicy(t, parentPolicy(t, `{source: inherit, nodeLabels: [node.kubernetes.io/instance-type]}`))
	_, err = launch(t, worker, "needs-node-labels")
	const want = "kpoguard does not read nodes (--read-nodes=false; the chart's workers.readNodes)"
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("a task whose policy copies node labels: %v, want it refused with %q", err, want)
	}
	if log := kpoguardLogSince(from); strings.Contains(log, "forbidden") {
		t.Errorf("kpoguard asked for what its RBAC does not grant:\n%s", log)
	}
}

// Without pull-secret RBAC (registry.pullSecrets: false, the chart's
// default), a policy's usePullSecrets looks images up anonymously, and
// kpoguard reads no pull secret: a private image fails as unauthorized and
// onLookupFailure decides; public images are looked up as before.
func TestWithoutPullSecretRBAC(t *testing.T) {
	from := len(cluster.Kpoguard.Logs())
	kpoguardAsChartDeploys(t, map[string]any{"registry": map[string]any{"pullSecrets": false}})
	doc := readFile(t, filepath.Join(repoRoot, "examples", "policy.yaml"))
	withSecrets := strings.Replace(doc, "onLookupFailure: allow", "onLookupFailure: deny\n      usePullSecrets: true", 1)
	if withSecrets == doc {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	setPolicy(t, withSecrets)
	reg := cluster.Registry
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "unreadable-registry", Namespace: taskNamespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + reg.Host + `":{"username":"` +
			registrytest.User + `","password":"` + registrytest.Password + `"}}}`)},
	}
	secrets := cluster.Client.CoreV1().Secrets(taskNamespace)
	if _, err := secrets.Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), secret.Name, metav1.DeleteOptions{}) })

	for _, tt := range []struct {
		image string
		// refusal is part of the pod's refusal; "" when it is admitted.
		refusal string
	}{
		{image: reg.Ref(registrytest.Private), refusal: "the registry refused access; check the pod's imagePullSecrets"},
		{image: reg.Ref(registrytest.MultiArch)},
	} {
		pod := sandbox.TaskPod("secret-unreadable")
		pod.Spec.Containers[0].Image = tt.image
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret.Name}}
		_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case tt.refusal == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.image, err)
		case tt.refusal != "" && (err == nil || !strings.Contains(err.Error(), tt.refusal)):
			t.Errorf("%s: %v, want a refusal with %q", tt.image, err, tt.refusal)
		}
	}
	if log := kpoguardLogSince(from); strings.Contains(log, "forbidden") {
		t.Errorf("kpoguard asked for what its RBAC does not grant:\n%s", log)
	}
}

// Without worker lookups (workers.selector empty), kpoguard has no pod
// RBAC and reads no pod: a policy that follows the launching worker
// cannot find it, and its fallbacks decide.
func TestWithoutWorkerRBAC(t *testing.T) {
	setUpWorkers(t)
	from := len(cluster.Kpoguard.Logs())
	kpoguardAsChartDeploys(t, map[string]any{"workers": map[string]any{"selector": ""}})
	setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], fallbacks: [deny]}`))
	_, err := launch(t, workerClient(t, startWorker(t, "worker-not-looked-up", "nvme")), "worker-unknown")
	const want = "kpoguard runs without worker lookups (no API access, or an empty --worker-selector)"
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("a task of a worker, without worker lookups: %v, want it refused by the deny fallback with %q", err, want)
	}
	if log := kpoguardLogSince(from); strings.Contains(log, "forbidden") {
		t.Errorf("kpoguard asked for what its RBAC does not grant:\n%s", log)
	}
}
