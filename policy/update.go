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
// containers included), its tolerations (only added), and its resources
// through the resize subresource. Only what an update brings in is
// checked; the rest was checked when the pod was created, so that a
// registry failing for an old image does not block kubectl debug.
type Update struct {
	old    *corev1.Pod
	resize bool
	// images maps each image the update brings in to its field path.
	images      map[string]string
	tolerations bool
}

// NewUpdate says what an update of old into pod, through subresource,
// brings in. Any other subresource brings nothing kpoguard checks.
func NewUpdate(subresource string, pod, old *corev1.Pod) Update {
	switch subresource {
	case SubresourceResize:
		return Update{old: old, resize: true}
	case "", SubresourceEphemeralContainers:
		return Update{old: old, images: AddedImages(pod, old),
			tolerations: !equality.Semantic.DeepEqual(pod.Spec.Tolerations, old.Spec.Tolerations)}
	}
	return Update{old: old}
}

// Empty reports whether the update brings in nothing the rules check.
func (u Update) Empty() bool { return !u.resize && len(u.images) == 0 && !u.tolerations }

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
// and added tolerations against node-pool.
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
	if u.tolerations {
		out = append(out, rs.AddedTolerations(pod, u.old)...)
	}
	return out
}

// AddedTolerations refuses tolerations an update adds to a task pod. The
// API server lets any pod gain tolerations, and one could let a pending
// task onto another pool's tainted nodes; KPO adds none after creation.
func (rs *RuleSet) AddedTolerations(pod, old *corev1.Pod) []Violation {
	mode := rs.NodePool.Mode
	if mode == Off {
		return nil
	}
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
	return out
}
