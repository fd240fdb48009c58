package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The sandbox (`make run`, hack/sandbox) starts with whatever policy it is
// given: it waits until the API server calls both webhooks, whatever the
// policy decides about its probe pods. Each case starts a sandbox of its
// own, as hack/sandbox does with -policy, and creates a task pod with a
// PersistentVolumeClaim to see that policy in force.
func TestSandboxStartsWithAnyPolicy(t *testing.T) {
	const header = "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nmetadata: {name: sandbox-test}\n"
	tests := []struct {
		name   string
		policy string
		// refusal is part of the PVC pod's refusal; "" when it is admitted.
		refusal string
	}{
		{
			name:    "the example policy",
			policy:  readFile(t, filepath.Join(repoRoot, "examples", "policy.yaml")),
			refusal: `[no-persistent-volumes] volume "v" (spec.volumes[0].persistentVolumeClaim)`,
		},
		{
			// noPersistentVolumes is enforced unless switched off.
			name: "default pod size only and persistent volumes allowed",
			policy: header + `spec:
  rules:
    defaultResources: {requests: {cpu: 250m, memory: 512Mi}, limits: {cpu: "1", memory: 1Gi}}
    noPersistentVolumes: {mode: "off"}
`,
		},
		{
			// The sandbox's pods come from a person, not a worker.
			name: "following the launching worker and refusing everyone else",
			policy: header + `spec:
  rules:
    nodePool:
      defaultQueue: default
      queues:
        default: {nodeSelector: {astronomer.io/node-pool: default}}
      parent:
        source: label
        queueLabels: [workerQueue]
        fallbacks: [deny]
`,
			refusal: "[node-pool] request (userInfo): the Airflow worker that launched this pod could not be determined",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := t.TempDir()
			// Not policy.yaml: the sandbox writes the mirrored policy there.
			policyFile := filepath.Join(work, "given-policy.yaml")
			if err := os.WriteFile(policyFile, []byte(tt.policy), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := sandbox.Start(t.Context(), sandbox.Options{
				Kpoguard:   cluster.Kpoguard.Binary,
				RepoRoot:   repoRoot,
				PolicyFile: policyFile,
				WorkDir:    work,
				Namespaces: []string{taskNamespace},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Stop)

			pod := sandbox.TaskPod("with-pvc")
			pod.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}}
			created, err := c.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case tt.refusal == "" && err != nil:
				t.Errorf("PVC pod refused: %v", err)
			case tt.refusal == "" && created.Annotations["kpoguard.io/policy"] == "":
				t.Errorf("PVC pod admitted without kpoguard's annotation: %v", created.Annotations)
			case tt.refusal != "" && (err == nil || !strings.Contains(err.Error(), tt.refusal)):
				t.Errorf("PVC pod: %v, want a refusal containing %q", err, tt.refusal)
			}
		})
	}
}
