package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// Deps are what the pod webhooks read besides the request.
type Deps struct {
	Policies *PolicyStore
	Metrics  *Metrics
	Log      logr.Logger
	// Namespaces is needed only when an override selects by label.
	Namespaces review.NamespaceLabels
	// Images is nil when registry lookups are off.
	Images review.ImageResolver
	// Workers finds the worker that launched a pod, for policies that
	// follow it (nodePool.parent); nil without API access.
	Workers Workers
	// WorkerPods tells the worker guard which pods are workers; nil
	// without API access.
	WorkerPods WorkerPods
	// Decisions says which decisions the pod webhooks log; nil logs
	// those that changed, warned about or refused a pod.
	Decisions *DecisionLog
}

// MutatePods serves /mutate-pods.
func (d *Deps) MutatePods() admission.Handler {
	return d.instrumented(hookMutate, d.reviewer(hookMutate, review.Mutate))
}

// ValidatePods serves /validate-pods.
func (d *Deps) ValidatePods() admission.Handler {
	return d.instrumented(hookValidate, d.reviewer(hookValidate, review.Validate))
}

// handlerFunc is a webhook's handler that says how it decided.
type handlerFunc func(ctx context.Context, req admission.Request) (admission.Response, review.Decision)

// reviewer is a pod webhook: decode, review, respond, and log the
// decision. It is timed here rather than in instrumented, where neither
// the pod nor the review is known.
func (d *Deps) reviewer(hook string, stage review.Stage) handlerFunc {
	return func(ctx context.Context, req admission.Request) (admission.Response, review.Decision) {
		start := time.Now()
		if stage == review.Mutate && (req.Operation != admissionv1.Create || req.SubResource != "") {
			d.logDecision(hook, req, nil, review.Result{Decision: review.Allowed, Reason: review.MutatesOnlyCreates}, "", time.Since(start))
			return admission.Allowed(review.MutatesOnlyCreates), review.Allowed // not worth decoding
		}
		rr, early, decision := d.decode(req)
		if early != nil {
			res := review.Result{Decision: decision, Reason: early.Result.Message}
			if decision == review.Error {
				res = review.Result{Decision: decision, Err: errors.New(early.Result.Message)}
			}
			d.logDecision(hook, req, nil, res, "", time.Since(start))
			return *early, decision
		}
		// The policy is read once, so that the hash logged is that of the
		// policy that decided.
		p := d.Policies.Current()
		res := review.Review(ctx, p, rr, stage, review.Resolvers{
			Namespaces: d.Namespaces, Images: d.Images, Parents: parentResolver{d: d, hook: hook},
		})
		d.Metrics.countChanges(res.Changes)
		d.Metrics.countViolations(res.Violations)
		if res.ParentConflict {
			// Counted on the pod as the DAG wrote it: an override leaves
			// the validating webhook nothing to see.
			d.Metrics.parentResolutions.WithLabelValues(hook, resolutionConflict).Inc()
		}
		resp := d.respond(stage, req, res)
		hash := ""
		if p != nil {
			hash = p.Hash()
		}
		d.logDecision(hook, req, rr.Pod, res, hash, time.Since(start))
		return resp, res.Decision
	}
}

// decode turns an admission request into a review request, decoding each
// object once. A response instead means the request ends here: it is not
// for a pod, or it is malformed.
func (d *Deps) decode(req admission.Request) (review.Request, *admission.Response, review.Decision) {
	end := func(r admission.Response, decision review.Decision) (review.Request, *admission.Response, review.Decision) {
		return review.Request{}, &r, decision
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		d.Log.Info("not a pod; allowed unchanged", "kind", req.Kind.String(), "subResource", req.SubResource, "uid", req.UID)
		return end(admission.Allowed("kpoguard reviews only pods"), review.Allowed)
	}
	rr := review.Request{
		Operation:   review.Operation(req.Operation),
		SubResource: req.SubResource,
		Namespace:   req.Namespace,
		User:        req.UserInfo,
		Raw:         req.Object.Raw,
		Pod:         &corev1.Pod{},
	}
	if err := json.Unmarshal(req.Object.Raw, rr.Pod); err != nil {
		return end(admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err)), review.Error)
	}
	if req.Operation == admissionv1.Update {
		rr.OldPod = &corev1.Pod{}
		if err := json.Unmarshal(req.OldObject.Raw, rr.OldPod); err != nil {
			return end(admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old pod: %w", err)), review.Error)
		}
	}
	for _, pod := range []*corev1.Pod{rr.Pod, rr.OldPod} {
		if err := inRequestNamespace(pod, req.Namespace); err != nil {
			return end(admission.Errored(http.StatusBadRequest, err), review.Error)
		}
	}
	return rr, nil, ""
}

// inRequestNamespace puts a pod without a namespace in the request's, and
// refuses one of another namespace. The API server never sends such a pod,
// but anything that reaches kpoguard's port could, to have lookups made
// with another namespace's credentials (pull secrets): every lookup reads
// the namespace from the request or, now the same, from the pod.
func inRequestNamespace(pod *corev1.Pod, namespace string) error {
	switch {
	case pod == nil:
	case pod.Namespace == "":
		pod.Namespace = namespace
	case pod.Namespace != namespace:
		return fmt.Errorf("the pod is of namespace %q, but the request is for namespace %q", pod.Namespace, namespace)
	}
	return nil
}

// reasonFailedOpen marks a mutating response that admitted the pod
// unchanged because kpoguard failed.
const reasonFailedOpen metav1.StatusReason = "KpoguardFailedOpen"

// respond turns a review into the webhook's answer.
func (d *Deps) respond(stage review.Stage, req admission.Request, res review.Result) admission.Response {
	var out admission.Response
	switch res.Decision {
	case review.Error:
		code := int32(http.StatusInternalServerError)
		switch {
		case errors.Is(res.Err, review.ErrInvalidPod):
			code = http.StatusBadRequest
		case errors.Is(res.Err, review.ErrNoPolicy):
			code = http.StatusServiceUnavailable
		}
		if stage == review.Mutate && code != http.StatusBadRequest {
			// The validating webhook enforces what cannot be mutated
			// here, so kpoguard failing lets the pod through unchanged,
			// as the mutating webhook's failurePolicy Ignore would.
			d.Log.Error(res.Err, "pod admitted without mutation", "uid", req.UID)
			out = admission.Allowed("")
			out.Result.Reason = reasonFailedOpen
			out.Warnings = []string{"kpoguard could not apply the platform defaults: " + res.Err.Error()}
			return out
		}
		return admission.Errored(code, res.Err)
	case review.Denied:
		out = admission.Denied(res.Message)
	case review.Skipped:
		out = admission.Allowed(res.Reason)
	default:
		// Also without a change: the policy-hash annotation.
		out = admission.Patched(res.Reason, res.Patch...)
	}
	out.Warnings = res.Warnings
	out.AuditAnnotations = res.AuditAnnotations
	return out
}

// parentResolver finds the launching worker for one webhook, and counts
// how.
type parentResolver struct {
	d    *Deps
	hook string
}

func (p parentResolver) Parent(ctx context.Context, req *review.Request, np policy.NodePoolConfig) *policy.Parent {
	parent, result := p.d.resolveParent(ctx, req.User, req.Namespace, req.Pod, np)
	p.d.Metrics.parentResolutions.WithLabelValues(p.hook, result).Inc()
	return parent
}

// instrumented times a handler, counts its decision and turns a panic
// into a 500 response instead of a dropped connection.
func (d *Deps) instrumented(hook string, h handlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) (resp admission.Response) {
		start := time.Now()
		decision := review.Error
		defer func() {
			if r := recover(); r != nil {
				d.Metrics.panics.WithLabelValues(hook).Inc()
				d.Log.Error(fmt.Errorf("panic: %v", r), "recovered from a panic", "webhook", hook, "uid", req.UID, "stack", string(debug.Stack()))
				resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("kpoguard failed internally; see its logs for request %s", req.UID))
			}
			d.Metrics.admissions.WithLabelValues(hook, string(decision)).Inc()
			d.Metrics.duration.WithLabelValues(hook).Observe(time.Since(start).Seconds())
		}()
		resp, decision = h(ctx, req)
		return resp
	}
}
