package policy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxResources refuses containers and pods larger than the maximum.
//
// Reads spec.{containers,initContainers}[*].resources and spec.resources.
// Like a LimitRange max, a container with no limit for a capped resource is
// refused, since it could use the whole node: default-resources fills
// limits first. The pod total is counted the way the scheduler counts it:
// app containers and sidecars summed, against the largest init container.
func maxResources(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.MaxResources
	var out []Violation
	for _, ref := range containers(pod) {
		subject := fmt.Sprintf("container %q", ref.c.Name)
		out = append(out, checkMax(subject, ref.c.Resources, cfg.Container, ref.path.Child("resources"), "per container")...)
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
		if pr := pod.Spec.Resources; pr != nil && (hasResource(pr.Requests, name) || hasResource(pr.Limits, name)) {
			out = append(out, checkMax("pod", *pr, max, field.NewPath("spec", "resources"), "per pod")...)
			continue
		}
		out = append(out, checkMax("pod", total, max, field.NewPath("spec", "containers[*]", "resources"), "per pod (all containers together)")...)
	}
	return out
}

func hasResource(list corev1.ResourceList, name corev1.ResourceName) bool {
	_, ok := list[name]
	return ok
}

func checkMax(subject string, res corev1.ResourceRequirements, max corev1.ResourceList, path *field.Path, per string) []Violation {
	var out []Violation
	for _, name := range sortedKeys(max) {
		m := max[name]
		fix := fmt.Sprintf("set container_resources to at most %s: %s, or ask your platform team for a larger maximum", name, m.String())
		lim, hasLim := res.Limits[name]
		switch {
		case !hasLim:
			out = append(out, Violation{Subject: subject, Path: path.Child("limits").Key(string(name)).String(),
				Message: fmt.Sprintf("no %s limit is set, so it could use more than the maximum %s %s", name, m.String(), per),
				Fix:     fmt.Sprintf("set a %s limit of at most %s in container_resources", name, m.String())})
		case lim.Cmp(m) > 0:
			out = append(out, Violation{Subject: subject, Path: path.Child("limits").Key(string(name)).String(),
				Message: fmt.Sprintf("%s limit %s exceeds the maximum %s %s", name, lim.String(), m.String(), per), Fix: fix})
			continue
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
