package review

import (
	"encoding/json"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

func BenchmarkPodPatch(b *testing.B) {
	data, err := os.ReadFile("../testdata/kpo/02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		b.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		b.Fatal(err)
	}
	mutated := pod.DeepCopy()
	mutated.Spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PodPatch(raw, &pod, mutated); err != nil {
			b.Fatal(err)
		}
	}
}
