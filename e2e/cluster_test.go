package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// installWebhooks creates the chart's webhook configurations and waits
// until the API server calls both.
func (c *testCluster) installWebhooks(ctx context.Context) error {
	reg := c.client.AdmissionregistrationV1()
	if _, err := reg.MutatingWebhookConfigurations().Create(ctx, c.webhooks.mutating.DeepCopy(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the mutating webhook configuration: %w", err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, c.webhooks.validating.DeepCopy(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the validating webhook configuration: %w", err)
	}
	// The API server picks configurations up from an informer: probe with
	// dry-run pods until the mutation lands and a PVC pod is refused.
	probe := func() error {
		pod := kpoPod("webhook-probe")
		created, err := c.client.CoreV1().Pods(taskNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if created.Annotations["kpoguard.io/policy"] == "" {
			return errors.New("not mutated yet")
		}
		pod.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}}
		if _, err := c.client.CoreV1().Pods(taskNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
			return fmt.Errorf("PVC pod not refused yet: %v", err)
		}
		return nil
	}
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = probe(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("webhooks not called within 30s: %w\nkpoguard log:\n%s", err, c.kpoguard.logs())
}

// kpoPod is a minimal pod shaped like KPO's.
func kpoPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes_pod_operator": "True", "dag_id": "e2e", "task_id": name, "airflow_kpo_in_cluster": "True",
		}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "base", Image: "ubuntu:22.04", Command: []string{"true"}}},
		},
	}
}

type kubectlResult struct {
	stdout, stderr string
	code           int
}

// kubectl runs the real kubectl against the test API server.
func kubectl(t *testing.T, stdin string, args ...string) kubectlResult {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", cluster.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := kubectlResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl %v: %v", args, err)
	}
	return r
}

func sharedFixture(name string) string {
	return filepath.Join(repoRoot, "..", "shared", "fixtures", "kpo", name)
}

func ownFixture(name string) string {
	return filepath.Join(repoRoot, "testdata", "pods", name)
}

func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := cluster.client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod %s/%s: %v", ns, name, err)
	}
	return pod
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	err := cluster.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting pod %s/%s: %v", ns, name, err)
	}
}
