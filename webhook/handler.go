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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
)

// ImageResolver looks up the platforms of a pod's images, as the rule's
// config says (timeout, registries, credentials). It returns an entry for
// every image, with Err set where a lookup failed, and must finish within
// ctx's deadline.
type ImageResolver interface {
	Resolve(ctx context.Context, pod *corev1.Pod, cfg policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts
}

// ImageResolverFunc adapts a function to ImageResolver.
type ImageResolverFunc func(ctx context.Context, pod *corev1.Pod, cfg policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts

func (f ImageResolverFunc) Resolve(ctx context.Context, pod *corev1.Pod, cfg policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts {
	return f(ctx, pod, cfg, images)
}

// NamespaceLabels returns a namespace's labels, for overrides that select
// namespaces by label.
type NamespaceLabels interface {
	Labels(ctx context.Context, namespace string) (map[string]string, error)
}

// Deps are what the pod webhooks read besides the request.
type Deps struct {
	Policies *PolicyStore
	Metrics  *Metrics
	Log      logr.Logger
	// Namespaces is needed only when an override selects by label.
	Namespaces NamespaceLabels
	// Images is nil when registry lookups are off.
	Images ImageResolver
	// Workers finds the worker that launched a pod, for policies that
	// follow it (nodePool.parent); nil without API access.
	Workers Workers
}

var errNoNamespaceLabels = errors.New("the policy selects namespaces by label, but kpoguard runs without API access to read them")

// Subresources that change a running pod: in-place resize (Kubernetes
// 1.33+) changes resources, so max-resources checks it; ephemeral
// containers (kubectl debug) bring images, so image-architecture does.
const (
	subresourceResize              = "resize"
	subresourceEphemeralContainers = "ephemeralcontainers"
)

// podRequest is a decoded pod admission request in the policy's scope.
type podRequest struct {
	pod    *corev1.Pod
	policy *policy.Policy
	rules  *policy.RuleSet
}

// admitPod decodes the pod and resolves the rules in force for it. A nil
// podRequest with a response means the request ends there: it is not a pod,
// it is out of scope, or it is malformed.
func (d *Deps) admitPod(ctx context.Context, req admission.Request) (*podRequest, *admission.Response) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || (req.SubResource != "" && req.SubResource != subresourceResize && req.SubResource != subresourceEphemeralContainers) {
		d.Log.Info("not a pod; allowed unchanged", "kind", req.Kind.String(), "subResource", req.SubResource, "uid", req.UID)
		r := admission.Allowed("kpoguard reviews only pods")
		return nil, &r
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		r := admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
		return nil, &r
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if err := policy.CheckQuantities(pod); err != nil {
		r := admission.Errored(http.StatusBadRequest, err)
		return nil, &r
	}
	p := d.Policies.Current()
	if p == nil {
		r := admission.Errored(http.StatusServiceUnavailable, errNoPolicy)
		return nil, &r
	}
	who := policy.Requester{Username: req.UserInfo.Username, Groups: req.UserInfo.Groups}
	reason := p.Skips(req.Namespace, pod.Labels, who)
	if reason == policy.SkipNotTaskPod && len(req.OldObject.Raw) > 0 {
		// An update that drops the task label is still a task pod's
		// update: its old labels put it in scope.
		var old corev1.Pod
		if err := json.Unmarshal(req.OldObject.Raw, &old); err == nil {
			reason = p.Skips(req.Namespace, old.Labels, who)
		}
	}
	if reason != "" {
		r := admission.Allowed(reason)
		return nil, &r
	}
	ns := policy.Namespace{Name: req.Namespace}
	if p.UsesNamespaceLabels() {
		if d.Namespaces == nil {
			r := admission.Errored(http.StatusInternalServerError, errNoNamespaceLabels)
			return nil, &r
		}
		labels, err := d.Namespaces.Labels(ctx, req.Namespace)
		if err != nil {
			r := admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading namespace %q: %w", req.Namespace, err))
			return nil, &r
		}
		ns.Labels = labels
	}
	rules, err := p.RulesFor(ns)
	if err != nil {
		r := admission.Errored(http.StatusInternalServerError, err)
		return nil, &r
	}
	return &podRequest{pod: pod, policy: p, rules: rules}, nil
}

// parentOf resolves the launching worker when the rules in force follow
// it, and counts how.
func (d *Deps) parentOf(ctx context.Context, hook string, req admission.Request, pr *podRequest) *policy.Parent {
	np := pr.rules.NodePool
	if np.Mode == policy.Off || np.Parent.Source == policy.ParentOff {
		return nil
	}
	p, result := d.resolveParent(ctx, req.UserInfo, req.Namespace, pr.pod, np)
	d.Metrics.parentResolutions.WithLabelValues(hook, result).Inc()
	return p
}

// instrumented times a handler, counts its decision and turns a panic
// into a 500 response instead of a dropped connection.
func (d *Deps) instrumented(hook string, h admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) (resp admission.Response) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				d.Metrics.panics.WithLabelValues(hook).Inc()
				d.Log.Error(fmt.Errorf("panic: %v", r), "recovered from a panic", "webhook", hook, "uid", req.UID, "stack", string(debug.Stack()))
				resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("kpoguard failed internally; see its logs for request %s", req.UID))
			}
			d.Metrics.admissions.WithLabelValues(hook, decisionOf(resp)).Inc()
			d.Metrics.duration.WithLabelValues(hook).Observe(time.Since(start).Seconds())
		}()
		return h(ctx, req)
	}
}

// reasonFailedOpen marks a mutating response that admitted the pod
// unchanged because kpoguard failed: it counts as an error.
const reasonFailedOpen metav1.StatusReason = "KpoguardFailedOpen"

func decisionOf(resp admission.Response) string {
	switch {
	case resp.Result != nil && (resp.Result.Code >= 500 || resp.Result.Reason == reasonFailedOpen):
		return decisionError
	case !resp.Allowed && resp.Result != nil && resp.Result.Code == http.StatusBadRequest:
		return decisionError
	case !resp.Allowed:
		return decisionDenied
	case len(resp.Patches) > 0:
		return decisionMutated
	case resp.Result != nil && isSkipReason(resp.Result.Message):
		return decisionSkipped
	case len(resp.Warnings) > 0:
		return decisionWarned
	}
	return decisionAllowed
}

func isSkipReason(msg string) bool {
	switch msg {
	case policy.SkipExemptNamespace, policy.SkipExemptUser, policy.SkipNotTaskPod:
		return true
	}
	return false
}

// auditAnnotations groups findings of audit-mode rules by rule ID, for the
// API server's audit log.
func auditAnnotations(changes []policy.Change, violations []policy.Violation) map[string]string {
	out := map[string]string{}
	add := func(rule policy.RuleID, text string) {
		key := string(rule)
		if prev, ok := out[key]; ok {
			text = prev + "; " + text
		}
		out[key] = text
	}
	for _, c := range changes {
		if c.Mode == policy.Audit {
			add(c.Rule, "would set "+c.Path+"="+c.Value)
		}
	}
	for _, v := range violations {
		if v.Mode == policy.Audit {
			add(v.Rule, v.String())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
