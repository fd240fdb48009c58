package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// An Airflow deployment's namespace whose workers run in two queues of
// the example policy, default and nvme.
const (
	parentNamespace = "airflow-parent"
	workerAccount   = "airflow-worker"
	workerQueueKey  = "workerQueue"
	nodePoolLabel   = "kpoguard.io/node-pool"
)

var parentSetUp bool

// setUpWorkers creates, once, the namespace, the workers' service account
// and the Role the official Airflow chart gives it on pods.
func setUpWorkers(t *testing.T) {
	t.Helper()
	if parentSetUp {
		return
	}
	ctx, c := t.Context(), cluster.Client
	createPodLauncher(t, parentNamespace, workerAccount)
	// A node of each queue's pool, labelled as the example policy's
	// queues select them, for workers to run on.
	for queue, labels := range map[string]map[string]string{
		"default": {nodePoolLabel: "default"},
		"nvme":    {nodePoolLabel: "nvme", "node.kubernetes.io/instance-type": "m5d.4xlarge"},
	} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: queueNode(queue), Labels: labels}}
		if _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	parentSetUp = true
}

// createPodLauncher creates a namespace and a service account in it with
// the pod-launcher Role the official Airflow chart gives its workers: what
// KubernetesPodOperator needs, and what DAG code running as the worker can
// do with the API.
func createPodLauncher(t *testing.T, namespace, account string) {
	t.Helper()
	ctx, c := t.Context(), cluster.Client
	if err := cluster.CreateNamespace(ctx, namespace, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RbacV1().Roles(namespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-launcher"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "list", "get", "patch", "watch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-launcher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-launcher"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: account, Namespace: namespace}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// queueNode is the node the workers of a queue run on.
func queueNode(queue string) string { return "e2e-node-" + queue }

// parentPolicy is the example policy with an override for the workers'
// namespace that follows the launching worker.
func parentPolicy(t *testing.T, parent string) string {
	t.Helper()
	return strings.TrimRight(readFile(t, repoRoot+"/examples/policy.yaml"), "\n") + `
    - name: follow-workers
      namespaces: [` + parentNamespace + `]
      rules:
        nodePool:
          parent: ` + parent + "\n"
}

// startWorker creates a worker pod of a queue, placed as the queue's
// nodes are and running on its node, and returns it as stored.
func startWorker(t *testing.T, name, queue string, mod ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"component": "worker", "release": "airflow", workerQueueKey: queue}},
		Spec: corev1.PodSpec{
			ServiceAccountName: workerAccount,
			NodeName:           queueNode(queue),
			NodeSelector:       map[string]string{nodePoolLabel: queue},
			Containers:         []corev1.Container{{Name: "worker", Image: "apache/airflow:3.1.0", Command: []string{"airflow", "celery", "worker", "-q", queue}}},
		},
	}
	for _, m := range mod {
		m(pod)
	}
	created, err := cluster.Client.CoreV1().Pods(parentNamespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, parentNamespace, name) })
	return created
}

// workerClient acts as the worker does with its in-cluster configuration:
// a service-account token from the TokenRequest API, bound to its pod.
func workerClient(t *testing.T, worker *corev1.Pod) kubernetes.Interface {
	t.Helper()
	tr, err := cluster.Client.CoreV1().ServiceAccounts(parentNamespace).CreateToken(t.Context(), workerAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: new(int64(600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: worker.Name, UID: worker.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", worker.Name, err)
	}
	cfg := &rest.Config{
		Host:            cluster.Env.Config.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.Env.Config.CAData},
		BearerToken:     tr.Status.Token,
		// client-go's default 5 QPS would be most of what a test measures.
		QPS: 1000, Burst: 2000,
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// launch creates a KPO-shaped task pod with a client, and returns it as
// the API server stored it.
func launch(t *testing.T, client kubernetes.Interface, name string, mod ...func(*corev1.Pod)) (*corev1.Pod, error) {
	t.Helper()
	pod := sandbox.TaskPod(name)
	pod.Labels["dag_id"], pod.Labels["run_id"] = "parent", "manual__2026-01-01"
	for _, m := range mod {
		m(pod)
	}
	start := time.Now()
	created, err := client.CoreV1().Pods(parentNamespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err == nil {
		t.Logf("%s created in %v", name, time.Since(start))
		t.Cleanup(func() { deletePod(t, parentNamespace, name) })
	}
	return created, err
}

func resolutions(t *testing.T, result string) float64 {
	t.Helper()
	return metric(t, `kpoguard_parent_resolutions_total{result="`+result+`",webhook="mutate-pods"}`)
}

func TestParentWorkerPinsTaskPods(t *testing.T) {
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], onConflict: override, outOfClusterFallbacks: [default-queue]}`))
	workers := map[string]kubernetes.Interface{
		"default": workerClient(t, startWorker(t, "worker-default-0", "default")),
		"nvme":    workerClient(t, startWorker(t, "worker-nvme-0", "nvme")),
	}
	nvmeToleration := corev1.Toleration{Key: nodePoolLabel, Operator: corev1.TolerationOpEqual, Value: "nvme", Effect: corev1.TaintEffectNoSchedule}

	t.Run("each task pod carries its own worker's pool", func(t *testing.T) {
		for queue, client := range workers {
			pod, err := launch(t, client, "task-of-"+queue)
			if err != nil {
				t.Fatalf("worker of %s: %v", queue, err)
			}
			if got := pod.Spec.NodeSelector[nodePoolLabel]; got != queue {
				t.Errorf("task of the %s worker: node pool %q", queue, got)
			}
			if hasNvme := hasToleration(pod.Spec.Tolerations, nvmeToleration); hasNvme != (queue == "nvme") {
				t.Errorf("task of the %s worker: tolerations %+v", queue, pod.Spec.Tolerations)
			}
		}
	})

	t.Run("a task claiming the other queue is pinned to its worker's", func(t *testing.T) {
		conflicts := resolutions(t, "conflict")
		pod, err := launch(t, workers["default"], "claims-nvme", func(p *corev1.Pod) {
			p.Labels["kpoguard.io/queue"] = "nvme"
			p.Spec.NodeSelector = map[string]string{nodePoolLabel: "nvme"}
			p.Spec.Tolerations = []corev1.Toleration{nvmeToleration}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "default" || hasToleration(pod.Spec.Tolerations, nvmeToleration) {
			t.Errorf("node pool %q, tolerations %+v: want the default worker's pool only", got, pod.Spec.Tolerations)
		}
		if got := resolutions(t, "conflict"); got != conflicts+1 {
			t.Errorf("conflicts counted %v, want %v", got, conflicts+1)
		}
	})

	t.Run("a kubeconfig identity takes the fallback", func(t *testing.T) {
		pod, err := launch(t, cluster.Client, "from-kubeconfig", func(p *corev1.Pod) {
			p.Labels["airflow_kpo_in_cluster"] = "False"
			p.Labels["kpoguard.io/queue"] = "nvme"
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "default" {
			t.Errorf("node pool %q, want the default queue", got)
		}
		// Claiming to be in cluster leads to the in-cluster order: deny.
		_, err = launch(t, cluster.Client, "kubeconfig-in-cluster")
		want := `[node-pool] request (userInfo): the Airflow worker that launched this pod could not be determined: the request came from "sandbox-user", not from a service account of namespace "airflow-parent"`
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("in-cluster pod from a kubeconfig: %v\nwant Forbidden with %s", err, want)
		}
	})

	t.Run("a worker created a moment before its task is found", func(t *testing.T) {
		before := resolutions(t, "found") + resolutions(t, "found-after-cache-miss")
		worker := startWorker(t, "worker-nvme-new", "nvme")
		pod, err := launch(t, workerClient(t, worker), "task-of-new-worker")
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "nvme" {
			t.Errorf("node pool %q, want nvme", got)
		}
		if after := resolutions(t, "found") + resolutions(t, "found-after-cache-miss"); after != before+1 {
			t.Errorf("found resolutions %v, want %v", after, before+1)
		}
		t.Logf("mutating webhook: found %v, found after a cache miss %v", resolutions(t, "found"), resolutions(t, "found-after-cache-miss"))
	})

	t.Run("a token bound to a deleted worker is refused by the API server", func(t *testing.T) {
		worker := startWorker(t, "worker-gone", "nvme")
		client := workerClient(t, worker)
		deletePod(t, parentNamespace, worker.Name)
		// The API server caches a token's authentication for 10 seconds.
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, err = launch(t, client, "orphan"); apierrors.IsUnauthorized(err) {
				return
			}
		}
		t.Errorf("task from a deleted worker's token: %v, want Unauthorized", err)
	})

	t.Run("denied per policy: both pools named", func(t *testing.T) {
		setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`], onConflict: deny}`))
		_, err := launch(t, workers["nvme"], "claims-default", func(p *corev1.Pod) {
			p.Labels["kpoguard.io/queue"] = "default"
		})
		want := `[node-pool] label kpoguard.io/queue="default" (metadata.labels[kpoguard.io/queue]): asks for queue "default"'s node pool (kpoguard.io/node-pool=default), ` +
			`but the worker that launched it runs in queue "nvme"'s node pool (kpoguard.io/node-pool=nvme)`
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("conflicting label with onConflict deny: %v\nwant Forbidden with %s", err, want)
		}
	})
}

// Inherit: a worker placed by the official Airflow chart's workers
// values (nodeSelector, tolerations, node affinity) on a node of a known
// instance type hands all of it to its tasks.
func TestParentWorkerPlacementInherited(t *testing.T) {
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: inherit, nodeLabels: [node.kubernetes.io/instance-type]}`))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-big-node", Labels: map[string]string{"node.kubernetes.io/instance-type": "m5.4xlarge"}}}
	if _, err := cluster.Client.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
	})
	zone := corev1.NodeSelectorRequirement{Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a", "us-east-1b"}}
	dedicated := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "airflow", Effect: corev1.TaintEffectNoSchedule}
	worker := startWorker(t, "worker-placed", "nvme", func(p *corev1.Pod) {
		p.Spec.NodeName = node.Name
		p.Spec.Tolerations = []corev1.Toleration{dedicated}
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{zone}}}}}}
	})
	// The task's own required and preferred terms stay, ANDed with the worker's.
	ssd := corev1.NodeSelectorRequirement{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"}}
	spot := corev1.NodeSelectorRequirement{Key: "spot", Operator: corev1.NodeSelectorOpIn, Values: []string{"true"}}
	pod, err := launch(t, workerClient(t, worker), "inherits", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution:  &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{ssd}}}},
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 5, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{spot}}}},
		}}
	})
	if err != nil {
		t.Fatal(err)
	}
	na := pod.Spec.Affinity.NodeAffinity
	expectFields(t, []field{
		{"node pool", pod.Spec.NodeSelector[nodePoolLabel], "nvme"},
		{"instance type from the worker's node", pod.Spec.NodeSelector["node.kubernetes.io/instance-type"], "m5.4xlarge"},
		{"worker's toleration", fmt.Sprint(hasToleration(pod.Spec.Tolerations, dedicated)), "true"},
		{"required terms", fmt.Sprint(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms), fmt.Sprint([]corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{ssd, zone}}})},
		{"preferred terms", fmt.Sprint(na.PreferredDuringSchedulingIgnoredDuringExecution), fmt.Sprint([]corev1.PreferredSchedulingTerm{{Weight: 5, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{spot}}}})},
	})
}

// Anyone who may create pods can label any number of them like workers,
// and have each launch task pods with a token bound to it. A flood of 200
// such look-alikes leaves kpoguard's worker cache at its size, dropping
// the least recently used, and a real worker's tasks are still placed by
// it, from the cache after its first.
func TestWorkerCacheBoundedUnderLookAlikeFlood(t *testing.T) {
	const size, flood = 20, 200
	restartKpoguard(t, "--worker-cache-size="+strconv.Itoa(size))
	setUpWorkers(t)
	setPolicy(t, parentPolicy(t, `{source: label, queueLabels: [`+workerQueueKey+`]}`))
	heapBefore := metric(t, "go_memstats_heap_inuse_bytes")
	found := resolutions(t, "found") + resolutions(t, "found-after-cache-miss")
	start := time.Now()
	for i := range flood {
		// Each look-alike carries 100 labels of its own: kept, they
		// would cost kpoguard their size each.
		worker := startWorker(t, fmt.Sprintf("look-alike-%03d", i), "default", func(p *corev1.Pod) {
			for j := range 100 {
				p.Labels[fmt.Sprintf("pad-%03d", j)] = strings.Repeat("x", 60)
			}
		})
		pod, err := launch(t, workerClient(t, worker), fmt.Sprintf("flood-task-%03d", i))
		if err != nil {
			t.Fatalf("task of look-alike %d: %v", i, err)
		}
		if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "default" {
			t.Fatalf("task of look-alike %d: node pool %q, want its worker's", i, got)
		}
	}
	t.Logf("%d look-alikes and their tasks in %v; kpoguard's heap in use %.1f MiB before, %.1f MiB after", flood, time.Since(start).Round(time.Millisecond),
		heapBefore/(1<<20), metric(t, "go_memstats_heap_inuse_bytes")/(1<<20))
	expectFields(t, []field{
		{"workers found", fmt.Sprint(resolutions(t, "found") + resolutions(t, "found-after-cache-miss") - found), fmt.Sprint(flood)},
		{"cached worker pods", fmt.Sprint(metric(t, "kpoguard_worker_cache_pods")), fmt.Sprint(size)},
		{"evictions", fmt.Sprint(metric(t, "kpoguard_worker_cache_evictions_total")), fmt.Sprint(flood - size)},
	})

	// A real worker in the full cache: read at its first task, cached
	// for its second.
	genuine := workerClient(t, startWorker(t, "worker-real", "nvme"))
	for i, want := range []string{"found-after-cache-miss", "found"} {
		before := resolutions(t, want)
		pod, err := launch(t, genuine, fmt.Sprintf("real-task-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.NodeSelector[nodePoolLabel]; got != "nvme" {
			t.Errorf("task %d of the real worker: node pool %q, want nvme", i, got)
		}
		if got := resolutions(t, want) - before; got != 1 {
			t.Errorf("task %d of the real worker: %v resolutions %s, want 1", i, got, want)
		}
	}
	if got := metric(t, "kpoguard_worker_cache_pods"); got != size {
		t.Errorf("cached worker pods %v, want %d", got, size)
	}
}

// restartKpoguard restarts kpoguard with flags added to its usual ones,
// and with its usual ones when the test ends.
func restartKpoguard(t *testing.T, args ...string) {
	t.Helper()
	k := cluster.Kpoguard
	usual := k.ExtraArgs
	restart := func(args []string) error {
		k.Stop()
		k.ExtraArgs = args
		if err := k.Start(context.Background()); err != nil {
			return err
		}
		// The API server's connections to the old process are gone.
		return cluster.WaitForWebhooks(context.Background())
	}
	if err := restart(append(slices.Clone(usual), args...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := restart(usual); err != nil {
			t.Fatal(err)
		}
	})
}

func hasToleration(list []corev1.Toleration, want corev1.Toleration) bool {
	for _, t := range list {
		if t.Key == want.Key && t.Operator == want.Operator && t.Value == want.Value && t.Effect == want.Effect {
			return true
		}
	}
	return false
}
