package e2e

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// Pods are admitted or refused by what their images' registry says,
// through the real API server and kpoguard process.
func TestImageArchitectureFromTheRegistry(t *testing.T) {
	reg := cluster.Registry
	tests := []struct {
		image   string
		allowed bool
		says    string
	}{
		{image: reg.Ref(registrytest.AMD64), allowed: true},
		{image: reg.Ref(registrytest.MultiArch), allowed: true},
		{image: reg.Ref(registrytest.ManifestList), allowed: true},
		// Docker Hub's official images, through the sandbox's mirror.
		{image: "ubuntu:22.04", allowed: true},
		{image: reg.Ref(registrytest.ARM64Only), says: "is built only for linux/arm64/v8, but this cluster runs linux/amd64"},
		{image: reg.Ref(registrytest.ARM64), says: `is built only for linux/arm64/v8, but this cluster runs linux/amd64; it would fail with "exec format error"`},
		{image: reg.Ref(registrytest.Windows), says: "is built only for windows/amd64"},
	}
	for i, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			pod := sandbox.TaskPod(fmt.Sprintf("arch-%d", i))
			pod.Spec.Containers[0].Image = tt.image
			_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if tt.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), `[image-architecture] image "`+tt.image+`"`) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error = %v, want the image named and %q", err, tt.says)
			}
			if !strings.Contains(err.Error(), "docker buildx build --platform linux/amd64") {
				t.Errorf("error %v does not say how to fix it", err)
			}
		})
	}
	// A tag's lookups are cached: the same pod again asks the registry
	// nothing.
	reg.Reset()
	pod := sandbox.TaskPod("arch-again")
	pod.Spec.Containers[0].Image = reg.Ref(registrytest.MultiArch)
	if _, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if n := reg.Requests("HEAD manifest") + reg.Requests("GET manifest"); n != 0 {
		t.Errorf("a cached image cost %d manifest requests", n)
	}
	if hits := metric(t, `kpoguard_registry_lookups_total{result="hit"}`); hits < 1 {
		t.Errorf("no cache hit counted: %v", hits)
	}
}

// A lookup that fails is allowed with a warning kubectl shows, under the
// example policy's onLookupFailure: allow.
func TestLookupFailureWarnsThroughKubectl(t *testing.T) {
	r := kubectl(t, "", "run", "-n", taskNamespace, "missing-image", "--dry-run=server", "--restart=Never",
		"--labels=kubernetes_pod_operator=True", "--image="+cluster.Registry.Ref(registrytest.Missing))
	if r.code != 0 {
		t.Fatalf("kubectl run refused (%d): %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "Warning: kpoguard [image-architecture]") || !strings.Contains(r.stderr, "the registry has no such image") {
		t.Errorf("kubectl printed no lookup warning:\n%s", r.stderr)
	}
}
