package policy

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DefaultResources is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const DefaultResources RuleID = "default-resources"

// DefaultResourcesSpec configures the default-resources rule.
type DefaultResourcesSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// Requests and Limits are the namespace's default pod size.
	ResourcesSpec `json:",inline"`
	// Containers gives other defaults to containers by name.
	Containers map[string]ResourcesSpec `json:"containers,omitempty"`
}

// DefaultResourcesConfig is the compiled, typed defaultResources section.
type DefaultResourcesConfig struct {
	Mode       Mode
	Default    corev1.ResourceRequirements
	Containers map[string]corev1.ResourceRequirements
}

// defaultResources gives every container and init container the requests
// and limits it leaves unset, from the namespace's default pod size or the
// container's own entry (KPO's xcom sidecar has a small built-in one).
//
// Reads and writes spec.{containers,initContainers}[*].resources. Only unset
// values are filled, so running it twice changes nothing. It never leaves a
// request above its limit: a request above the default limit raises the
// limit to the request, and a container that set only a limit gets a
// request equal to it, as the API server's defaulting would. An extended
// resource (nvidia.com/gpu) requested without a limit gets a limit equal
// to the request: the API server refuses it otherwise, and the Kubernetes
// Python client sends unset ones as null, which decodes to a request of 0.
func defaultResources(pod *corev1.Pod, in *input) []Change {
	cfg := in.rules.DefaultResources
	var changes []Change
	for _, ref := range containers(pod) {
		def, ok := cfg.Containers[ref.c.Name]
		if !ok {
			def = cfg.Default
		}
		changes = append(changes, fillResources(&ref.c.Resources, withoutPodLevel(def, pod), ref.path.Child("resources"))...)
	}
	return changes
}

// withoutPodLevel drops from the defaults the resources the pod sizes at
// pod level (spec.resources): container defaults could exceed those, and
// the API server refuses containers above their pod's limit.
func withoutPodLevel(def corev1.ResourceRequirements, pod *corev1.Pod) corev1.ResourceRequirements {
	pr := pod.Spec.Resources
	if pr == nil || (len(pr.Requests) == 0 && len(pr.Limits) == 0) {
		return def
	}
	keep := func(list corev1.ResourceList) corev1.ResourceList {
		out := corev1.ResourceList{}
		for name, q := range list {
			if !sizedAtPodLevel(pod, name) {
				out[name] = q
			}
		}
		return out
	}
	return corev1.ResourceRequirements{Requests: keep(def.Requests), Limits: keep(def.Limits)}
}

func fillResources(res *corev1.ResourceRequirements, def corev1.ResourceRequirements, path *field.Path) []Change {
	var changes []Change
	set := func(list *corev1.ResourceList, kind string, name corev1.ResourceName, q resource.Quantity) {
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		changes = append(changes, Change{Path: path.Child(kind).Key(string(name)).String(), Value: q.String()})
	}
	for _, name := range sortedKeys(res.Requests) {
		if _, hasLim := res.Limits[name]; isExtended(name) && !hasLim {
			set(&res.Limits, "limits", name, res.Requests[name])
		}
	}
	for _, name := range resourceNames(def.Requests, def.Limits) {
		req, hasReq := res.Requests[name]
		lim, hasLim := res.Limits[name]
		ownLimit := hasLim
		if dLim, ok := def.Limits[name]; ok && !hasLim {
			lim, hasLim = dLim, true
			if hasReq && req.Cmp(dLim) > 0 {
				lim = req
			}
			set(&res.Limits, "limits", name, lim)
		}
		if hasReq {
			continue
		}
		dReq, hasDReq := def.Requests[name]
		switch {
		case hasLim && (ownLimit || !hasDReq || dReq.Cmp(lim) > 0):
			set(&res.Requests, "requests", name, lim)
		case hasDReq:
			set(&res.Requests, "requests", name, dReq)
		}
	}
	return changes
}

// isExtended reports whether a resource is an extended resource, such as
// nvidia.com/gpu, which cannot be overcommitted.
func isExtended(name corev1.ResourceName) bool {
	s := string(name)
	return strings.Contains(s, "/") && !strings.HasPrefix(s, corev1.ResourceDefaultNamespacePrefix) &&
		!strings.HasPrefix(s, corev1.ResourceRequestsHugePagesPrefix)
}

// resourceNames returns the names in any of the lists, sorted.
func resourceNames(lists ...corev1.ResourceList) []corev1.ResourceName {
	union := map[corev1.ResourceName]bool{}
	for _, l := range lists {
		for name := range l {
			union[name] = true
		}
	}
	return sortedKeys(union)
}

func compileDefaultResources(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("defaultResources")
	dr := spec.DefaultResources
	rs.DefaultResources = DefaultResourcesConfig{
		Mode:       c.mode(dr.Mode, p.Child("mode")),
		Default:    c.requirements(dr.ResourcesSpec, p),
		Containers: map[string]corev1.ResourceRequirements{},
	}
	for _, name := range sortedKeys(dr.Containers) {
		rs.DefaultResources.Containers[name] = c.requirements(dr.Containers[name], p.Child("containers").Key(name))
	}
}
