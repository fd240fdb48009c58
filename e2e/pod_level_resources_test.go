package e2e

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// podLevelTask is a task pod sized at pod level (spec.resources, on by
// default from Kubernetes 1.34) whose container sets no limits.
func podLevelTask(name, cpuLimit string) *corev1.Pod {
	pod := sandbox.TaskPod(name)
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}
	pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpuLimit), corev1.ResourceMemory: resource.MustParse("4Gi"),
	}}
	return pod
}

// The pod-level limit bounds the container: examples/policy.yaml's
// maximum admits it, default-resources adds only what the pod level cannot
// size, and requests-equal-limits raises the pod-level requests.
func TestPodLevelResourcesBoundContainers(t *testing.T) {
	pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), podLevelTask("pod-level", "2"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, pod.Name) })
	base := pod.Spec.Containers[0].Resources
	expectFields(t, []field{
		{"container limits", fmtResources(base.Limits), "ephemeral-storage=2Gi"},
		{"container requests", fmtResources(base.Requests), "cpu=500m,ephemeral-storage=2Gi"},
		{"pod-level limits", fmtResources(pod.Spec.Resources.Limits), "cpu=2,memory=4Gi"},
		{"pod-level requests", fmtResources(pod.Spec.Resources.Requests), "cpu=2,memory=4Gi"},
		{"QoS class", string(pod.Status.QOSClass), string(corev1.PodQOSGuaranteed)},
	})
	if !strings.Contains(pod.Annotations["kpoguard.io/mutations"], "requests-equal-limits spec.resources.requests[cpu]=2") {
		t.Errorf("mutations annotation = %q", pod.Annotations["kpoguard.io/mutations"])
	}
}

// A pod-level limit above the maximum is refused per pod, and per
// container for the container that could use all of it.
func TestPodLevelLimitAboveMaximumRefused(t *testing.T) {
	_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), podLevelTask("pod-level-large", "8"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create: %v, want Forbidden", err)
	}
	for _, want := range []string{
		`pod "pod-level-large" is forbidden by kpoguard: 2 violations:`,
		`[max-resources] container "base" (spec.containers[0].resources.limits[cpu]): no cpu limit is set, so it could use all of the pod-level limit 8, more than the maximum 4 per container`,
		`[max-resources] pod (spec.resources.limits[cpu]): cpu limit 8 exceeds the maximum 4 per pod`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// fmtResources prints a resource list as name=quantity, sorted by name.
func fmtResources(list corev1.ResourceList) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(list)) {
		q := list[name]
		parts = append(parts, string(name)+"="+q.String())
	}
	return strings.Join(parts, ",")
}
