package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

func TestValidateDenialMessage(t *testing.T) {
	d := newDeps(t, basePolicy)
	resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, fixture(t, "../testdata/pods/10-pvc-task.yaml")))
	if resp.Allowed {
		t.Fatal("pod with a PVC admitted")
	}
	want := `pod "pvc-task-z0n4r8te" is forbidden by kpoguard: 2 violations:
[no-persistent-volumes] volume "test-volume" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods; use an emptyDir scratch volume where your platform allows it, and keep data in object storage
[no-persistent-volumes] volume "scratch" (spec.volumes[1].ephemeral): generic ephemeral volumes create PersistentVolumeClaims, which are not supported for task pods; use an emptyDir scratch volume where your platform allows it`
	if resp.Result.Message != want {
		t.Errorf("message:\n%s\nwant:\n%s", resp.Result.Message, want)
	}
	if resp.Result.Code != 403 {
		t.Errorf("code = %d, want 403", resp.Result.Code)
	}
	if got := testutil.ToFloat64(d.Metrics.ruleResults.WithLabelValues("no-persistent-volumes", "enforce", "violated")); got != 2 {
		t.Errorf("rule results metric = %v, want 2", got)
	}
	if got := testutil.ToFloat64(d.Metrics.admissions.WithLabelValues(hookValidate, string(review.Denied))); got != 1 {
		t.Errorf("denied admissions metric = %v, want 1", got)
	}
}

func TestValidateModes(t *testing.T) {
	raw := fixture(t, "../testdata/pods/10-pvc-task.yaml")
	const first = `[no-persistent-volumes] volume "test-volume" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods; use an emptyDir scratch volume where your platform allows it, and keep data in object storage`
	tests := []struct {
		mode        string
		allowed     bool
		warning     string
		auditPrefix string
	}{
		{mode: "off", allowed: true},
		{mode: "audit", allowed: true, auditPrefix: first + "; [no-persistent-volumes]"},
		{mode: "warn", allowed: true, warning: "kpoguard " + first},
		{mode: "enforce", allowed: false},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			d := newDeps(t, basePolicy+"    noPersistentVolumes: {mode: "+tt.mode+"}\n")
			resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tt.allowed, resp.Result)
			}
			if tt.warning != "" && (len(resp.Warnings) != 2 || resp.Warnings[0] != tt.warning) {
				t.Errorf("warnings = %q, want 2 starting with %q", resp.Warnings, tt.warning)
			}
			if tt.warning == "" && len(resp.Warnings) != 0 {
				t.Errorf("unexpected warnings %q", resp.Warnings)
			}
			audit := resp.AuditAnnotations["no-persistent-volumes"]
			if tt.auditPrefix != "" && !strings.HasPrefix(audit, tt.auditPrefix) {
				t.Errorf("audit annotation = %q, want prefix %q", audit, tt.auditPrefix)
			}
			if tt.auditPrefix == "" && audit != "" {
				t.Errorf("unexpected audit annotation %q", audit)
			}
		})
	}
}

// fixedImages answers image lookups from a table; images missing from it
// fail as not found.
func fixedImages(platforms map[string][]policy.Platform) review.ImageResolver {
	return review.ImageResolverFunc(func(_ context.Context, _ *corev1.Pod, _ policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts {
		out := map[string]policy.ImageFacts{}
		for _, image := range images {
			if p, ok := platforms[image]; ok {
				out[image] = policy.ImageFacts{Platforms: p}
			} else {
				out[image] = policy.ImageFacts{Err: "manifest unknown"}
			}
		}
		return out
	})
}

func TestValidateImagesAndUpdates(t *testing.T) {
	amd64 := []policy.Platform{{OS: "linux", Architecture: "amd64"}}
	arm64 := []policy.Platform{{OS: "linux", Architecture: "arm64"}}
	resolver := fixedImages(map[string][]policy.Platform{"ubuntu:22.04": amd64, "example/arm-only:1": arm64})
	raw := fixture(t, "01-kpo-basic-no-resources.yaml")
	withImage := func(image string) []byte {
		var pod map[string]any
		if err := json.Unmarshal(raw, &pod); err != nil {
			t.Fatal(err)
		}
		pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"] = image
		b, _ := json.Marshal(pod)
		return b
	}
	update := func(oldImage, newImage string) admissionv1.AdmissionRequest {
		r := newPodRequest(admissionv1.Update, withImage(newImage)).AdmissionRequest
		r.OldObject = runtime.RawExtension{Raw: withImage(oldImage)}
		return r
	}
	create := func(image string) admissionv1.AdmissionRequest {
		return newPodRequest(admissionv1.Create, withImage(image)).AdmissionRequest
	}
	tests := []struct {
		name    string
		policy  string
		req     admissionv1.AdmissionRequest
		allowed bool
		message string
		warning string
	}{
		{name: "amd64 image", req: create("ubuntu:22.04"), allowed: true},
		{name: "arm64-only image", req: create("example/arm-only:1"), allowed: false,
			message: `pod "extract-orders-k3x9p2qa" is forbidden by kpoguard: [image-architecture] image "example/arm-only:1" (spec.containers[0].image): is built only for linux/arm64, but this cluster runs linux/amd64; it would fail with "exec format error"; build the image for linux/amd64: docker buildx build --platform linux/amd64, or FROM --platform=linux/amd64 in the Dockerfile`},
		{name: "lookup failure allowed with a warning", req: create("example/missing:1"), allowed: true,
			warning: `kpoguard [image-architecture] image "example/missing:1" (spec.containers[0].image): its platforms could not be checked: manifest unknown; make sure the image exists and the registry is reachable, or ask your platform team`},
		{name: "lookup failure denied", policy: "    imageArchitecture: {onLookupFailure: deny}\n", req: create("example/missing:1"), allowed: false,
			message: `pod "extract-orders-k3x9p2qa" is forbidden by kpoguard: [image-architecture] image "example/missing:1" (spec.containers[0].image): its platforms could not be checked: manifest unknown; make sure the image exists and the registry is reachable, or ask your platform team`},
		{name: "update keeping images", req: update("example/arm-only:1", "example/arm-only:1"), allowed: true, message: "no new images, tolerations or placement"},
		{name: "update to an arm64-only image", req: update("ubuntu:22.04", "example/arm-only:1"), allowed: false,
			message: `pod "extract-orders-k3x9p2qa" is forbidden by kpoguard: [image-architecture] image "example/arm-only:1" (spec.containers[0].image): is built only for linux/arm64, but this cluster runs linux/amd64; it would fail with "exec format error"; build the image for linux/amd64: docker buildx build --platform linux/amd64, or FROM --platform=linux/amd64 in the Dockerfile`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeps(t, basePolicy+tt.policy)
			d.Images = resolver
			req := newPodRequest(admissionv1.Create, nil)
			req.AdmissionRequest = tt.req
			resp := d.ValidatePods().Handle(t.Context(), req)
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tt.allowed, resp.Result)
			}
			if tt.message != "" && resp.Result.Message != tt.message {
				t.Errorf("message:\n%s\nwant:\n%s", resp.Result.Message, tt.message)
			}
			if got := strings.Join(resp.Warnings, "\n"); got != tt.warning {
				t.Errorf("warnings:\n%s\nwant:\n%s", got, tt.warning)
			}
		})
	}
}

// A resize is checked against the maximum; an update that drops the task
// label is still a task pod's update.
func TestValidateResizeAndLabelDrop(t *testing.T) {
	d := newDeps(t, basePolicy+"    maxResources: {container: {cpu: \"2\"}}\n")
	d.Images = fixedImages(map[string][]policy.Platform{"ubuntu:22.04": {{OS: "linux", Architecture: "amd64"}}})
	withPod := func(cpu string, taskLabel bool, image string) []byte {
		pod := map[string]any{
			"metadata": map[string]any{"name": "p", "labels": map[string]any{}},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "base", "image": image,
				"resources": map[string]any{"limits": map[string]any{"cpu": cpu, "memory": "1Gi"}, "requests": map[string]any{"cpu": cpu, "memory": "1Gi"}}}}},
		}
		if taskLabel {
			pod["metadata"].(map[string]any)["labels"] = map[string]any{"kubernetes_pod_operator": "True"}
		}
		b, _ := json.Marshal(pod)
		return b
	}
	update := func(sub string, old, now []byte) admission.Request {
		r := newPodRequest(admissionv1.Update, now)
		r.SubResource, r.OldObject = sub, runtime.RawExtension{Raw: old}
		return r
	}
	tests := []struct {
		name    string
		req     admission.Request
		allowed bool
		message string
	}{
		{"resize within the maximum", update("resize", withPod("1", true, "ubuntu:22.04"), withPod("2", true, "ubuntu:22.04")), true, ""},
		{"resize past the maximum", update("resize", withPod("1", true, "ubuntu:22.04"), withPod("64", true, "ubuntu:22.04")), false,
			`pod "p" is forbidden by kpoguard: [max-resources] container "base" (spec.containers[0].resources.limits[cpu]): cpu limit 64 exceeds the maximum 2 per container; set container_resources to at most cpu: 2, or ask your platform team for a larger maximum`},
		{"label dropped with an image change", update("", withPod("1", true, "ubuntu:22.04"), withPod("1", false, "example/unknown:1")), false,
			`pod "p" is forbidden by kpoguard: [task-scope] label kubernetes_pod_operator (metadata.labels[kubernetes_pod_operator]): the update would take a running task pod out of the policy's task-pod selector (kubernetes_pod_operator=True), and its later changes out of kpoguard's sight; keep the task labels KubernetesPodOperator set; create a new pod instead`},
		{"label dropped alone", update("", withPod("1", true, "ubuntu:22.04"), withPod("1", false, "ubuntu:22.04")), false,
			`pod "p" is forbidden by kpoguard: [task-scope] label kubernetes_pod_operator (metadata.labels[kubernetes_pod_operator]): the update would take a running task pod out of the policy's task-pod selector (kubernetes_pod_operator=True), and its later changes out of kpoguard's sight; keep the task labels KubernetesPodOperator set; create a new pod instead`},
		{"another label dropped", update("", withPod("1", true, "ubuntu:22.04"), withPod("1", true, "ubuntu:22.04")), true, "no new images, tolerations or placement"},
		{"status subresource", update("status", withPod("1", true, "ubuntu:22.04"), withPod("64", true, "ubuntu:22.04")), true, "kpoguard validates pods on create, image and placement changes and resizes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dd := d
			if strings.HasPrefix(tt.name, "label dropped") {
				dd = newDeps(t, basePolicy+"    imageArchitecture: {onLookupFailure: deny}\n")
				dd.Images = d.Images
			}
			resp := dd.ValidatePods().Handle(t.Context(), tt.req)
			if resp.Allowed != tt.allowed || (tt.message != "" && resp.Result.Message != tt.message) {
				t.Errorf("allowed=%v message=%q\nwant allowed=%v message=%q", resp.Allowed, resp.Result.Message, tt.allowed, tt.message)
			}
		})
	}
}

func TestValidateBadRequests(t *testing.T) {
	d := newDeps(t, basePolicy)
	good := fixture(t, "01-kpo-basic-no-resources.yaml")
	tests := []struct {
		name    string
		op      admissionv1.Operation
		raw     []byte
		old     []byte
		code    int32
		allowed bool
	}{
		{name: "not JSON", op: admissionv1.Create, raw: []byte(`{"spec":`), code: 400},
		{name: "wrong types", op: admissionv1.Create, raw: []byte(`{"spec":{"containers":"base"}}`), code: 400},
		{name: "update without old object", op: admissionv1.Update, raw: good, code: 400},
		{name: "delete", op: admissionv1.Delete, raw: good, allowed: true, code: 200},
		{name: "absurd quantity", op: admissionv1.Create, code: 400,
			raw: []byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"containers":[{"name":"base","resources":{"limits":{"cpu":"1E1000000000"}}}]}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newPodRequest(tt.op, tt.raw)
			resp := d.ValidatePods().Handle(t.Context(), req)
			if resp.Allowed != tt.allowed || resp.Result.Code != tt.code {
				t.Errorf("allowed=%v code=%d (%s), want allowed=%v code=%d", resp.Allowed, resp.Result.Code, resp.Result.Message, tt.allowed, tt.code)
			}
		})
	}
}

// A pod of another namespace than the request's is refused by both
// webhooks before anything is looked up for it; one without a namespace
// is the request's.
func TestPodOfAnotherNamespaceRefused(t *testing.T) {
	d := newDeps(t, basePolicy)
	inNamespace := func(ns string) []byte {
		var pod corev1.Pod
		if err := json.Unmarshal(fixture(t, "01-kpo-basic-no-resources.yaml"), &pod); err != nil {
			t.Fatal(err)
		}
		pod.Namespace = ns
		raw, _ := json.Marshal(&pod)
		return raw
	}
	const refusal = `the pod is of namespace "other", but the request is for namespace "` + testNamespace + `"`
	tests := []struct {
		name     string
		op       admissionv1.Operation
		raw, old []byte
		refused  bool
	}{
		{name: "create, pod of another namespace", op: admissionv1.Create, raw: inNamespace("other"), refused: true},
		{name: "update, old pod of another namespace", op: admissionv1.Update, raw: inNamespace(testNamespace), old: inNamespace("other"), refused: true},
		{name: "create, pod of the request's namespace", op: admissionv1.Create, raw: inNamespace(testNamespace)},
		{name: "create, pod without a namespace", op: admissionv1.Create, raw: inNamespace("")},
	}
	for _, tt := range tests {
		for hook, h := range map[string]admission.Handler{hookMutate: d.MutatePods(), hookValidate: d.ValidatePods()} {
			if hook == hookMutate && tt.op != admissionv1.Create {
				continue // the mutating webhook does not decode updates
			}
			t.Run(hook+": "+tt.name, func(t *testing.T) {
				req := newPodRequest(tt.op, tt.raw)
				req.OldObject.Raw = tt.old
				resp := h.Handle(t.Context(), req)
				refused := !resp.Allowed && resp.Result.Code == 400 && resp.Result.Message == refusal
				if refused != tt.refused {
					t.Errorf("allowed=%v code=%d %q, want refused=%v", resp.Allowed, resp.Result.Code, resp.Result.Message, tt.refused)
				}
			})
		}
	}
}

// Without API access, a policy that selects namespaces by label cannot be
// applied: the validating webhook refuses with why, the mutating one admits
// unchanged with a warning.
func TestNamespaceLabelsUnavailable(t *testing.T) {
	d := newDeps(t, basePolicy+`
  overrides:
  - namespaceSelector: {matchLabels: {tier: large}}
    rules: {maxResources: {container: {cpu: "8"}}}
`)
	const why = "the policy selects namespaces by label, but kpoguard runs without API access to read them"
	raw := fixture(t, "01-kpo-basic-no-resources.yaml")
	v := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
	if v.Allowed || v.Result.Code != 500 || v.Result.Message != why {
		t.Errorf("validate: %+v", v.Result)
	}
	m := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
	if !m.Allowed || len(m.Patches) != 0 || len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], why) {
		t.Errorf("mutate: allowed=%v patches=%d warnings=%q", m.Allowed, len(m.Patches), m.Warnings)
	}
	if n := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(hookValidate)); n != 0 {
		t.Errorf("%v panics", n)
	}
}

func TestValidateRecoversFromPanic(t *testing.T) {
	d := newDeps(t, basePolicy)
	d.Images = review.ImageResolverFunc(func(context.Context, *corev1.Pod, policy.ImageArchitectureConfig, []string) map[string]policy.ImageFacts {
		panic("resolver bug")
	})
	resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml")))
	if resp.Allowed || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, "test-uid") {
		t.Errorf("got allowed=%v %v, want a 500 naming the request", resp.Allowed, resp.Result)
	}
	if got := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(hookValidate)); got != 1 {
		t.Errorf("panics metric = %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.Metrics.admissions.WithLabelValues(hookValidate, string(review.Error))); got != 1 {
		t.Errorf("error admissions metric = %v, want 1", got)
	}
}

// Tolerations added to a running task pod are refused: its pool was
// decided at creation.
func TestValidatePlacementChanges(t *testing.T) {
	d := newDeps(t, basePolicy)
	var old corev1.Pod
	if err := json.Unmarshal(fixture(t, "01-kpo-basic-no-resources.yaml"), &old); err != nil {
		t.Fatal(err)
	}
	old.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}
	oldRaw, _ := json.Marshal(&old)
	pod := old.DeepCopy()
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists})
	raw, _ := json.Marshal(pod)
	req := newPodRequest(admissionv1.Update, raw)
	req.OldObject.Raw = oldRaw
	resp := d.ValidatePods().Handle(t.Context(), req)
	want := `[node-pool] toleration nvidia.com/gpu Exists (spec.tolerations[1]): was added to a running task pod, whose node pool was decided when it was created; create a new task pod instead`
	if resp.Allowed || !strings.Contains(resp.Result.Message, want) {
		t.Fatalf("allowed %v, message %v; want refused with %q", resp.Allowed, resp.Result, want)
	}
	same := newPodRequest(admissionv1.Update, oldRaw)
	same.OldObject.Raw = oldRaw
	if resp := d.ValidatePods().Handle(t.Context(), same); !resp.Allowed {
		t.Errorf("an update adding nothing was refused: %v", resp.Result)
	}
}
