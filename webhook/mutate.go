package webhook

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
)

// Annotations kpoguard writes on the pods it mutates.
const (
	// AnnotationMutations lists the applied changes, sorted. It is a record
	// for people; kpoguard never reads it to decide anything.
	AnnotationMutations = "kpoguard.io/mutations"
	// AnnotationPolicy is the content hash of the policy that reviewed the pod.
	AnnotationPolicy = "kpoguard.io/policy"
)

// MutatePods serves /mutate-pods.
func (d *Deps) MutatePods() admission.Handler {
	return d.instrumented(hookMutate, d.mutate)
}

func (d *Deps) mutate(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return admission.Allowed("kpoguard mutates pods only on create")
	}
	pr, resp := d.admitPod(ctx, req)
	if resp != nil {
		// The validating webhook enforces what cannot be mutated here, so
		// an internal error lets the pod through unchanged, as the
		// mutating webhook's failurePolicy Ignore would.
		if resp.Result != nil && resp.Result.Code >= http.StatusInternalServerError {
			d.Log.Error(fmt.Errorf("%s", resp.Result.Message), "pod admitted without mutation", "uid", req.UID)
			r := admission.Allowed("")
			r.Result.Reason = reasonFailedOpen
			r.Warnings = []string{"kpoguard could not apply the platform defaults: " + resp.Result.Message}
			return r
		}
		return *resp
	}
	facts := policy.Facts{Parent: d.parentOf(ctx, hookMutate, req, pr)}
	if pr.rules.ParentConflict(pr.pod, facts) {
		// Counted here, on the pod as the DAG wrote it: an override
		// leaves the validating webhook nothing to see.
		d.Metrics.parentResolutions.WithLabelValues(hookMutate, resolutionConflict).Inc()
	}
	mutated := pr.pod.DeepCopy()
	changes := pr.rules.Mutate(mutated, facts)
	d.Metrics.countChanges(changes)
	Annotate(mutated, policy.Applied(changes), pr.policy.Hash())

	out := admission.Allowed("")
	patch, err := PodPatch(req.Object.Raw, pr.pod, mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if len(patch) > 0 {
		out = admission.Patched("", patch...)
	}
	out.AuditAnnotations = auditAnnotations(changes, nil)
	for _, c := range changes {
		if c.Mode == policy.Warn {
			out.Warnings = append(out.Warnings, fmt.Sprintf("kpoguard [%s] would set %s=%s (warn mode: not applied)", c.Rule, c.Path, c.Value))
		}
	}
	return out
}

// Annotate records the applied changes, merged with any a previous
// invocation recorded (reinvocation calls us again on the same pod), and
// the policy's hash.
func Annotate(pod *corev1.Pod, applied []policy.Change, hash string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationPolicy] = hash
	if len(applied) == 0 {
		return
	}
	var entries []string
	if prev := pod.Annotations[AnnotationMutations]; prev != "" {
		entries = strings.Split(prev, "; ")
	}
	for _, c := range applied {
		entries = append(entries, fmt.Sprintf("%s %s=%s", c.Rule, c.Path, c.Value))
	}
	slices.Sort(entries)
	pod.Annotations[AnnotationMutations] = strings.Join(slices.Compact(entries), "; ")
}
