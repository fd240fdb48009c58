package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

type kubectlResult struct {
	stdout, stderr string
	code           int
}

// kubectl runs the real kubectl against the test API server.
func kubectl(t *testing.T, stdin string, args ...string) kubectlResult {
	t.Helper()
	return runTool(t, "kubectl", stdin, args...)
}

// runTool runs a tool of bin/ against the test API server, as the sandbox
// user, and returns what it printed and its exit code.
func runTool(t *testing.T, tool, stdin string, args ...string) kubectlResult {
	t.Helper()
	return runBinary(t, filepath.Join(repoRoot, "bin", tool), stdin, append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
}

// runBinary runs a program and returns what it printed and its exit code.
func runBinary(t *testing.T, binary, stdin string, args ...string) kubectlResult {
	t.Helper()
	cmd := sandbox.Command(binary, args...)
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
		t.Fatalf("%s %v: %v", binary, args, err)
	}
	return r
}

func kpoFixture(name string) string {
	return filepath.Join(repoRoot, "testdata", "kpo", name)
}

func ownFixture(name string) string {
	return filepath.Join(repoRoot, "testdata", "pods", name)
}

func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod %s/%s: %v", ns, name, err)
	}
	return pod
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	err := cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting pod %s/%s: %v", ns, name, err)
	}
}

// setPolicy replaces the policy ConfigMap's document, waits until kpoguard
// enforces it, and restores the previous one when the test ends.
func setPolicy(t *testing.T, doc string) {
	t.Helper()
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	cm, err := cms.Get(t.Context(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	previous := cm.Data[webhook.PolicyKey]
	writePolicy(t, doc)
	t.Cleanup(func() { writePolicy(t, previous) })
}

func writePolicy(t *testing.T, doc string) {
	t.Helper()
	doc = mirrored(t, doc)
	p, err := policy.Load([]byte(doc))
	if err != nil {
		t.Fatalf("test policy: %v", err)
	}
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	cm, err := cms.Get(context.Background(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[webhook.PolicyKey] = doc
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating the policy: %v", err)
	}
	waitForPolicy(t, p.Hash(), 5*time.Second)
}

// waitForPolicy waits until kpoguard stamps dry-run pods with the policy
// hash, and returns how long that took.
func waitForPolicy(t *testing.T, hash string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(context.Background(), sandbox.TaskPod("policy-probe"),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && pod.Annotations[review.AnnotationPolicy] == hash {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("policy %s not in force after %v (last error: %v)\nkpoguard log:\n%s", hash, limit, err, cluster.Kpoguard.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func metric(t testing.TB, series string) float64 {
	t.Helper()
	v, err := cluster.Kpoguard.Metric(series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mirrored is the policy with the sandbox registry as its mirror, as the
// suite installs every policy.
func mirrored(t *testing.T, doc string) string {
	t.Helper()
	out, err := cluster.Mirrored([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// exampleHash is the hash of the policy the suite installs.
func exampleHash(t *testing.T) string {
	t.Helper()
	p, err := policy.Load([]byte(mirrored(t, readFile(t, filepath.Join(repoRoot, "examples", "policy.yaml")))))
	if err != nil {
		t.Fatal(err)
	}
	return p.Hash()
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}
