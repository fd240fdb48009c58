package policy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// requestsEqualLimits raises each configured resource's request to its
// limit, giving Guaranteed QoS when every resource is covered.
//
// Reads and writes spec.{containers,initContainers}[*].resources.requests.
// It only raises: a container without a limit keeps its request.
func requestsEqualLimits(pod *corev1.Pod, in *input) []Change {
	var changes []Change
	for _, ref := range containers(pod) {
		res := &ref.c.Resources
		for _, name := range in.rules.RequestsEqualLimits.Resources {
			lim, ok := res.Limits[name]
			if !ok {
				continue
			}
			if req, ok := res.Requests[name]; ok && req.Cmp(lim) >= 0 {
				continue
			}
			if res.Requests == nil {
				res.Requests = corev1.ResourceList{}
			}
			res.Requests[name] = lim
			changes = append(changes, Change{
				Path:  ref.path.Child("resources", "requests").Key(string(name)).String(),
				Value: lim.String(),
			})
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
