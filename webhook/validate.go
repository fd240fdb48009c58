package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
)

// ValidatePods serves /validate-pods.
func (d *Deps) ValidatePods() admission.Handler {
	return d.instrumented(hookValidate, d.validate)
}

func (d *Deps) validate(ctx context.Context, req admission.Request) admission.Response {
	// A running pod can change little: its images (ephemeral containers
	// included), its tolerations (only added), and its resources through
	// the resize subresource. What an update brings in is checked; the
	// rest was checked at create (so a registry failing for an old image
	// does not block kubectl debug).
	var only policy.RuleID
	var added map[string]string
	var old *corev1.Pod
	switch {
	case req.Operation == admissionv1.Create && req.SubResource == "":
	case req.Operation == admissionv1.Update && req.SubResource == subresourceResize:
		only = policy.MaxResources
	case req.Operation == admissionv1.Update && (req.SubResource == "" || req.SubResource == subresourceEphemeralContainers):
		var err error
		var newTolerations bool
		if added, old, newTolerations, err = podUpdate(req); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if len(added) == 0 && !newTolerations {
			return admission.Allowed("no new images or tolerations")
		}
		only = policy.ImageArchitecture
	default:
		return admission.Allowed("kpoguard validates pods on create, image changes and resizes")
	}
	pr, resp := d.admitPod(ctx, req)
	if resp != nil {
		return *resp
	}
	facts := policy.Facts{}
	if only == "" {
		facts.Parent = d.parentOf(ctx, hookValidate, req, pr)
	}
	if d.Images != nil && pr.rules.ImageArchitecture.Mode != policy.Off && (only == "" || only == policy.ImageArchitecture) {
		cfg := pr.rules.ImageArchitecture
		lookups := LookupImages(pr.pod, cfg)
		if added != nil {
			lookups = slices.DeleteFunc(lookups, func(image string) bool { _, ok := added[image]; return !ok })
		}
		facts.Images = d.Images.Resolve(ctx, pr.pod, cfg, lookups)
	}
	violations := pr.rules.Validate(pr.pod, facts)
	if only != "" {
		violations = slices.DeleteFunc(violations, func(v policy.Violation) bool { return v.Rule != only })
	}
	if old != nil {
		paths := map[string]bool{}
		for _, p := range added {
			paths[p] = true
		}
		violations = slices.DeleteFunc(violations, func(v policy.Violation) bool { return !paths[v.Path] })
		violations = append(violations, pr.rules.AddedTolerations(pr.pod, old)...)
	}
	d.Metrics.countViolations(violations)

	out := admission.Allowed("")
	if denials := policy.Denials(violations); len(denials) > 0 {
		out = admission.Denied(policy.DenialMessage(podName(pr.pod), denials))
	}
	out.AuditAnnotations = auditAnnotations(nil, violations)
	for _, v := range violations {
		if v.Mode == policy.Warn {
			out.Warnings = append(out.Warnings, "kpoguard "+v.String())
		}
	}
	return out
}

// podUpdate says what an update brings in: images, by the field path
// messages name, and whether tolerations; and the pod as it was.
func podUpdate(req admission.Request) (images map[string]string, old *corev1.Pod, tolerations bool, err error) {
	var pod corev1.Pod
	old = &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, nil, false, fmt.Errorf("decoding the pod: %w", err)
	}
	if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
		return nil, nil, false, fmt.Errorf("decoding the old pod: %w", err)
	}
	return policy.AddedImages(&pod, old), old, !equality.Semantic.DeepEqual(pod.Spec.Tolerations, old.Spec.Tolerations), nil
}

func podName(pod *corev1.Pod) string {
	if pod.Name == "" && pod.GenerateName != "" {
		return pod.GenerateName + "*"
	}
	return pod.Name
}
