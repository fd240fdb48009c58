package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/webhook"
)

// BenchmarkAuditThroughAPIServer measures the background audit of 1,000
// running task pods as it runs in production: a kpoguard process whose
// pods come from its informer through the real API server, one audit per
// policy change (the policy alternates between the example and a tighter
// one, so every audit publishes new figures). It reports the process's
// CPU time per audit, scaled to 1,000 pods (process_cpu_seconds_total, so
// the policy reload and the metrics are in it), the audit's own duration,
// and the process's requests to the API server per audit, counted by a
// proxy in front of it.
func BenchmarkAuditThroughAPIServer(b *testing.B) {
	const ns, n = "audit-bench", 1000
	ctx := context.Background()
	if err := cluster.CreateNamespace(ctx, ns, nil); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cluster.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			b.Error(err)
		}
	})
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = sandbox.TaskPod(fmt.Sprintf("task-%04d", i))
		smallTask(pods[i])
	}
	for i, err := range createPods(cluster.Client, ns, pods) {
		if err != nil {
			b.Fatalf("creating %s: %v", pods[i].Name, err)
		}
	}

	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	original, err := cms.Get(ctx, sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	setDoc := func(doc string) {
		cm, err := cms.Get(ctx, sandbox.PolicyConfigMap, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cm.Data[webhook.PolicyKey] = doc
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { setDoc(original.Data[webhook.PolicyKey]) })
	policies := []string{tightenedCPU(b, "audit"), original.Data[webhook.PolicyKey]}
	for i := range policies {
		out, err := cluster.Mirrored([]byte(policies[i]))
		if err != nil {
			b.Fatal(err)
		}
		policies[i] = string(out)
	}

	kubeconfig, counter := countingKubeconfig(b, cluster.Kpoguard.Kubeconfig)
	auditor := startAuditor(b, kubeconfig, "--audit-interval=1h")
	runs := func() float64 { return metricOf(b, auditor, `kpoguard_audit_runs_total{result="success"}`) }
	waitForRun := func(after float64) {
		for deadline := time.Now().Add(30 * time.Second); runs() <= after; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("no audit within 30s\n%s", auditor.Logs())
			}
		}
	}
	waitForRun(0)
	reviewed := metricOf(b, auditor, "kpoguard_audit_pods_reviewed")
	if reviewed < n {
		b.Fatalf("the audit reviewed %v pods, want at least the %d created", reviewed, n)
	}

	cpu := func() float64 { return metricOf(b, auditor, "process_cpu_seconds_total") }
	auditSeconds := func() float64 { return metricOf(b, auditor, "kpoguard_audit_duration_seconds_sum") }
	cpuBefore, secondsBefore, requestsBefore := cpu(), auditSeconds(), counter.total()
	b.ResetTimer()
	for i := range b.N {
		before := runs()
		setDoc(policies[i%2])
		waitForRun(before)
	}
	b.StopTimer()
	perAudit := func(v float64) float64 { return v / float64(b.N) }
	b.ReportMetric(perAudit(cpu()-cpuBefore)*1000*1000/reviewed, "cpu-ms/audit-of-1000-pods")
	b.ReportMetric(perAudit(auditSeconds()-secondsBefore)*1000, "audit-ms")
	b.ReportMetric(perAudit(float64(counter.total()-requestsBefore)), "api-requests/audit")
	b.ReportMetric(reviewed, "pods")
}
