package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The attacks a DAG author can make on the launching worker's pool and on
// the task scope, each as the author makes it: with the worker's own
// pod-bound token, which the official Airflow chart lets create, get and
// patch pods in the namespace.

var gpuToleration = corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}

func asksForGPU(p *corev1.Pod) {
	p.Spec.NodeSelector = map[string]string{nodePoolLabel: "gpu"}
	p.Spec.Tolerations = []corev1.Toleration{gpuToleration}
}

// unpinned is a worker as the official Airflow chart places it by default:
// no nodeSelector, no affinity; the API server gives it its default
// not-ready/unreachable tolerations all the same.
func unpinned(p *corev1.Pod) { p.Spec.NodeSelector = nil }

// Inherit: a worker that pins nothing has nothing to inherit. Its
// tolerations (the API server's defaults, or any added to it while it
// runs) are no evidence of a pool, so the fallbacks decide.
func TestInheritFromAnUnpinnedWorkerTakesTheFallback(t *testing.T) {
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: inherit, fallbacks: [default-queue]}`))
	worker := workerClient(t, startWorker(t, "worker-unpinned", "default", unpinned, func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{gpuToleration}
	}))

	_, err := launch(t, worker, "inherit-asks-gpu", asksForGPU)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `nodeSelector kpoguard.io/node-pool=gpu`) {
		t.Errorf("a task asking for the gpu pool from an unpinned worker: %v, want it refused", err)
	}
	pod, err := launch(t, worker, "inherit-no-pool")
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "default" {
		t.Errorf("a task of an unpinned worker: node pool %q, want the default queue's", got)
	}
	if hasToleration(pod.Spec.Tolerations, gpuToleration) {
		t.Errorf("a task inherited a toleration of an unpinned worker: %v", pod.Spec.Tolerations)
	}
}

// Inherit with nodeLabels: a worker's node that cannot be read refuses the
// task, rather than leaving out the labels the policy copies.
func TestInheritRefusesWhenTheWorkersNodeCannotBeRead(t *testing.T) {
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: inherit, nodeLabels: [node.kubernetes.io/instance-type]}`))
	worker := workerClient(t, startWorker(t, "worker-on-lost-node", "nvme", func(p *corev1.Pod) { p.Spec.NodeName = "node-that-is-gone" }))
	_, err := launch(t, worker, "node-unreadable")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `node "node-that-is-gone"`) {
		t.Errorf("a task of a worker whose node cannot be read: %v, want it refused naming the node", err)
	}
}

// The worker's own service account can relabel its pod out of the worker
// selector (or drop its queue label), and the DAG can create a look-alike
// KubernetesExecutor pod in the pool it wants. A request whose token is
// bound to a pod never takes a fallback that labels can steer.
func TestShedWorkerIdentityCannotSteerTheFallback(t *testing.T) {
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], fallbacks: [kubernetes-executor, default-queue]}`))
	// The look-alike: KubernetesExecutor's labels for the task's dag,
	// task and run, placed in the nvme pool, created by the DAG.
	startWorker(t, "executor-look-alike", "nvme", func(p *corev1.Pod) {
		p.Labels["kubernetes_executor"] = "True"
		p.Labels["dag_id"], p.Labels["task_id"], p.Labels["run_id"] = "parent", "steered", "manual__2026-01-01"
	})
	for _, c := range []struct {
		name, pod string
		shed      string // the label patch the worker makes on itself
	}{
		{"worker selector label dropped", "selector", `{"metadata":{"labels":{"component":null}}}`},
		{"queue label dropped", "queue", `{"metadata":{"labels":{"` + workerQueueKey + `":null}}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			worker := startWorker(t, "worker-shedding-"+c.pod, "default")
			client := workerClient(t, worker)
			if _, err := client.CoreV1().Pods(parentNamespace).Patch(t.Context(), worker.Name, types.MergePatchType, []byte(c.shed), metav1.PatchOptions{}); err != nil {
				t.Fatalf("the worker relabelling itself: %v", err)
			}
			pod, err := launch(t, client, "steered-by-"+c.pod, func(p *corev1.Pod) { p.Labels["task_id"] = "steered" })
			if err == nil && pod.Spec.NodeSelector[nodePoolLabel] == "nvme" {
				t.Fatalf("the task followed the look-alike executor pod into the nvme pool")
			}
			if err == nil && pod.Spec.NodeSelector[nodePoolLabel] != "default" {
				t.Errorf("node pool %q, want the default queue (the fallback labels cannot steer)", pod.Spec.NodeSelector[nodePoolLabel])
			}
		})
	}
}

// Label mode: a worker's queue label is only believed where the worker
// really runs in that queue's pool; a queue that differs from another only
// by tolerations or matchExpressions cannot be claimed by relabelling.
func TestRelabelledWorkerCannotClaimAnUnverifiableQueue(t *testing.T) {
	setUpWorkers(t)
	withGPU := strings.Replace(parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], fallbacks: [deny]}`),
		"    - name: follow-workers\n      namespaces: ["+parentNamespace+"]\n      rules:\n        nodePool:\n",
		"    - name: follow-workers\n      namespaces: ["+parentNamespace+"]\n      rules:\n        nodePool:\n"+
			"          queues:\n"+
			"            default: {nodeSelector: {kpoguard.io/node-pool: default}}\n"+
			"            gpu:\n"+
			"              tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]\n"+
			"              matchExpressions: [{key: accelerator, operator: In, values: [a100]}]\n", 1)
	setPolicy(t, withGPU)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-cpu-node", Labels: map[string]string{nodePoolLabel: "default"}}}
	if _, err := cluster.Client.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
	})
	worker := startWorker(t, "worker-claims-gpu", "default", func(p *corev1.Pod) { p.Spec.NodeName = node.Name })
	client := workerClient(t, worker)
	if _, err := client.CoreV1().Pods(parentNamespace).Patch(t.Context(), worker.Name, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+workerQueueKey+`":"gpu"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("the worker relabelling itself: %v", err)
	}
	pod, err := launch(t, client, "claims-gpu-queue")
	if err == nil && hasToleration(pod.Spec.Tolerations, gpuToleration) {
		t.Fatalf("a worker on a cpu node that relabelled itself for the gpu queue got its task the gpu toleration")
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `queue "gpu"`) {
		t.Errorf("task of a worker claiming the gpu queue: %v, want it refused naming the claim", err)
	}
}

// The task label is the scope: dropping it from a running task pod would
// take every later change of that pod (tolerations, images, debug
// containers, resizes) out of kpoguard's sight. Refused.
func TestTaskLabelCannotBeDroppedFromATaskPod(t *testing.T) {
	pods := cluster.Client.CoreV1().Pods(taskNamespace)
	gated := sandbox.TaskPod("label-drop")
	gated.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/hold"}}
	if _, err := pods.Create(t.Context(), gated, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, gated.Name) })
	for _, c := range []struct{ name, patch string }{
		{"removed", `{"metadata":{"labels":{"kubernetes_pod_operator":null}}}`},
		{"changed", `{"metadata":{"labels":{"kubernetes_pod_operator":"False"}}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := pods.Patch(t.Context(), gated.Name, types.MergePatchType, []byte(c.patch), metav1.PatchOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kubernetes_pod_operator") {
				t.Errorf("task label %s: %v, want it refused", c.name, err)
			}
		})
	}
	// Other label changes still pass, and lifting the gate is reviewed.
	if _, err := pods.Patch(t.Context(), gated.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"already_checked":"True"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("another label: %v", err)
	}
	if _, err := pods.Patch(t.Context(), gated.Name, types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/schedulingGates"}]`), metav1.PatchOptions{}); err != nil {
		t.Errorf("lifting the scheduling gate of a well-placed task: %v", err)
	}
}
