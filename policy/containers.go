package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// containerRef is a container with the field path DAG authors see in
// messages.
type containerRef struct {
	c    *corev1.Container
	path *field.Path
}

// containers lists the app containers, then the init containers.
// Ephemeral containers are added by `kubectl debug` through their own
// subresource and have no resources to manage.
func containers(pod *corev1.Pod) []containerRef {
	refs := make([]containerRef, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for i := range pod.Spec.Containers {
		refs = append(refs, containerRef{&pod.Spec.Containers[i], field.NewPath("spec", "containers").Index(i)})
	}
	for i := range pod.Spec.InitContainers {
		refs = append(refs, containerRef{&pod.Spec.InitContainers[i], field.NewPath("spec", "initContainers").Index(i)})
	}
	return refs
}

// images lists every image reference in the pod once, in pod order.
func images(pod *corev1.Pod) []imageRef {
	var refs []imageRef
	seen := map[string]bool{}
	add := func(image string, path *field.Path) {
		if !seen[image] {
			seen[image] = true
			refs = append(refs, imageRef{image, path})
		}
	}
	for _, c := range containers(pod) {
		add(c.c.Image, c.path.Child("image"))
	}
	for i, c := range pod.Spec.EphemeralContainers {
		add(c.Image, field.NewPath("spec", "ephemeralContainers").Index(i).Child("image"))
	}
	return refs
}

type imageRef struct {
	image string
	path  *field.Path
}

// AddedImages maps each image pod has and old had nowhere to the field
// path violations about it name: what an update brings in.
func AddedImages(pod, old *corev1.Pod) map[string]string {
	before := map[string]bool{}
	for _, r := range images(old) {
		before[r.image] = true
	}
	added := map[string]string{}
	for _, r := range images(pod) {
		if !before[r.image] {
			added[r.image] = r.path.String()
		}
	}
	return added
}

// Images lists every distinct image reference in a pod, for the caller that
// looks up image facts.
func Images(pod *corev1.Pod) []string {
	refs := images(pod)
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.image
	}
	return out
}

// UntrustedImages lists the images of a pod to look up: each distinct
// image the rule does not trust by name.
func UntrustedImages(pod *corev1.Pod, cfg ImageArchitectureConfig) []string {
	return slices.DeleteFunc(Images(pod), cfg.Trusted)
}

// sizedAtPodLevel reports whether the pod's pod-level resources
// (spec.resources, Kubernetes 1.34+) name a resource, in their requests or
// limits.
func sizedAtPodLevel(pod *corev1.Pod, name corev1.ResourceName) bool {
	pr := pod.Spec.Resources
	return pr != nil && (hasResource(pr.Requests, name) || hasResource(pr.Limits, name))
}
