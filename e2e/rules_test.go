package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestKPOFixturesGetPlatformDefaults(t *testing.T) {
	r := kubectl(t, "", "create", "-f", sharedFixture("01-kpo-basic-no-resources.yaml"))
	if r.code != 0 {
		t.Fatalf("kubectl create: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, "extract-orders-k3x9p2qa") })
	pod := getPod(t, taskNamespace, "extract-orders-k3x9p2qa")
	base := pod.Spec.Containers[0]
	for _, check := range []struct{ what, got, want string }{
		{"cpu request", base.Resources.Requests.Cpu().String(), "1"},
		{"cpu limit", base.Resources.Limits.Cpu().String(), "1"},
		{"memory request", base.Resources.Requests.Memory().String(), "2Gi"},
		{"memory limit", base.Resources.Limits.Memory().String(), "2Gi"},
		{"ephemeral-storage limit", base.Resources.Limits.StorageEphemeral().String(), "2Gi"},
		{"envFrom", envFromNames(base.EnvFrom), "secret/env-secrets"},
		{"node pool", pod.Spec.NodeSelector["kpoguard.io/node-pool"], "default"},
		{"QoS class", string(pod.Status.QOSClass), string(corev1.PodQOSGuaranteed)},
	} {
		if check.got != check.want {
			t.Errorf("%s = %q, want %q", check.what, check.got, check.want)
		}
	}
	if !strings.Contains(pod.Annotations["kpoguard.io/mutations"], "env-secrets spec.containers[0].envFrom[0]") {
		t.Errorf("mutations annotation = %q", pod.Annotations["kpoguard.io/mutations"])
	}
}

func envFromNames(sources []corev1.EnvFromSource) string {
	var names []string
	for _, s := range sources {
		switch {
		case s.SecretRef != nil:
			names = append(names, "secret/"+s.SecretRef.Name)
		case s.ConfigMapRef != nil:
			names = append(names, "configmap/"+s.ConfigMapRef.Name)
		}
	}
	return strings.Join(names, ",")
}

func TestDenialsShownByKubectl(t *testing.T) {
	r := kubectl(t, "", "create", "-f", ownFixture("10-pvc-task.yaml"))
	if r.code != 1 {
		t.Fatalf("kubectl create: exit %d, want 1: %s", r.code, r.stdout)
	}
	want := `admission webhook "validate-pods.kpoguard.io" denied the request: pod "pvc-task-z0n4r8te" is forbidden by kpoguard: 2 violations:
[no-persistent-volumes] volume "test-volume" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("kubectl stderr:\n%s\nwant it to contain:\n%s", r.stderr, want)
	}
}
