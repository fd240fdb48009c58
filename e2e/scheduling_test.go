package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// Past admission: the real kube-scheduler binds the admitted task pods to
// the sandbox's simulated node pools (sandbox.NodePools), and kwok, in
// place of their kubelets, runs them. Each test starts the scheduler,
// the controllers and kwok for itself and stops them when it ends: the
// other tests expect the pods they create to stay where they put them.

// startScheduling starts scheduling for the test, and stops it when the
// test ends, after the test's own cleanups have deleted its pods.
func startScheduling(t *testing.T) {
	t.Helper()
	// Pods the tests before left pending (without a scheduler nothing
	// binds them, and some tests keep theirs to the end of the suite), or
	// on the pools' nodes of an earlier start, would take the pools' room
	// now: none of them is waited on any more.
	poolNode := map[string]bool{"": true}
	for _, p := range sandbox.NodePools {
		for _, n := range p.NodeObjects() {
			poolNode[n.Name] = true
		}
	}
	all, err := cluster.Client.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, p := range all.Items {
		if !poolNode[p.Spec.NodeName] {
			continue
		}
		if err := cluster.Client.CoreV1().Pods(p.Namespace).Delete(t.Context(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		deleted++
	}
	if deleted > 0 {
		t.Logf("deleted %d pods earlier tests left pending or on the pools", deleted)
	}
	start := time.Now()
	if err := cluster.StartScheduling(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.StopScheduling)
	t.Logf("kube-scheduler, kube-controller-manager, kwok and %d nodes ready in %v", len(poolNodes(t)), time.Since(start).Round(time.Millisecond))
}

// poolNodes returns the node pool of each simulated node.
func poolNodes(t *testing.T) map[string]*corev1.Node {
	t.Helper()
	nodes, err := cluster.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev1.Node{}
	for i, n := range nodes.Items {
		if n.Annotations[sandbox.SimulatedNodeAnnotation] != "" {
			byName[n.Name] = &nodes.Items[i]
		}
	}
	return byName
}

// smallTask is a task that sets its own size, small enough for hundreds to
// fit on the pools' nodes (the policy's default size would fill a node
// with 16).
func smallTask(p *corev1.Pod) {
	size := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("100m"),
		corev1.ResourceMemory:           resource.MustParse("256Mi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
	}
	p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: size, Limits: size}
}

// createPods creates pods with a client, a few at a time as Airflow's
// workers do, and returns each one's creation error.
func createPods(client kubernetes.Interface, ns string, pods []*corev1.Pod) []error {
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, p := range pods {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
		})
	}
	wg.Wait()
	return errs
}

// deletePodsOf deletes the namespace's pods matching a selector at once, as
// deletePod does one.
func deletePodsOf(t *testing.T, ns, selector string) {
	t.Helper()
	err := cluster.Client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Errorf("deleting pods %s in %s: %v", selector, ns, err)
	}
}

// waitRunning waits until every pod of the selector is bound to a node
// and running there, and returns them.
func waitRunning(t *testing.T, ns, selector string, want int) []corev1.Pod {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		list, err := cluster.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		running, waiting := 0, ""
		for _, p := range list.Items {
			if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
				running++
			} else {
				waiting = fmt.Sprintf("%s on %q: %s %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
			}
		}
		if len(list.Items) == want && running == want {
			return list.Items
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods %s in %s: %d of %d (want %d) bound and running after 60s; one waiting: %s", selector, ns, running, len(list.Items), want, waiting)
		}
	}
}

// placement counts the pods on each node, shown with its pool, instance
// type and zone.
func placement(nodes map[string]*corev1.Node, pods []corev1.Pod) map[string]int {
	counts := map[string]int{}
	for _, p := range pods {
		where := p.Spec.NodeName + " (not a pool node)"
		if n := nodes[p.Spec.NodeName]; n != nil {
			where = fmt.Sprintf("%s (%s %s %s)", n.Name, n.Labels[sandbox.NodePoolLabel], n.Labels[sandbox.InstanceTypeLabel], n.Labels[sandbox.ZoneLabel])
		}
		counts[where]++
	}
	return counts
}

func TestScheduledTaskPodsLandInTheirQueuesPool(t *testing.T) {
	startScheduling(t)
	const ns = "scheduling-queues"
	if err := cluster.CreateNamespace(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	nvmeTypes := []string{"m5d.4xlarge", "m6id.4xlarge"} // examples/policy.yaml's nvme queue
	queues := []struct {
		queue string
		// label is the pod's kpoguard.io/queue; none takes the default.
		label         string
		pods          int
		instanceTypes []string
	}{
		{queue: "default", pods: 150},
		{queue: "nvme", label: "nvme", pods: 100, instanceTypes: nvmeTypes},
	}
	var all []*corev1.Pod
	for _, q := range queues {
		for i := range q.pods {
			p := sandbox.TaskPod(fmt.Sprintf("%s-%03d", q.queue, i))
			smallTask(p)
			p.Labels["scheduling-test"] = q.queue
			if q.label != "" {
				p.Labels["kpoguard.io/queue"] = q.label
			}
			all = append(all, p)
		}
	}
	// Each would reach the scheduler if kpoguard let it in: a volume
	// claim on a pool's nodes, a pool the policy has no queue for, an
	// image that would die with "exec format error" on these amd64 nodes.
	refused := map[string]func(*corev1.Pod){
		"refused-pvc": func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared-data"}}}}
		},
		"refused-gpu": asksForGPU,
		"refused-arm64-only": func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = cluster.Registry.Ref(registrytest.ARM64Only)
		},
	}
	var refusedPods []*corev1.Pod
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		p := sandbox.TaskPod(name)
		smallTask(p)
		p.Labels["scheduling-test"] = "refused"
		refused[name](p)
		refusedPods = append(refusedPods, p)
	}
	t.Cleanup(func() { deletePodsOf(t, ns, "scheduling-test") })

	start := time.Now()
	for i, err := range createPods(cluster.Client, ns, all) {
		if err != nil {
			t.Fatalf("creating %s: %v", all[i].Name, err)
		}
	}
	for i, err := range createPods(cluster.Client, ns, refusedPods) {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want it refused", refusedPods[i].Name, err)
		}
	}
	created := time.Since(start)
	nodes := poolNodes(t)
	for _, q := range queues {
		pods := waitRunning(t, ns, "scheduling-test="+q.queue, q.pods)
		wrong := 0
		for _, p := range pods {
			n := nodes[p.Spec.NodeName]
			if n == nil || n.Labels[sandbox.NodePoolLabel] != q.queue || q.instanceTypes != nil && !slices.Contains(q.instanceTypes, n.Labels[sandbox.InstanceTypeLabel]) {
				wrong++
			}
		}
		t.Logf("queue %s: %d pods on %v", q.queue, len(pods), placement(nodes, pods))
		if wrong > 0 {
			t.Errorf("queue %s: %d of %d pods on a node outside its pool: %v", q.queue, wrong, len(pods), placement(nodes, pods))
		}
	}
	t.Logf("%d task pods created in %v, bound and running after %v", len(all), created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// The scheduler reports every pod it binds (Scheduled) or cannot
	// place (FailedScheduling) in an event regarding it: the admitted pods
	// are all it saw.
	admitted := map[string]bool{}
	for _, p := range all {
		admitted[p.Name] = true
	}
	var scheduled, other []string
	waitUntil(t, "a Scheduled event for every admitted pod", func() bool {
		events, err := cluster.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scheduled, other = nil, nil
		for _, e := range events.Items {
			if e.Reason == "Scheduled" && admitted[e.InvolvedObject.Name] {
				scheduled = append(scheduled, e.InvolvedObject.Name)
			} else {
				other = append(other, fmt.Sprintf("%s %s: %s", e.Reason, e.InvolvedObject.Name, e.Message))
			}
		}
		return len(scheduled) >= len(all)
	})
	if len(other) > 0 || len(scheduled) != len(all) {
		t.Errorf("scheduler events: %d Scheduled for %d admitted pods, and others: %s", len(scheduled), len(all), strings.Join(other, "; "))
	}
	for _, p := range refusedPods {
		if _, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused pod %s: %v, want it not found", p.Name, err)
		}
	}
}

// Workers as Airflow runs them, placed by the real scheduler: Celery
// workers of a StatefulSet as the official chart creates them, and a
// KubernetesExecutor pod as Airflow's scheduler creates it. Each launches
// tasks with a token bound to its pod, and the tasks land where it runs.
func TestTasksOfScheduledWorkersLandInTheirWorkersPool(t *testing.T) {
	setUpWorkers(t)
	startScheduling(t)
	nvme := func(s *corev1.PodSpec) {
		s.NodeSelector = map[string]string{nodePoolLabel: "nvme"}
		s.Tolerations = []corev1.Toleration{{Key: nodePoolLabel, Operator: corev1.TolerationOpEqual, Value: "nvme", Effect: corev1.TaintEffectNoSchedule}}
	}
	inZone := func(zone string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{nodePoolLabel: "default"}
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: sandbox.ZoneLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{zone}}}}}}}}
		}
	}
	const tasksPerWorker = 40
	const inherit = `{source: inherit, nodeLabels: [node.kubernetes.io/instance-type]}`
	pool, instanceType, zone := sandbox.NodePoolLabel, sandbox.InstanceTypeLabel, sandbox.ZoneLabel
	for _, c := range []struct {
		name, id, parent string
		// workers creates the workers, and returns the selector of their
		// pods and how many there are.
		workers func(t *testing.T, id string) (selector string, count int)
		// shared are the node labels a task's node shares with its
		// worker's: the pool always; what the worker's placement and node
		// hand down when the policy inherits.
		shared []string
	}{
		{"label: a Celery worker of each queue", "label-queues", `{source: label, queueLabels: [` + workerQueueKey + `]}`,
			func(t *testing.T, id string) (string, int) {
				startWorkerSet(t, id+"-default", "default", 1, func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{nodePoolLabel: "default"} })
				startWorkerSet(t, id+"-nvme", "nvme", 1, nvme)
				return "scheduling-test in (" + id + "-default," + id + "-nvme)", 2
			}, []string{pool}},
		{"inherit: Celery workers spread over the nvme pool's instance types", "inherit-nvme", inherit,
			func(t *testing.T, id string) (string, int) {
				startWorkerSet(t, id, "nvme", 2, nvme)
				return "scheduling-test=" + id, 2
			}, []string{pool, instanceType}},
		{"inherit: a KubernetesExecutor pod confined to a zone", "executor", inherit,
			func(t *testing.T, id string) (string, int) {
				startExecutorPod(t, id, inZone("us-east-1b"))
				return "scheduling-test=" + id, 1
			}, []string{pool, instanceType, zone}},
	} {
		t.Run(c.name, func(t *testing.T) {
			setPolicy(t, parentPolicy(t, c.parent))
			selector, count := c.workers(t, c.id)
			workers := waitRunning(t, parentNamespace, selector, count)
			nodes := poolNodes(t)
			start := time.Now()
			for _, w := range workers {
				tasks := make([]*corev1.Pod, tasksPerWorker)
				for i := range tasks {
					tasks[i] = sandbox.TaskPod(fmt.Sprintf("%s-task-%02d", w.Name, i))
					smallTask(tasks[i])
					tasks[i].Labels["scheduling-test"] = "task-of-" + w.Name
				}
				t.Cleanup(func() { deletePodsOf(t, parentNamespace, "scheduling-test=task-of-"+w.Name) })
				for i, err := range createPods(workerClient(t, &w), parentNamespace, tasks) {
					if err != nil {
						t.Fatalf("task %s of %s: %v", tasks[i].Name, w.Name, err)
					}
				}
			}
			for _, w := range workers {
				home := nodes[w.Spec.NodeName]
				if home == nil {
					t.Fatalf("worker %s runs on %q, not a pool node", w.Name, w.Spec.NodeName)
				}
				tasks := waitRunning(t, parentNamespace, "scheduling-test=task-of-"+w.Name, tasksPerWorker)
				wrong := 0
				for _, p := range tasks {
					n := nodes[p.Spec.NodeName]
					for _, label := range c.shared {
						if n == nil || n.Labels[label] != home.Labels[label] {
							wrong++
							break
						}
					}
					// nodeLabels: copied from the node the scheduler picked for the worker.
					if c.parent == inherit && p.Spec.NodeSelector[instanceType] != home.Labels[instanceType] {
						t.Errorf("task %s: nodeSelector %v, want its worker's node's %s", p.Name, p.Spec.NodeSelector, instanceType)
					}
				}
				t.Logf("worker %s on %v: its %d tasks on %v", w.Name, placement(nodes, []corev1.Pod{w}), len(tasks), placement(nodes, tasks))
				if wrong > 0 {
					t.Errorf("worker %s on %s: %d of %d tasks on a node that differs in %v: %v", w.Name, home.Name, wrong, len(tasks), c.shared, placement(nodes, tasks))
				}
			}
			t.Logf("%d tasks of %d workers created, bound and running in %v", tasksPerWorker*len(workers), len(workers), time.Since(start).Round(time.Millisecond))
		})
	}
}

// workerLabels are the official Airflow chart's labels on a worker pod,
// and the test's own to find them by.
func workerLabels(name, queue string) map[string]string {
	return map[string]string{"component": "worker", "release": "airflow", "tier": "airflow", workerQueueKey: queue, "scheduling-test": name}
}

func workerContainer(queue string) corev1.Container {
	return corev1.Container{Name: "worker", Image: "apache/airflow:3.1.0", Command: []string{"airflow", "celery", "worker", "-q", queue}}
}

// startWorkerSet creates Celery workers of a queue as the official Airflow
// chart does: a StatefulSet whose pods its workers values place (here by
// place), spread over nodes by its default anti-affinity.
func startWorkerSet(t *testing.T, name, queue string, replicas int32, place func(*corev1.PodSpec)) {
	t.Helper()
	labels := workerLabels(name, queue)
	spec := corev1.PodSpec{
		ServiceAccountName: workerAccount,
		Containers:         []corev1.Container{workerContainer(queue)},
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight:          100,
			PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"component": "worker"}}},
		}}}},
	}
	place(&spec)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template:    corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	sets := cluster.Client.AppsV1().StatefulSets(parentNamespace)
	if _, err := sets.Create(t.Context(), set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The pods' cleanup runs after the set's, which no longer replaces them.
	t.Cleanup(func() { deletePodsOf(t, parentNamespace, "scheduling-test="+name) })
	t.Cleanup(func() {
		if err := sets.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting StatefulSet %s: %v", name, err)
		}
	})
}

// startExecutorPod creates a KubernetesExecutor worker pod as Airflow's
// scheduler does, from the chart's pod template (component: worker) with
// the labels of the task it runs, placed by place.
func startExecutorPod(t *testing.T, name string, place func(*corev1.PodSpec)) {
	t.Helper()
	labels := workerLabels(name, "kubernetes")
	delete(labels, workerQueueKey)
	maps.Copy(labels, map[string]string{"kubernetes_executor": "True", "dag_id": "scheduling", "task_id": "extract", "run_id": "manual__2026-01-01", "try_number": "1"})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: workerAccount,
			RestartPolicy:      corev1.RestartPolicyNever,
			Containers:         []corev1.Container{{Name: "base", Image: "apache/airflow:3.1.0", Args: []string{"airflow", "tasks", "run", "scheduling", "extract", "manual__2026-01-01", "--local"}}},
		},
	}
	place(&pod.Spec)
	if _, err := cluster.Client.CoreV1().Pods(parentNamespace).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, parentNamespace, name) })
}

// The sandbox as `make run` starts it (Options.Scheduling): a task pod is
// bound to a node of its pool and runs, and Stop leaves none of the
// sandbox's processes behind.
func TestSandboxWithSchedulingStopsEveryProcess(t *testing.T) {
	work := t.TempDir()
	c, err := sandbox.Start(t.Context(), sandbox.Options{
		Kpoguard:   cluster.Kpoguard.Binary,
		RepoRoot:   repoRoot,
		PolicyFile: filepath.Join(repoRoot, "examples", "policy.yaml"),
		WorkDir:    work,
		Namespaces: []string{taskNamespace},
		Scheduling: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})
	if _, err := c.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), sandbox.TaskPod("scheduled"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the task pod running on a node of the default pool", func() bool {
		p, err := c.Client.CoreV1().Pods(taskNamespace).Get(t.Context(), "scheduled", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "pool-default-")
	})
	running := processesNaming(t, work)
	t.Logf("the sandbox's processes: %q", running)
	if len(running) < 5 {
		t.Fatalf("the sandbox's processes while it runs: %q, want etcd, kpoguard, kube-controller-manager, kube-scheduler and kwok at least", running)
	}
	c.Stop()
	stopped = true
	if left := processesNaming(t, work); len(left) > 0 {
		t.Errorf("left running after Stop: %q", left)
	}
}

// processesNaming lists the processes whose command line names a path
// under dir: every process of the sandbox working there but kube-apiserver,
// whose files are envtest's.
func processesNaming(t *testing.T, dir string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(cmdlines) == 0 {
		t.Skipf("no /proc to list processes from: %v", err)
	}
	var found []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue // gone meanwhile, or not the sandbox's
		}
		found = append(found, filepath.Base(string(bytes.SplitN(b, []byte{0}, 2)[0])))
	}
	slices.Sort(found)
	return found
}
