package policy

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The engine alone, with the example policy (every rule on), over the
// KPO fixtures in testdata/kpo.
func benchRules(b *testing.B) *RuleSet {
	data, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	p, err := Load(data)
	if err != nil {
		b.Fatal(err)
	}
	rs, err := p.RulesFor(Namespace{Name: "astronomer-example-deployment-1234"})
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

func benchPod(b *testing.B, name string) *corev1.Pod {
	data, err := os.ReadFile("../testdata/kpo/" + name)
	if err != nil {
		b.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		b.Fatal(err)
	}
	return &pod
}

func BenchmarkMutate(b *testing.B) {
	rs := benchRules(b)
	pod := benchPod(b, "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if len(rs.Mutate(pod.DeepCopy(), Facts{})) == 0 {
			b.Fatal("no changes")
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	rs := benchRules(b)
	pod := benchPod(b, "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml")
	rs.Mutate(pod, Facts{})
	b.ReportAllocs()
	for b.Loop() {
		if v := rs.Validate(pod, Facts{}); len(v) != 0 {
			b.Fatal(v)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	data, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(data); err != nil {
			b.Fatal(err)
		}
	}
}
