package webhook

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

func TestMutateExactPatches(t *testing.T) {
	d := newDeps(t, basePolicy)
	hash := d.Policies.Current().Hash()
	envSecret := map[string]any{"secretRef": map[string]any{"name": "env-secrets", "optional": true}}
	tests := []struct {
		fixture string
		want    []jsonpatch.Operation
	}{{
		fixture: "01-kpo-basic-no-resources.yaml",
		want: []jsonpatch.Operation{
			jsonpatch.NewOperation("add", "/metadata/annotations/kpoguard.io~1mutations",
				"default-resources spec.containers[0].resources.limits[cpu]=1; "+
					"default-resources spec.containers[0].resources.limits[memory]=2Gi; "+
					"default-resources spec.containers[0].resources.requests[cpu]=500m; "+
					"default-resources spec.containers[0].resources.requests[memory]=1Gi; "+
					"env-secrets spec.containers[0].envFrom[0]=secretRef env-secrets (optional)"),
			jsonpatch.NewOperation("add", "/metadata/annotations/kpoguard.io~1policy", hash),
			jsonpatch.NewOperation("add", "/spec/containers/0/envFrom/0", envSecret),
			jsonpatch.NewOperation("add", "/spec/containers/0/resources", map[string]any{
				"limits":   map[string]any{"cpu": "1", "memory": "2Gi"},
				"requests": map[string]any{"cpu": "500m", "memory": "1Gi"},
			}),
		},
	}, {
		// The xcom sidecar gets its small built-in limits, not the task's;
		// the xcom emptyDir gets the default sizeLimit.
		fixture: "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml",
		want: []jsonpatch.Operation{
			jsonpatch.NewOperation("add", "/metadata/annotations/kpoguard.io~1mutations",
				"default-resources spec.containers[1].resources.limits[cpu]=50m; "+
					"default-resources spec.containers[1].resources.limits[memory]=32Mi; "+
					"env-secrets spec.containers[0].envFrom[0]=secretRef env-secrets (optional); "+
					"ephemeral-storage spec.volumes[0].emptyDir.sizeLimit=1Gi"),
			jsonpatch.NewOperation("add", "/metadata/annotations/kpoguard.io~1policy", hash),
			jsonpatch.NewOperation("add", "/spec/containers/0/envFrom/0", envSecret),
			jsonpatch.NewOperation("add", "/spec/containers/1/resources/limits", map[string]any{"cpu": "50m", "memory": "32Mi"}),
			jsonpatch.NewOperation("add", "/spec/volumes/0/emptyDir/sizeLimit", "1Gi"),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			raw := fixture(t, tt.fixture)
			resp := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			if got, want := mustJSON(t, resp.Patches), mustJSON(t, tt.want); got != want {
				t.Errorf("patch:\n got %s\nwant %s", got, want)
			}
			// Reinvocation: the patched pod needs nothing more.
			again := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, applyPatch(t, raw, resp)))
			if len(again.Patches) != 0 {
				t.Errorf("second invocation patched again: %s", mustJSON(t, again.Patches))
			}
		})
	}
}

// A field our k8s.io/api does not know must survive: re-encoding the typed
// pod drops it, and the patch must not remove it.
func TestMutateKeepsUnknownFields(t *testing.T) {
	d := newDeps(t, basePolicy)
	raw := fixture(t, "../testdata/pods/12-python-client-quantities.json")
	resp := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
	for _, op := range resp.Patches {
		if strings.Contains(op.Path, "future") || strings.HasPrefix(op.Path, "/status") || strings.Contains(op.Path, "/resources/requests") {
			t.Errorf("patch touches %s, which only re-encoding changes", op.Path)
		}
	}
	var out map[string]any
	if err := json.Unmarshal(applyPatch(t, raw, resp), &out); err != nil {
		t.Fatal(err)
	}
	c := out["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if got := mustJSON(t, c["futureContainerField"]); got != `{"addedIn":"v9.99"}` {
		t.Errorf("futureContainerField = %s, want it kept", got)
	}
	// The Python client's number-typed cpu is read and left as written;
	// memory's limit was missing, and the GPU's null request (0) gets the
	// equal limit the API server requires of extended resources.
	res := mustJSON(t, c["resources"])
	if want := `{"limits":{"cpu":0.5,"memory":"2Gi","nvidia.com/gpu":"0"},"requests":{"cpu":0.25,"memory":"512Mi","nvidia.com/gpu":null}}`; res != want {
		t.Errorf("resources = %s, want %s", res, want)
	}
	if got := mustJSON(t, c["envFrom"]); got != `[{"secretRef":{"name":"env-secrets","optional":true}},{"configMapRef":{"name":"scoring-config"}}]` {
		t.Errorf("envFrom = %s", got)
	}
}

func TestMutateScopeAndOperations(t *testing.T) {
	d := newDeps(t, basePolicy)
	raw := fixture(t, "01-kpo-basic-no-resources.yaml")
	notTask := fixture(t, "../testdata/pods/14-not-a-task-pod.yaml")
	tests := []struct {
		name   string
		req    func() admissionv1.AdmissionRequest
		reason string
	}{
		{"exempt namespace", func() admissionv1.AdmissionRequest {
			inKubeSystem := bytes.Replace(raw, []byte(`"namespace":"`+testNamespace+`"`), []byte(`"namespace":"kube-system"`), 1)
			r := newPodRequest(admissionv1.Create, inKubeSystem).AdmissionRequest
			r.Namespace = "kube-system"
			return r
		}, policy.SkipExemptNamespace},
		{"not a task pod", func() admissionv1.AdmissionRequest {
			return newPodRequest(admissionv1.Create, notTask).AdmissionRequest
		}, policy.SkipNotTaskPod},
		{"update", func() admissionv1.AdmissionRequest {
			return newPodRequest(admissionv1.Update, raw).AdmissionRequest
		}, "kpoguard mutates pods only on create"},
		{"not a pod", func() admissionv1.AdmissionRequest {
			r := newPodRequest(admissionv1.Create, []byte(`{"kind":"Secret"}`)).AdmissionRequest
			r.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}
			return r
		}, "kpoguard reviews only pods"},
		{"subresource", func() admissionv1.AdmissionRequest {
			r := newPodRequest(admissionv1.Create, raw).AdmissionRequest
			r.SubResource = "binding"
			return r
		}, "kpoguard mutates pods only on create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newPodRequest(admissionv1.Create, nil)
			req.AdmissionRequest = tt.req()
			resp := d.MutatePods().Handle(t.Context(), req)
			if !resp.Allowed || len(resp.Patches) != 0 || resp.Result.Message != tt.reason {
				t.Errorf("got allowed=%v patches=%d message=%q, want allowed unchanged with %q",
					resp.Allowed, len(resp.Patches), resp.Result.Message, tt.reason)
			}
		})
	}
}

func TestMutateExemptGroupIsBreakGlass(t *testing.T) {
	d := newDeps(t, basePolicy+`
  scope:
    exemptGroups: ["platform:admins"]
`)
	req := newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml"))
	req.UserInfo = authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated", "platform:admins"}}
	resp := d.MutatePods().Handle(t.Context(), req)
	if len(resp.Patches) != 0 || resp.Result.Message != policy.SkipExemptUser {
		t.Errorf("got %d patches, message %q; want none, %q", len(resp.Patches), resp.Result.Message, policy.SkipExemptUser)
	}
}

func TestMutateModes(t *testing.T) {
	raw := fixture(t, "01-kpo-basic-no-resources.yaml")
	tests := []struct {
		mode         string
		wantPatchOps int // the policy annotation, plus resources in enforce
		wantWarnings []string
		wantAudit    map[string]string
	}{
		{mode: "off", wantPatchOps: 1},
		{mode: "audit", wantPatchOps: 1, wantAudit: map[string]string{
			"default-resources": "would set spec.containers[0].resources.limits[cpu]=1; would set spec.containers[0].resources.requests[cpu]=1",
		}},
		{mode: "warn", wantPatchOps: 1, wantWarnings: []string{
			"kpoguard [default-resources] would set spec.containers[0].resources.limits[cpu]=1 (warn mode: not applied)",
			"kpoguard [default-resources] would set spec.containers[0].resources.requests[cpu]=1 (warn mode: not applied)",
		}},
		{mode: "enforce", wantPatchOps: 3},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			d := newDeps(t, `
apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
spec:
  rules:
    defaultResources: {mode: `+tt.mode+`, requests: {cpu: "1"}, limits: {cpu: "1"}}
    envSecrets: {mode: off}
`)
			resp := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
			if len(resp.Patches) != tt.wantPatchOps {
				t.Errorf("patch = %s, want %d operations", mustJSON(t, resp.Patches), tt.wantPatchOps)
			}
			if mustJSON(t, resp.Warnings) != mustJSON(t, tt.wantWarnings) {
				t.Errorf("warnings = %q, want %q", resp.Warnings, tt.wantWarnings)
			}
			if mustJSON(t, resp.AuditAnnotations) != mustJSON(t, tt.wantAudit) {
				t.Errorf("audit annotations = %v, want %v", resp.AuditAnnotations, tt.wantAudit)
			}
		})
	}
}

// Two overrides that are valid alone but not together: the mutating
// webhook admits unchanged with a warning (the validating one denies).
func TestMutateInvalidOverrideCombination(t *testing.T) {
	d := newDeps(t, basePolicy+`
    maxResources: {container: {cpu: "8"}}
  overrides:
  - name: big-default
    namespaces: [`+testNamespace+`]
    rules: {defaultResources: {requests: {cpu: "4"}, limits: {cpu: "4"}}}
  - name: small-max
    namespaceSelector: {matchLabels: {tier: small}}
    rules: {maxResources: {container: {cpu: "2"}}}
`)
	d.Namespaces = namespaceLabels{testNamespace: {"tier": "small"}}
	resp := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml")))
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("allowed=%v patches=%d, want allowed unchanged", resp.Allowed, len(resp.Patches))
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `overrides "small-max", "big-default" together give invalid rules`) {
		t.Errorf("warnings = %q", resp.Warnings)
	}
	if got := testutil.ToFloat64(d.Metrics.admissions.WithLabelValues(hookMutate, string(review.Error))); got != 1 {
		t.Errorf("mutate errors counted %v, want 1", got)
	}
}
