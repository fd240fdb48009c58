package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Subresources through which a running pod changes: in-place resize
// (Kubernetes 1.33+) changes resources; ephemeral containers (kubectl
// debug) bring images.
const (
	SubresourceResize              = "resize"
	SubresourceEphemeralContainers = "ephemeralcontainers"
)

// An Update is a change to a running task pod, and what it brings in to be
// checked. Little of a running pod can change: its images (ephemeral
// containers included), its tolerations (only added), its resources
// through the resize subresource, and, while a scheduling gate holds it,
// its nodeSelector and node affinity (only narrowed) and the gates. Only
// what an update brings in is checked; the rest was checked when the pod
// was created, so that a registry failing for an old image does not block
// kubectl debug.
type Update struct {
	old    *corev1.Pod
	resize bool
	// images maps each image the update brings in to its field path.
	images map[string]string
	// placement: tolerations, nodeSelector or node affinity changed.
	placement bool
	// gates: the scheduling gates changed (lifted, usually).
	gates bool
}

// NewUpdate says what an update of old into pod, through subresource,
// brings in. Any other subresource brings nothing kpoguard checks.
func NewUpdate(subresource string, pod, old *corev1.Pod) Update {
	switch subresource {
	case SubresourceResize:
		return Update{old: old, resize: true}
	case "", SubresourceEphemeralContainers:
		return Update{old: old, images: AddedImages(pod, old), placement: placementChanged(pod, old),
			gates: !equality.Semantic.DeepEqual(pod.Spec.SchedulingGates, old.Spec.SchedulingGates)}
	}
	return Update{old: old}
}

// Empty reports whether the update brings in nothing the rules check.
func (u Update) Empty() bool { return !u.resize && len(u.images) == 0 && !u.placement && !u.gates }

func placementChanged(pod, old *corev1.Pod) bool {
	return !equality.Semantic.DeepEqual(pod.Spec.Tolerations, old.Spec.Tolerations) ||
		!equality.Semantic.DeepEqual(pod.Spec.NodeSelector, old.Spec.NodeSelector) ||
		!equality.Semantic.DeepEqual(nodeAffinity(pod), nodeAffinity(old))
}

func nodeAffinity(pod *corev1.Pod) *corev1.NodeAffinity {
	if pod.Spec.Affinity == nil {
		return nil
	}
	return pod.Spec.Affinity.NodeAffinity
}

// Images lists the images the update brings in, sorted, for lookups.
func (u Update) Images() []string {
	out := make([]string, 0, len(u.images))
	for image := range u.images {
		out = append(out, image)
	}
	slices.Sort(out)
	return out
}

// ValidateUpdate returns the violations of what an update brings in:
// a resize against max-resources, new images against image-architecture,
// and placement changes against node-pool. Lifting a scheduling gate
// brings nothing to refuse: the placement it releases is the one checked.
func (rs *RuleSet) ValidateUpdate(pod *corev1.Pod, u Update, facts Facts) []Violation {
	if u.resize {
		return rs.validate(pod, facts, MaxResources)
	}
	var out []Violation
	if len(u.images) > 0 {
		paths := map[string]bool{}
		for _, p := range u.images {
			paths[p] = true
		}
		out = slices.DeleteFunc(rs.validate(pod, facts, ImageArchitecture), func(v Violation) bool { return !paths[v.Path] })
	}
	if u.placement {
		out = append(out, rs.PlacementChanges(pod, u.old)...)
	}
	return out
}

// PlacementChanges refuses what an update changes in a task pod's
// placement: added tolerations (the API server lets any pod gain them),
// and a nodeSelector or node affinity changed while a scheduling gate
// holds the pod. Its node pool was decided when it was created, and KPO
// changes none of these afterwards.
func (rs *RuleSet) PlacementChanges(pod, old *corev1.Pod) []Violation {
	mode := rs.NodePool.Mode
	if mode == Off {
		return nil
	}
	const decided = "changed in a running task pod, whose node pool was decided when it was created"
	var out []Violation
	for i, t := range pod.Spec.Tolerations {
		if hasToleration(old.Spec.Tolerations, t) {
			continue
		}
		out = append(out, Violation{Rule: NodePool, Mode: mode,
			Subject: "toleration " + describeToleration(t),
			Path:    field.NewPath("spec", "tolerations").Index(i).String(),
			Message: "was added to a running task pod, whose node pool was decided when it was created",
			Fix:     "create a new task pod instead"})
	}
	if !equality.Semantic.DeepEqual(pod.Spec.NodeSelector, old.Spec.NodeSelector) {
		out = append(out, Violation{Rule: NodePool, Mode: mode, Subject: "nodeSelector",
			Path: field.NewPath("spec", "nodeSelector").String(), Message: "was " + decided, Fix: "create a new task pod instead"})
	}
	if !equality.Semantic.DeepEqual(nodeAffinity(pod), nodeAffinity(old)) {
		out = append(out, Violation{Rule: NodePool, Mode: mode, Subject: "node affinity",
			Path: field.NewPath("spec", "affinity", "nodeAffinity").String(), Message: "was " + decided, Fix: "create a new task pod instead"})
	}
	return out
}
