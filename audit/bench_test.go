package audit

import (
	"context"
	"fmt"
	"testing"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkAuditPass is one audit of 1,000 running task pods, made from
// the KPO fixtures and admitted under examples/policy.yaml: its ns/op is
// the audit's CPU per 1,000 pods (docs/benchmarks.md). Pods come from a
// slice, as from the informer's cache: no API request.
func BenchmarkAuditPass(b *testing.B) {
	p := examplePolicy(b)
	var fixtures []*corev1.Pod
	for _, name := range []string{"01-kpo-basic-no-resources.yaml", "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml"} {
		fixtures = append(fixtures, admitted(b, p, kpoPod(b, name)))
	}
	pods := make([]*corev1.Pod, 1000)
	for i := range pods {
		pod := fixtures[i%len(fixtures)].DeepCopy()
		pod.Name = fmt.Sprintf("%s-%d", pod.Name, i)
		pod.UID = types.UID(fmt.Sprintf("uid-%d", i))
		pods[i] = pod
	}
	r := &Runner{
		Pods:      func() ([]*corev1.Pod, error) { return pods, nil },
		Policy:    func() *policy.Policy { return p },
		Resolvers: resolvers(),
		Metrics:   NewMetrics(prometheus.NewRegistry(), 100),
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Pass(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
