package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

func TestKPOFixturesGetPlatformDefaults(t *testing.T) {
	pod := kubectlCreate(t, kpoFixture("01-kpo-basic-no-resources.yaml"), "extract-orders-k3x9p2qa")
	base := pod.Spec.Containers[0]
	expectFields(t, []field{
		{"cpu request", base.Resources.Requests.Cpu().String(), "1"},
		{"cpu limit", base.Resources.Limits.Cpu().String(), "1"},
		{"memory request", base.Resources.Requests.Memory().String(), "2Gi"},
		{"memory limit", base.Resources.Limits.Memory().String(), "2Gi"},
		{"ephemeral-storage limit", base.Resources.Limits.StorageEphemeral().String(), "2Gi"},
		{"envFrom", envFromNames(base.EnvFrom), "secret/env-secrets"},
		{"node pool", pod.Spec.NodeSelector["kpoguard.io/node-pool"], "default"},
		{"QoS class", string(pod.Status.QOSClass), string(corev1.PodQOSGuaranteed)},
	})
	if !strings.Contains(pod.Annotations["kpoguard.io/mutations"], "env-secrets spec.containers[0].envFrom[0]") {
		t.Errorf("mutations annotation = %q", pod.Annotations["kpoguard.io/mutations"])
	}
}

func envFromNames(sources []corev1.EnvFromSource) string {
	var names []string
	for _, s := range sources {
		switch {
		case s.SecretRef != nil:
			names = append(names, "secret/"+s.SecretRef.Name)
		case s.ConfigMapRef != nil:
			names = append(names, "configmap/"+s.ConfigMapRef.Name)
		}
	}
	return strings.Join(names, ",")
}

func TestDenialsShownByKubectl(t *testing.T) {
	r := kubectl(t, "", "create", "-f", ownFixture("10-pvc-task.yaml"))
	if r.code != 1 {
		t.Fatalf("kubectl create: exit %d, want 1: %s", r.code, r.stdout)
	}
	want := `admission webhook "validate-pods.kpoguard.io" denied the request: pod "pvc-task-z0n4r8te" is forbidden by kpoguard: 2 violations:
[no-persistent-volumes] volume "test-volume" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("kubectl stderr:\n%s\nwant it to contain:\n%s", r.stderr, want)
	}
}

func TestXComSidecarGetsItsOwnSize(t *testing.T) {
	pod := kubectlCreate(t, kpoFixture("02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml"), "train-model-p8d2m0zr")
	base, sidecar := pod.Spec.Containers[0].Resources, pod.Spec.Containers[1].Resources
	expectFields(t, []field{
		// requests-equal-limits raised the task's own 500m/1Gi requests.
		{"base cpu request", base.Requests.Cpu().String(), "1"},
		{"base memory request", base.Requests.Memory().String(), "2Gi"},
		{"sidecar cpu limit", sidecar.Limits.Cpu().String(), "50m"},
		{"sidecar memory limit", sidecar.Limits.Memory().String(), "32Mi"},
		{"sidecar cpu request", sidecar.Requests.Cpu().String(), "50m"},
		{"xcom sizeLimit", pod.Spec.Volumes[0].EmptyDir.SizeLimit.String(), "1Gi"},
	})
}

// The queue label picks the nvme pool: its nodeSelector and toleration are
// added, and its matchExpressions are ANDed into the pod's own required
// node-affinity term; a scratch emptyDir is allowed there.
func TestNodePoolMergedIntoExistingAffinity(t *testing.T) {
	pod := kubectlCreate(t, ownFixture("13-nvme-queue-scratch.yaml"), "build-features-m3n4b5v6")
	if got := pod.Spec.NodeSelector["kpoguard.io/node-pool"]; got != "nvme" {
		t.Errorf("node pool %q, want nvme", got)
	}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 2 ||
		terms[0].MatchExpressions[0].Key != "kubernetes.io/os" || terms[0].MatchExpressions[1].Key != "node.kubernetes.io/instance-type" {
		t.Errorf("required terms = %+v, want the pod's os term with the pool's instance-type expression added", terms)
	}
	if len(pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("preferred terms changed: %+v", pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
	}
	found := false
	for _, tol := range pod.Spec.Tolerations {
		found = found || (tol.Key == "kpoguard.io/node-pool" && tol.Value == "nvme" && tol.Effect == corev1.TaintEffectNoSchedule)
	}
	if !found {
		t.Errorf("tolerations %+v lack the nvme pool's", pod.Spec.Tolerations)
	}
	// The pod already referenced env-secrets: not added twice.
	if got := envFromNames(pod.Spec.Containers[0].EnvFrom); got != "secret/env-secrets" {
		t.Errorf("envFrom = %s", got)
	}
}

func TestImagePullSecretsForPrivateRegistry(t *testing.T) {
	pod := sandbox.TaskPod("private-image")
	pod.Spec.Containers[0].Image = "registry.example.com/data/joiner:1.4.2"
	created, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, pod.Name) })
	if len(created.Spec.ImagePullSecrets) != 1 || created.Spec.ImagePullSecrets[0].Name != "platform-registry" {
		t.Errorf("imagePullSecrets = %+v, want platform-registry", created.Spec.ImagePullSecrets)
	}
}

// Every validating rule, through the API server, in one message.
func TestEveryViolationInOneMessage(t *testing.T) {
	r := kubectl(t, "", "create", "-f", ownFixture("11-oversized-cross-account.yaml"))
	if r.code != 1 {
		t.Fatalf("kubectl create: exit %d, want 1", r.code)
	}
	for _, want := range []string{
		`pod "join-tables-a1b2c3d4" is forbidden by kpoguard: 7 violations:`,
		`[max-resources] container "base" (spec.containers[0].resources.limits[cpu]): cpu limit 16 exceeds the maximum 4 per container`,
		`[ephemeral-storage] volume "spill" (spec.volumes[0].emptyDir): emptyDir volumes are not allowed for task pods in queue "default"`,
		`[service-account] service account "finance-admin" (spec.serviceAccountName): cross-account service accounts are not supported for task pods`,
		`[image-architecture] nodeSelector kubernetes.io/arch=arm64 (spec.nodeSelector[kubernetes.io/arch]): this cluster runs only linux/amd64 nodes`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("kubectl stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := cluster.Client.CoreV1().Pods(taskNamespace).Get(t.Context(), "join-tables-a1b2c3d4", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("denied pod stored: %v", err)
	}
}

// The Kubernetes Python client sends numbers for quantities, null for
// unset ones, and whatever fields its model has: the API server decodes
// them before kpoguard sees the pod, and kpoguard fills only the gaps.
func TestPythonClientShapedPod(t *testing.T) {
	raw := []byte(readFile(t, ownFixture("12-python-client-quantities.json")))
	result := cluster.Client.CoreV1().RESTClient().Post().Namespace(taskNamespace).Resource("pods").
		Body(raw).SetHeader("Content-Type", "application/json").Do(t.Context())
	if err := result.Error(); err != nil {
		t.Fatalf("creating the pod: %v", err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, "score-q7w8e9r0") })
	pod := getPod(t, taskNamespace, "score-q7w8e9r0")
	res := pod.Spec.Containers[0].Resources
	expectFields(t, []field{
		{"cpu limit (0.5 as a number)", res.Limits.Cpu().String(), "500m"},
		{"cpu request raised to the limit", res.Requests.Cpu().String(), "500m"},
		{"memory limit from the default", res.Limits.Memory().String(), "2Gi"},
		{"gpu limit (null request) equal to the request", res.Limits.Name("nvidia.com/gpu", resource.DecimalSI).String(), "0"},
		{"envFrom", envFromNames(pod.Spec.Containers[0].EnvFrom), "secret/env-secrets,configmap/scoring-config"},
	})
}

func TestDryRunShowsMutationAndStoresNothing(t *testing.T) {
	r := kubectl(t, "", "apply", "--dry-run=server", "-o", "yaml", "-f", kpoFixture("01-kpo-basic-no-resources.yaml"))
	if r.code != 0 {
		t.Fatalf("kubectl apply --dry-run=server: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"kpoguard.io/mutations:", "name: env-secrets", "kpoguard.io/node-pool: default"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if _, err := cluster.Client.CoreV1().Pods(taskNamespace).Get(t.Context(), "extract-orders-k3x9p2qa", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run stored the pod: %v", err)
	}
}

// In-place resize goes through pods/resize; the maximum applies there too.
func TestResizeBeyondMaximumRefused(t *testing.T) {
	pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), sandbox.TaskPod("resized"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, pod.Name) })
	resize := func(cpu string) kubectlResult {
		patch := `{"spec":{"containers":[{"name":"base","resources":{"limits":{"cpu":"` + cpu + `"},"requests":{"cpu":"` + cpu + `"}}}]}}`
		return kubectl(t, "", "patch", "pod", "-n", taskNamespace, pod.Name, "--subresource", "resize", "--patch", patch)
	}
	if r := resize("64"); r.code == 0 || !strings.Contains(r.stderr, `[max-resources] container "base" (spec.containers[0].resources.limits[cpu]): cpu limit 64 exceeds the maximum 4 per container`) {
		t.Errorf("resize to 64 CPUs: exit %d\n%s", r.code, r.stderr)
	}
	if r := resize("2"); r.code != 0 {
		t.Errorf("resize to 2 CPUs: exit %d\n%s", r.code, r.stderr)
	}
}

// A namespace labelled for the large-deployments override, created a
// moment before its first pod, gets the override's default pod size.
func TestNamespaceLabelOverride(t *testing.T) {
	ns := "large-team"
	if err := cluster.CreateNamespace(t.Context(), ns, map[string]string{"kpoguard.io/tier": "large"}); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), sandbox.TaskPod("large"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Spec.Containers[0].Resources.Limits.Cpu().String(); got != "2" {
		t.Errorf("cpu limit %s, want the override's 2", got)
	}
}

// kubectlCreate creates a fixture with real kubectl and returns the pod
// as the API server stored it; the pod is deleted when the test ends.
func kubectlCreate(t *testing.T, file, name string) *corev1.Pod {
	t.Helper()
	if r := kubectl(t, "", "create", "-f", file); r.code != 0 {
		t.Fatalf("kubectl create: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, name) })
	return getPod(t, taskNamespace, name)
}

// field is one value of a stored pod and what it should be.
type field struct{ what, got, want string }

func expectFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s = %q, want %q", f.what, f.got, f.want)
		}
	}
}
