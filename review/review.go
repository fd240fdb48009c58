// Package review is kpoguard's one admission pipeline: a decoded pod
// request in, its review out. Both webhooks and `kpoguard check` call
// Review; it holds no HTTP types, and its only I/O is through the
// resolvers its caller passes.
package review

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kpoguard/kpoguard/policy"
)

// Operation is what the request does to the pod.
type Operation string

const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
)

// Stage is the part of the review a caller asks for.
type Stage uint8

const (
	// Mutate: the mutating rules' changes and the patch (the mutating webhook).
	Mutate Stage = 1 << iota
	// Validate: the validating rules' violations (the validating webhook).
	Validate
	// Full: mutate, then validate the mutated pod, as the API server calls
	// the two webhooks in turn (kpoguard check).
	Full = Mutate | Validate
)

// Request is a decoded admission request on a pod.
type Request struct {
	Operation Operation
	// SubResource is "", policy.SubresourceResize or
	// policy.SubresourceEphemeralContainers.
	SubResource string
	Namespace   string
	User        authenticationv1.UserInfo
	Pod         *corev1.Pod
	// Raw is the pod as it was sent: the patch applies to it.
	Raw []byte
	// OldPod is the pod before an update.
	OldPod *corev1.Pod
	// AssumeTaskPod reviews a pod the task-pod selector does not select,
	// with a note: KPO's dry_run() output lacks the labels it adds at run
	// time.
	AssumeTaskPod bool
}

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

// ParentResolver finds the worker that launched a pod, for policies that
// follow it (nodePool.parent).
type ParentResolver interface {
	Parent(ctx context.Context, req *Request, np policy.NodePoolConfig) *policy.Parent
}

// NamespaceLabels returns a namespace's labels, for overrides that select
// namespaces by label.
type NamespaceLabels interface {
	Labels(ctx context.Context, namespace string) (map[string]string, error)
}

// Resolvers are how a review learns what the pod alone does not say. A nil
// resolver means that fact is not looked up.
type Resolvers struct {
	// Namespaces is needed only when an override selects by label.
	Namespaces NamespaceLabels
	// Images: nil, and image-architecture checks only nodeSelectors.
	Images ImageResolver
	// Parents: nil, and the queue label or the default queue decides.
	Parents ParentResolver
}

// Decision is how a review ends; its text is the metric label.
type Decision string

const (
	Allowed Decision = "allowed"
	// Mutated: the rules changed the pod.
	Mutated Decision = "mutated"
	Warned  Decision = "warned"
	Denied  Decision = "denied"
	Skipped Decision = "skipped"
	Error   Decision = "error"
)

// Decisions lists every decision.
var Decisions = []Decision{Allowed, Mutated, Warned, Denied, Skipped, Error}

// Errors a review can end with, besides kpoguard's own failures.
var (
	// ErrInvalidPod: the request's pod cannot be reviewed as sent.
	ErrInvalidPod = errors.New("invalid pod")
	// ErrNoPolicy: no policy has loaded yet.
	ErrNoPolicy = errors.New("no valid policy loaded yet")

	errNoNamespaceLabels = errors.New("the policy selects namespaces by label, but kpoguard runs without API access to read them")
)

// Result is a review.
type Result struct {
	Decision Decision
	// Reason says why a review was skipped or allowed without a look.
	Reason string
	// Err is why the review failed, with Decision Error; it wraps
	// ErrInvalidPod or ErrNoPolicy where one of them is the cause.
	Err error
	// Note is for the person reading a check report.
	Note string
	// Pod is the pod after the mutating rules.
	Pod        *corev1.Pod
	Changes    []policy.Change
	Violations []policy.Violation
	// Patch turns Request.Raw into Pod.
	Patch []jsonpatch.Operation
	// Message is the denial a DAG author reads.
	Message          string
	Warnings         []string
	AuditAnnotations map[string]string
	// Images are the registries' answers for the images looked up.
	Images map[string]policy.ImageFacts
	// ParentConflict: the pod asked for another node pool than its
	// launching worker's.
	ParentConflict bool
}

// MutatesOnlyCreates is the reason the mutating stage gives every request
// but a pod's create.
const MutatesOnlyCreates = "kpoguard mutates pods only on create"

// updateSubresources are those through which a pod's checked fields
// change; "" is the pod itself.
var updateSubresources = []string{"", policy.SubresourceResize, policy.SubresourceEphemeralContainers}

// Review runs a pod request through the policy, for one stage or both.
func Review(ctx context.Context, p *policy.Policy, req Request, stage Stage, r Resolvers) Result {
	var update *policy.Update
	switch {
	case req.Operation == Create && req.SubResource == "":
	case stage == Mutate:
		return Result{Decision: Allowed, Reason: MutatesOnlyCreates}
	case req.Operation == Update && req.OldPod != nil && slices.Contains(updateSubresources, req.SubResource):
		u := policy.NewUpdate(req.SubResource, req.Pod, req.OldPod)
		update = &u
	default:
		return Result{Decision: Allowed, Reason: "kpoguard validates pods on create, image and placement changes and resizes"}
	}
	if err := policy.CheckQuantities(req.Pod); err != nil {
		return failed(fmt.Errorf("%w: %w", ErrInvalidPod, err))
	}
	if p == nil {
		return failed(ErrNoPolicy)
	}
	var res Result
	switch reason := skips(p, req); reason {
	case "":
	case policy.SkipNotTaskPod:
		if !req.AssumeTaskPod {
			return Result{Decision: Skipped, Reason: reason}
		}
		res.Note = "the pod does not match the policy's taskPodSelector; checked as a task pod anyway (KPO adds its labels at run time)"
	default:
		return Result{Decision: Skipped, Reason: reason}
	}
	if update != nil {
		if v := p.LeavesScope(req.OldPod, req.Pod); v != nil {
			res.Pod, res.Violations = req.Pod, []policy.Violation{*v}
			res.Message = policy.DenialMessage(PodName(req.Pod), res.Violations)
			res.Decision = Denied
			return res
		}
		if update.Empty() {
			return Result{Decision: Allowed, Reason: "no new images, tolerations or placement"}
		}
	}
	rules, err := rulesFor(ctx, p, req.Namespace, r.Namespaces)
	if err != nil {
		return failed(err)
	}

	facts := policy.Facts{}
	np := rules.NodePool
	if update == nil && r.Parents != nil && np.Mode != policy.Off && np.Parent.Source != policy.ParentOff {
		facts.Parent = r.Parents.Parent(ctx, &req, np)
	}
	res.Pod = req.Pod
	if stage&Mutate != 0 {
		if err := mutate(&res, req, rules, facts, p.Hash()); err != nil {
			return failed(err)
		}
	}
	if stage&Validate != 0 {
		validate(ctx, &res, rules, facts, update, r.Images)
	}
	res.Decision = decide(&res)
	return res
}

// skips says why the policy does not apply to the request's pod. An
// update that drops the task label is still a task pod's update: its old
// labels put it in scope.
func skips(p *policy.Policy, req Request) string {
	who := policy.Requester{Username: req.User.Username, Groups: req.User.Groups}
	reason := p.Skips(req.Namespace, req.Pod.Labels, who)
	if reason == policy.SkipNotTaskPod && req.OldPod != nil {
		reason = p.Skips(req.Namespace, req.OldPod.Labels, who)
	}
	return reason
}

// rulesFor returns the rules in force in a namespace, reading its labels
// only when an override selects by them.
func rulesFor(ctx context.Context, p *policy.Policy, namespace string, namespaces NamespaceLabels) (*policy.RuleSet, error) {
	ns := policy.Namespace{Name: namespace}
	if p.UsesNamespaceLabels() {
		if namespaces == nil {
			return nil, errNoNamespaceLabels
		}
		labels, err := namespaces.Labels(ctx, namespace)
		if err != nil {
			return nil, fmt.Errorf("reading namespace %q: %w", namespace, err)
		}
		ns.Labels = labels
	}
	return p.RulesFor(ns)
}

// mutate applies the mutating rules to a copy of the pod, records them on
// it, and makes the patch.
func mutate(res *Result, req Request, rules *policy.RuleSet, facts policy.Facts, hash string) error {
	res.ParentConflict = rules.ParentConflict(req.Pod, facts)
	mutated := req.Pod.DeepCopy()
	res.Changes = rules.Mutate(mutated, facts)
	Annotate(mutated, policy.Applied(res.Changes), hash)
	patch, err := PodPatch(req.Raw, req.Pod, mutated)
	if err != nil {
		return err
	}
	res.Pod, res.Patch = mutated, patch
	for _, c := range res.Changes {
		switch c.Mode {
		case policy.Warn:
			res.Warnings = append(res.Warnings, fmt.Sprintf("kpoguard [%s] would set %s=%s (warn mode: not applied)", c.Rule, c.Path, c.Value))
		case policy.Audit:
			res.audit(c.Rule, "would set "+c.Path+"="+c.Value)
		}
	}
	return nil
}

// validate looks up the images to check and runs the validating rules:
// all of them at create, those an update calls for otherwise.
func validate(ctx context.Context, res *Result, rules *policy.RuleSet, facts policy.Facts, update *policy.Update, images ImageResolver) {
	pod := res.Pod
	if cfg := rules.ImageArchitecture; images != nil && cfg.Mode != policy.Off {
		lookups := policy.UntrustedImages(pod, cfg)
		if update != nil {
			lookups = update.Images()
		}
		facts.Images = images.Resolve(ctx, pod, cfg, lookups)
		res.Images = facts.Images
	}
	if update != nil {
		res.Violations = rules.ValidateUpdate(pod, *update, facts)
	} else {
		res.Violations = rules.Validate(pod, facts)
	}
	if denials := policy.Denials(res.Violations); len(denials) > 0 {
		res.Message = policy.DenialMessage(PodName(pod), denials)
	}
	for _, v := range res.Violations {
		switch v.Mode {
		case policy.Warn:
			res.Warnings = append(res.Warnings, "kpoguard "+v.String())
		case policy.Audit:
			res.audit(v.Rule, v.String())
		}
	}
}

// audit adds an audit-mode finding to the API server's audit log entry,
// grouped by rule.
func (res *Result) audit(rule policy.RuleID, text string) {
	if res.AuditAnnotations == nil {
		res.AuditAnnotations = map[string]string{}
	}
	key := string(rule)
	if prev, ok := res.AuditAnnotations[key]; ok {
		text = prev + "; " + text
	}
	res.AuditAnnotations[key] = text
}

// decide says how a review ends. A pod the rules changed is mutated; the
// policy-hash annotation every reviewed pod gets does not count.
func decide(res *Result) Decision {
	switch {
	case res.Message != "":
		return Denied
	case len(policy.Applied(res.Changes)) > 0:
		return Mutated
	case len(res.Warnings) > 0:
		return Warned
	}
	return Allowed
}

func failed(err error) Result { return Result{Decision: Error, Err: err} }

// PodName names a pod in messages, also before the API server generated
// its name.
func PodName(pod *corev1.Pod) string {
	if pod.Name == "" && pod.GenerateName != "" {
		return pod.GenerateName + "*"
	}
	return pod.Name
}
