package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

func admissionRequests(t *testing.T) float64 {
	t.Helper()
	total := 0.0
	for _, hook := range []string{"mutate-pods", "validate-pods"} {
		for _, d := range []string{"allowed", "mutated", "warned", "denied", "skipped", "error"} {
			total += metric(t, `kpoguard_admission_requests_total{decision="`+d+`",webhook="`+hook+`"}`)
		}
	}
	return total
}

// The chart's selectors keep kube-system, kpoguard's own namespace and
// pods without KPO's label away from kpoguard entirely: it never sees them.
func TestOutOfScopePodsNeverReachKpoguard(t *testing.T) {
	before := admissionRequests(t)
	withPVC := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		return p
	}
	notTask := withPVC(sandbox.TaskPod("not-a-task"))
	delete(notTask.Labels, "kubernetes_pod_operator")
	for _, c := range []struct {
		ns  string
		pod *corev1.Pod
	}{
		{"kube-system", withPVC(sandbox.TaskPod("system-task"))},
		{sandbox.KpoguardNamespace, withPVC(sandbox.TaskPod("own-task"))},
		{taskNamespace, notTask},
	} {
		created, err := cluster.Client.CoreV1().Pods(c.ns).Create(t.Context(), c.pod, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("%s/%s refused: %v", c.ns, c.pod.Name, err)
			continue
		}
		t.Cleanup(func() { deletePod(t, c.ns, c.pod.Name) })
		if len(created.Annotations) != 0 {
			t.Errorf("%s/%s mutated: %v", c.ns, c.pod.Name, created.Annotations)
		}
	}
	if after := admissionRequests(t); after != before {
		t.Errorf("kpoguard saw %v admission requests for out-of-scope pods", after-before)
	}
}

// Stopped, kpoguard fails as the chart's failure policies say: the
// validating webhook (Fail) refuses task pods, others are unaffected.
// Restarted, it serves again with no manual step.
func TestKpoguardDownAndRestarted(t *testing.T) {
	cluster.Kpoguard.Stop()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := cluster.Kpoguard.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
	pods := cluster.Client.CoreV1().Pods(taskNamespace)
	_, err := pods.Create(t.Context(), sandbox.TaskPod("while-down"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "validate-pods.kpoguard.io"`) {
		t.Errorf("task pod while kpoguard is down: %v, want the validating webhook's failure", err)
		deletePod(t, taskNamespace, "while-down")
	}
	other := sandbox.TaskPod("unlabelled-while-down")
	delete(other.Labels, "kubernetes_pod_operator")
	if _, err := pods.Create(t.Context(), other, metav1.CreateOptions{}); err != nil {
		t.Errorf("out-of-scope pod while kpoguard is down: %v", err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, other.Name) })

	if err := cluster.Kpoguard.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	var created *corev1.Pod
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if created, err = pods.Create(t.Context(), sandbox.TaskPod("after-restart"), metav1.CreateOptions{}); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("task pod after the restart: %v", err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, created.Name) })
	if created.Annotations["kpoguard.io/policy"] == "" {
		t.Errorf("task pod after the restart was not mutated")
	}
}
