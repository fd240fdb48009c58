package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// Pods are admitted or refused by what their images' registry says,
// through the real API server and kpoguard process.
func TestImageArchitectureFromTheRegistry(t *testing.T) {
	reg := cluster.Registry
	tests := []struct {
		image   string
		allowed bool
		says    string
	}{
		{image: reg.Ref(registrytest.AMD64), allowed: true},
		{image: reg.Ref(registrytest.MultiArch), allowed: true},
		{image: reg.Ref(registrytest.ManifestList), allowed: true},
		// Docker Hub's official images, through the sandbox's mirror.
		{image: "ubuntu:22.04", allowed: true},
		{image: reg.Ref(registrytest.ARM64Only), says: "is built only for linux/arm64/v8, but this cluster runs linux/amd64"},
		{image: reg.Ref(registrytest.ARM64), says: `is built only for linux/arm64/v8, but this cluster runs linux/amd64; it would fail with "exec format error"`},
		{image: reg.Ref(registrytest.Windows), says: "is built only for windows/amd64"},
	}
	for i, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			pod := sandbox.TaskPod(fmt.Sprintf("arch-%d", i))
			pod.Spec.Containers[0].Image = tt.image
			_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if tt.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), `[image-architecture] image "`+tt.image+`"`) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error = %v, want the image named and %q", err, tt.says)
			}
			if !strings.Contains(err.Error(), "docker buildx build --platform linux/amd64") {
				t.Errorf("error %v does not say how to fix it", err)
			}
		})
	}
	// A tag's lookups are cached: the same pod again asks the registry
	// nothing.
	reg.Reset()
	pod := sandbox.TaskPod("arch-again")
	pod.Spec.Containers[0].Image = reg.Ref(registrytest.MultiArch)
	if _, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if n := reg.Requests("HEAD manifest") + reg.Requests("GET manifest"); n != 0 {
		t.Errorf("a cached image cost %d manifest requests", n)
	}
	if hits := metric(t, `kpoguard_registry_lookups_total{result="hit"}`); hits < 1 {
		t.Errorf("no cache hit counted: %v", hits)
	}
}

// A lookup that fails is allowed with a warning kubectl shows, under the
// example policy's onLookupFailure: allow.
func TestLookupFailureWarnsThroughKubectl(t *testing.T) {
	r := kubectl(t, "", "run", "-n", taskNamespace, "missing-image", "--dry-run=server", "--restart=Never",
		"--labels=kubernetes_pod_operator=True", "--image="+cluster.Registry.Ref(registrytest.Missing))
	if r.code != 0 {
		t.Fatalf("kubectl run refused (%d): %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "Warning: kpoguard [image-architecture]") || !strings.Contains(r.stderr, "the registry has no such image") {
		t.Errorf("kubectl printed no lookup warning:\n%s", r.stderr)
	}
}

// An ephemeral container (kubectl debug) with an arm64-only image is
// refused through the pods/ephemeralcontainers subresource.
func TestEphemeralContainerImageChecked(t *testing.T) {
	pod := sandbox.TaskPod("debug-me")
	created, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, created.Name) })
	created.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: cluster.Registry.Ref(registrytest.ARM64Only), TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent,
	}}}
	_, err = cluster.Client.CoreV1().Pods(taskNamespace).UpdateEphemeralContainers(t.Context(), created.Name, created, metav1.UpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.ephemeralContainers[0].image") || !strings.Contains(err.Error(), "linux/arm64/v8") {
		t.Fatalf("error = %v, want the ephemeral container's arm64-only image refused", err)
	}
	created.Spec.EphemeralContainers[0].Image = cluster.Registry.Ref(registrytest.MultiArch)
	if _, err := cluster.Client.CoreV1().Pods(taskNamespace).UpdateEphemeralContainers(t.Context(), created.Name, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("a multi-arch debug image was refused: %v", err)
	}
}

// With usePullSecrets, a private image is looked up with the pod's
// imagePullSecrets, read through the API server.
func TestPrivateImageLookedUpWithPullSecret(t *testing.T) {
	doc := readFile(t, repoRoot+"/examples/policy.yaml")
	withSecrets := strings.Replace(doc, "onLookupFailure: allow", "onLookupFailure: deny\n      usePullSecrets: true", 1)
	if withSecrets == doc {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	setPolicy(t, withSecrets)
	reg := cluster.Registry
	auth := `{"auths":{"` + reg.Host + `":{"username":"` + registrytest.User + `","password":"` + registrytest.Password + `"}}}`
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "private-registry", Namespace: taskNamespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(auth)},
	}
	if _, err := cluster.Client.CoreV1().Secrets(taskNamespace).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Secrets(taskNamespace).Delete(context.Background(), secret.Name, metav1.DeleteOptions{})
	})
	for _, withSecret := range []bool{true, false} {
		pod := sandbox.TaskPod(fmt.Sprintf("private-%v", withSecret))
		pod.Spec.Containers[0].Image = reg.Ref(registrytest.Private)
		if withSecret {
			pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret.Name}}
		}
		_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case withSecret && err != nil:
			t.Errorf("with the pull secret: refused: %v", err)
		case !withSecret && (err == nil || !strings.Contains(err.Error(), "the registry refused access; check the pod's imagePullSecrets")):
			t.Errorf("without a pull secret: error = %v, want access refused", err)
		}
	}
}

// kpoguard reads pull secrets only in the namespace the request is for.
// The API server never sends a pod of another namespace than the
// request's, but anything that reaches kpoguard's port can: such a review
// is refused, and B's pull secret never authenticates a lookup for A.
func TestLookupsUseOnlyTheRequestsNamespace(t *testing.T) {
	doc := readFile(t, repoRoot+"/examples/policy.yaml")
	withSecrets := strings.Replace(doc, "onLookupFailure: allow", "onLookupFailure: deny\n      usePullSecrets: true", 1)
	if withSecrets == doc {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	setPolicy(t, withSecrets)
	const owner = "pull-secret-owner"
	if err := cluster.CreateNamespace(t.Context(), owner, nil); err != nil {
		t.Fatal(err)
	}
	reg := cluster.Registry
	auth := `{"auths":{"` + reg.Host + `":{"username":"` + registrytest.User + `","password":"` + registrytest.Password + `"}}}`
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "owner-only-registry", Namespace: owner},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(auth)},
	}
	if _, err := cluster.Client.CoreV1().Secrets(owner).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Through the API server, in its own namespace, the secret
	// authenticates the lookup; the API server answers with the pod as
	// kpoguard's mutating webhook completed it.
	pod := sandbox.TaskPod("borrowed-secret")
	pod.Spec.Containers[0].Image = reg.Ref(registrytest.Private)
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret.Name}}
	mutated, err := cluster.Client.CoreV1().Pods(owner).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("the pod in its own namespace was refused: %v", err)
	}
	mutated.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	raw, err := json.Marshal(mutated)
	if err != nil {
		t.Fatal(err)
	}
	// The same pod, in a review for another namespace: it would pass if
	// kpoguard looked its image up with the owner's secret.
	resp := postReview(t, "/validate-pods", &admissionv1.AdmissionRequest{
		UID:       "borrowed-secret",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: taskNamespace,
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "sandbox-user", Groups: []string{sandbox.UserGroup}},
		Object:    runtime.RawExtension{Raw: raw},
	})
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, `namespace "`+owner+`"`) {
		t.Errorf("a pod of namespace %s in a review for %s: allowed=%v %+v, want a 400 naming its namespace", owner, taskNamespace, resp.Allowed, resp.Result)
	}
}

// The API server lets a pod gain tolerations; kpoguard refuses that for a
// task pod, whose pool was decided when it was created.
func TestTolerationAddedToTaskPodRefused(t *testing.T) {
	created, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), sandbox.TaskPod("tolerate-later"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, created.Name) })
	created.Spec.Tolerations = append(created.Spec.Tolerations, corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists})
	_, err = cluster.Client.CoreV1().Pods(taskNamespace).Update(t.Context(), created, metav1.UpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "was added to a running task pod") {
		t.Fatalf("error = %v, want the added toleration refused", err)
	}
}
