package policy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// RequestsEqualLimits is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const RequestsEqualLimits RuleID = "requests-equal-limits"

// RequestsEqualLimitsSpec configures the requests-equal-limits rule.
type RequestsEqualLimitsSpec struct {
	Mode      Mode                  `json:"mode,omitempty"`
	Resources []corev1.ResourceName `json:"resources,omitempty"`
}

// RequestsEqualLimitsConfig is the compiled, typed requestsEqualLimits section.
type RequestsEqualLimitsConfig struct {
	Mode      Mode
	Resources []corev1.ResourceName
}

// requestsEqualLimits raises each configured resource's request to its
// limit, giving Guaranteed QoS when every resource is covered.
//
// Reads and writes spec.{containers,initContainers}[*].resources.requests
// and spec.resources.requests. It only raises: a container without a limit
// keeps its request. A resource the pod sizes at pod level is raised there
// only: the pod's QoS class then comes from spec.resources, and a container
// request raised to its limit could exceed the pod-level request, which the
// API server refuses.
func requestsEqualLimits(pod *corev1.Pod, in *input) []Change {
	var changes []Change
	raise := func(res *corev1.ResourceRequirements, name corev1.ResourceName, path *field.Path) {
		lim, ok := res.Limits[name]
		if !ok {
			return
		}
		if req, ok := res.Requests[name]; ok && req.Cmp(lim) >= 0 {
			return
		}
		if res.Requests == nil {
			res.Requests = corev1.ResourceList{}
		}
		res.Requests[name] = lim
		changes = append(changes, Change{Path: path.Child("requests").Key(string(name)).String(), Value: lim.String()})
	}
	for _, ref := range containers(pod) {
		for _, name := range in.rules.RequestsEqualLimits.Resources {
			if !sizedAtPodLevel(pod, name) {
				raise(&ref.c.Resources, name, ref.path.Child("resources"))
			}
		}
	}
	if pod.Spec.Resources != nil {
		for _, name := range in.rules.RequestsEqualLimits.Resources {
			raise(pod.Spec.Resources, name, field.NewPath("spec", "resources"))
		}
	}
	return changes
}

func compileRequestsEqualLimits(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("requestsEqualLimits")
	rs.RequestsEqualLimits = RequestsEqualLimitsConfig{
		Mode:      c.mode(spec.RequestsEqualLimits.Mode, p.Child("mode")),
		Resources: spec.RequestsEqualLimits.Resources,
	}
	for i, r := range spec.RequestsEqualLimits.Resources {
		c.resourceName(r, p.Child("resources").Index(i))
	}
}
