package policy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxResources is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const MaxResources RuleID = "max-resources"

// MaxResourcesSpec configures the max-resources rule.
type MaxResourcesSpec struct {
	Mode      Mode            `json:"mode,omitempty"`
	Container ResourceAmounts `json:"container,omitempty"`
	Pod       ResourceAmounts `json:"pod,omitempty"`
}

// MaxResourcesConfig is the compiled, typed maxResources section.
type MaxResourcesConfig struct {
	Mode      Mode
	Container corev1.ResourceList
	Pod       corev1.ResourceList
}

// maxResources refuses containers and pods larger than the maximum.
//
// Reads spec.{containers,initContainers}[*].resources and spec.resources.
// Like a LimitRange max, a container with no limit for a capped resource is
// refused, since it could use the whole node: default-resources fills
// limits first. A pod-level limit (spec.resources.limits) caps the pod's
// cgroup, and so every container in it: a container without a limit of
// its own may use all of it, so that limit is checked against the
// container maximum in its place. The pod total is counted the way the
// scheduler counts it: pod-level resources where the pod sets them, else
// app containers and sidecars summed, against the largest init container.
func maxResources(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.MaxResources
	var podLimits corev1.ResourceList
	if pod.Spec.Resources != nil {
		podLimits = pod.Spec.Resources.Limits
	}
	var out []Violation
	for _, ref := range containers(pod) {
		subject := fmt.Sprintf("container %q", ref.c.Name)
		out = append(out, checkMax(subject, ref.c.Resources, podLimits, cfg.Container, ref.path.Child("resources"), "per container")...)
	}
	if len(cfg.Pod) == 0 {
		return out
	}
	total := corev1.ResourceRequirements{Requests: podTotal(pod, requestsOf), Limits: corev1.ResourceList{}}
	for name := range cfg.Pod {
		if lim, ok := podLimit(pod, name); ok {
			total.Limits[name] = lim
		}
	}
	// Pod-level resources, where the pod sets them, bound the pod instead
	// of its containers' sum.
	for _, name := range sortedKeys(cfg.Pod) {
		max := corev1.ResourceList{name: cfg.Pod[name]}
		if sizedAtPodLevel(pod, name) {
			res := *pod.Spec.Resources
			// With a pod-level request alone, the containers' own limits
			// still bound the pod: from Kubernetes 1.37 the API server
			// sets the pod-level limit from them.
			if lim, ok := total.Limits[name]; ok && !hasResource(res.Limits, name) {
				res.Limits = corev1.ResourceList{name: lim}
			}
			out = append(out, checkMax("pod", res, nil, max, field.NewPath("spec", "resources"), "per pod")...)
			continue
		}
		out = append(out, checkMax("pod", total, nil, max, field.NewPath("spec", "containers[*]", "resources"), "per pod (all containers together)")...)
	}
	return out
}

func hasResource(list corev1.ResourceList, name corev1.ResourceName) bool {
	_, ok := list[name]
	return ok
}

// checkMax checks requests and limits against a maximum. podLimits are the
// pod-level limits that bound a container without a limit of its own (nil
// for the pod itself).
func checkMax(subject string, res corev1.ResourceRequirements, podLimits, max corev1.ResourceList, path *field.Path, per string) []Violation {
	var out []Violation
	for _, name := range sortedKeys(max) {
		m := max[name]
		fix := fmt.Sprintf("set container_resources to at most %s: %s, or ask your platform team for a larger maximum", name, m.String())
		lim, hasLim := res.Limits[name]
		podLim, bounded := podLimits[name]
		switch {
		case hasLim && lim.Cmp(m) > 0:
			out = append(out, Violation{Subject: subject, Path: path.Child("limits").Key(string(name)).String(),
				Message: fmt.Sprintf("%s limit %s exceeds the maximum %s %s", name, lim.String(), m.String(), per), Fix: fix})
			continue
		case hasLim: // within the maximum
		case !bounded:
			out = append(out, Violation{Subject: subject, Path: path.Child("limits").Key(string(name)).String(),
				Message: fmt.Sprintf("no %s limit is set, so it could use more than the maximum %s %s", name, m.String(), per),
				Fix:     fmt.Sprintf("set a %s limit of at most %s in container_resources", name, m.String())})
		case podLim.Cmp(m) > 0:
			out = append(out, Violation{Subject: subject, Path: path.Child("limits").Key(string(name)).String(),
				Message: fmt.Sprintf("no %s limit is set, so it could use all of the pod-level limit %s, more than the maximum %s %s", name, podLim.String(), m.String(), per),
				Fix:     fmt.Sprintf("set a %s limit of at most %s in container_resources, or lower the pod-level limit", name, m.String())})
		}
		if req, ok := res.Requests[name]; ok && req.Cmp(m) > 0 {
			out = append(out, Violation{Subject: subject, Path: path.Child("requests").Key(string(name)).String(),
				Message: fmt.Sprintf("%s request %s exceeds the maximum %s %s", name, req.String(), m.String(), per), Fix: fix})
		}
	}
	return out
}

func requestsOf(c *corev1.Container) corev1.ResourceList { return c.Resources.Requests }
func limitsOf(c *corev1.Container) corev1.ResourceList   { return c.Resources.Limits }

// podTotal sums what the scheduler reserves for a pod: all app containers
// and sidecars (restartable init containers) run together; each ordinary
// init container runs alone beside the sidecars started before it.
func podTotal(pod *corev1.Pod, get func(*corev1.Container) corev1.ResourceList) corev1.ResourceList {
	total := corev1.ResourceList{}
	for i := range pod.Spec.Containers {
		addTo(total, get(&pod.Spec.Containers[i]))
	}
	sidecars := corev1.ResourceList{}
	peakInit := corev1.ResourceList{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		running := corev1.ResourceList{}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addTo(total, get(c))
			addTo(sidecars, get(c))
			addTo(running, sidecars)
		} else {
			addTo(running, get(c))
			addTo(running, sidecars)
		}
		for name, q := range running {
			if cur, ok := peakInit[name]; !ok || q.Cmp(cur) > 0 {
				peakInit[name] = q
			}
		}
	}
	for name, q := range peakInit {
		if cur, ok := total[name]; !ok || q.Cmp(cur) > 0 {
			total[name] = q
		}
	}
	return total
}

// podLimit is the pod's effective limit for one resource; it has none when
// any container lacks that limit.
func podLimit(pod *corev1.Pod, name corev1.ResourceName) (resource.Quantity, bool) {
	for _, ref := range containers(pod) {
		if _, ok := ref.c.Resources.Limits[name]; !ok {
			return resource.Quantity{}, false
		}
	}
	q, ok := podTotal(pod, limitsOf)[name]
	return q, ok
}

func addTo(total, add corev1.ResourceList) {
	for name, q := range add {
		sum := total[name]
		sum.Add(q)
		total[name] = sum
	}
}

func compileMaxResources(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("maxResources")
	rs.MaxResources = MaxResourcesConfig{
		Mode:      c.mode(spec.MaxResources.Mode, p.Child("mode")),
		Container: c.list(spec.MaxResources.Container, p.Child("container")),
		Pod:       c.list(spec.MaxResources.Pod, p.Child("pod")),
	}
	c.defaultsWithinMax(rs.DefaultResources, rs.MaxResources, rules)
}
