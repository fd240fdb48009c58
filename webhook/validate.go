package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
)

// ValidatePods serves /validate-pods.
func (d *Deps) ValidatePods() admission.Handler {
	return d.instrumented(hookValidate, d.validate)
}

func (d *Deps) validate(ctx context.Context, req admission.Request) admission.Response {
	// A running pod can change little: its images (ephemeral containers
	// included), and its resources through the resize subresource. Those are checked again; the rest
	// was checked at create.
	var only policy.RuleID
	switch {
	case req.Operation == admissionv1.Create && req.SubResource == "":
	case req.Operation == admissionv1.Update && req.SubResource == subresourceResize:
		only = policy.MaxResources
	case req.Operation == admissionv1.Update && (req.SubResource == "" || req.SubResource == subresourceEphemeralContainers):
		changed, err := imagesChanged(req)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if !changed {
			return admission.Allowed("images unchanged")
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
		facts.Images = d.Images.Resolve(ctx, pr.pod, cfg, LookupImages(pr.pod, cfg))
	}
	violations := pr.rules.Validate(pr.pod, facts)
	if only != "" {
		violations = slices.DeleteFunc(violations, func(v policy.Violation) bool { return v.Rule != only })
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

func imagesChanged(req admission.Request) (bool, error) {
	var pod, old corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return false, fmt.Errorf("decoding the pod: %w", err)
	}
	if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
		return false, fmt.Errorf("decoding the old pod: %w", err)
	}
	return !slices.Equal(policy.Images(&pod), policy.Images(&old)), nil
}

func podName(pod *corev1.Pod) string {
	if pod.Name == "" && pod.GenerateName != "" {
		return pod.GenerateName + "*"
	}
	return pod.Name
}
