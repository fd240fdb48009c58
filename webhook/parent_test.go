package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
)

// fakeWorkers serves worker pods from two sets: cached ones, and ones a
// GET finds (a worker started a moment ago).
type fakeWorkers struct {
	cached, fresh []*corev1.Pod
	err           error
	nodes         map[string]map[string]string
}

func (f *fakeWorkers) Worker(_ context.Context, ns, name, uid string) (*corev1.Pod, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	for i, set := range [][]*corev1.Pod{f.cached, f.fresh} {
		for _, p := range set {
			if p.Namespace == ns && p.Name == name && string(p.UID) == uid {
				return p, i == 0, nil
			}
		}
	}
	return nil, false, apierrors.NewNotFound(corev1.Resource("pods"), name)
}

func (f *fakeWorkers) ExecutorPods(_ context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []*corev1.Pod
	for _, p := range f.cached {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeWorkers) NodeLabels(_ context.Context, name string) (map[string]string, error) {
	l, ok := f.nodes[name]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("nodes"), name)
	}
	return l, nil
}

func workerPod(name, queue string, mod ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace, UID: types.UID(name + "-uid"),
			Labels: map[string]string{"component": "worker", "workerQueue": queue}},
		Spec: corev1.PodSpec{ServiceAccountName: "airflow-worker", NodeSelector: map[string]string{"pool": queue}},
	}
	for _, m := range mod {
		m(p)
	}
	return p
}

func boundTo(pod string, extra ...string) authenticationv1.UserInfo {
	u := authenticationv1.UserInfo{
		Username: "system:serviceaccount:" + testNamespace + ":airflow-worker",
		Extra:    map[string]authenticationv1.ExtraValue{extraPodName: {pod}, extraPodUID: {pod + "-uid"}},
	}
	if len(extra) == 2 {
		u.Extra[extra[0]] = authenticationv1.ExtraValue{extra[1]}
	}
	return u
}

func keTaskLabels() map[string]string {
	return map[string]string{"kubernetes_pod_operator": "True", "dag_id": "etl", "task_id": "load", "run_id": "manual__1", "airflow_kpo_in_cluster": "False"}
}

func executorPod(name, queue string, created time.Time, mod ...func(*corev1.Pod)) *corev1.Pod {
	return workerPod(name, queue, append([]func(*corev1.Pod){func(p *corev1.Pod) {
		p.Labels["kubernetes_executor"] = "True"
		p.Labels["dag_id"], p.Labels["task_id"], p.Labels["run_id"] = "etl", "load", "manual__1"
		p.CreationTimestamp = metav1.NewTime(created)
		p.Status.Phase = corev1.PodRunning
	}}, mod...)...)
}

const parentPolicy = basePolicy + `    nodePool:
      defaultQueue: default
      queueLabel: kpoguard.io/queue
      queues:
        default: {nodeSelector: {pool: default}}
        big: {nodeSelector: {pool: big}}
      parent:
        source: label
        queueLabels: [airflow.example.com/queue, workerQueue]
        fallbacks: [deny]
        outOfClusterFallbacks: [kubernetes-executor, default-queue]
`

func TestResolveParent(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	big := workerPod("worker-big-0", "big")
	tests := []struct {
		name       string
		policy     string
		workers    *fakeWorkers
		noWorkers  bool
		user       authenticationv1.UserInfo
		podLabels  map[string]string
		want       *policy.Parent
		wantResult string
	}{
		{
			name:       "the worker the token is bound to, from the cache",
			workers:    &fakeWorkers{cached: []*corev1.Pod{big}},
			user:       boundTo("worker-big-0"),
			want:       &policy.Parent{Via: policy.ViaIdentity, Worker: "worker-big-0", Queue: "big"},
			wantResult: resolutionFound,
		},
		{
			name:       "a worker not yet in the cache, by GET",
			workers:    &fakeWorkers{fresh: []*corev1.Pod{big}},
			user:       boundTo("worker-big-0"),
			want:       &policy.Parent{Via: policy.ViaIdentity, Worker: "worker-big-0", Queue: "big"},
			wantResult: resolutionFoundAfterMiss,
		},
		{
			name: "queue labels are tried in order",
			workers: &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "big", func(p *corev1.Pod) {
				p.Labels["airflow.example.com/queue"], p.Spec.NodeSelector["pool"] = "default", "default"
			})}},
			user:       boundTo("w"),
			want:       &policy.Parent{Via: policy.ViaIdentity, Worker: "w", Queue: "default"},
			wantResult: resolutionFound,
		},
		{
			name:       "a DAG's queue label does not matter to the resolver",
			workers:    &fakeWorkers{cached: []*corev1.Pod{big}},
			user:       boundTo("worker-big-0"),
			podLabels:  map[string]string{"kpoguard.io/queue": "default", "workerQueue": "default"},
			want:       &policy.Parent{Via: policy.ViaIdentity, Worker: "worker-big-0", Queue: "big"},
			wantResult: resolutionFound,
		},
		{
			name:       "a user is no worker",
			workers:    &fakeWorkers{cached: []*corev1.Pod{big}},
			user:       authenticationv1.UserInfo{Username: "alice", Extra: boundTo("worker-big-0").Extra},
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"`},
			wantResult: resolutionUnknown,
		},
		{
			name:    "a service account of another namespace is no worker",
			workers: &fakeWorkers{cached: []*corev1.Pod{big}},
			user: func() authenticationv1.UserInfo {
				u := boundTo("worker-big-0")
				u.Username = "system:serviceaccount:other:airflow-worker"
				return u
			}(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "system:serviceaccount:other:airflow-worker", not from a service account of namespace "astronomer-example-deployment-1234"`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a token bound to no pod",
			workers:    &fakeWorkers{cached: []*corev1.Pod{big}},
			user:       authenticationv1.UserInfo{Username: "system:serviceaccount:" + testNamespace + ":airflow-worker"},
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `service account "airflow-worker" authenticated with a token that is not bound to a pod`},
			wantResult: resolutionUnknown,
		},
		{
			name:    "two pod names in the extra are refused",
			workers: &fakeWorkers{cached: []*corev1.Pod{big}},
			user: func() authenticationv1.UserInfo {
				u := boundTo("worker-big-0")
				u.Extra[extraPodName] = authenticationv1.ExtraValue{"worker-big-0", "worker-big-1"}
				return u
			}(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `service account "airflow-worker" authenticated with a token that is not bound to a pod`},
			wantResult: resolutionUnknown,
		},
		{
			name:    "a pod of that name with another UID is not the worker",
			workers: &fakeWorkers{cached: []*corev1.Pod{big}},
			user: func() authenticationv1.UserInfo {
				u := boundTo("worker-big-0")
				u.Extra[extraPodUID] = authenticationv1.ExtraValue{"recreated"}
				return u
			}(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `pod "worker-big-0", which the request's token is bound to, is not a running worker (gone, or not matched by kpoguard's worker selector)`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a worker running as another service account",
			workers:    &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "big", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "admin" })}},
			user:       boundTo("w"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `pod "w" runs as service account "admin", not "airflow-worker"`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a lookup error",
			workers:    &fakeWorkers{err: errors.New("context deadline exceeded")},
			user:       boundTo("worker-big-0"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `looking up pod "worker-big-0" failed: context deadline exceeded`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a lookup error takes no fallback, even for a pod labelled out of cluster",
			policy:     strings.Replace(parentPolicy, "fallbacks: [deny]", "fallbacks: [default-queue]", 1),
			workers:    &fakeWorkers{err: errors.New("context deadline exceeded")},
			user:       boundTo("worker-big-0"),
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `looking up pod "worker-big-0" failed: context deadline exceeded`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a worker relabelled for another queue than its pool is not trusted",
			workers:    &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "default", func(p *corev1.Pod) { p.Labels["workerQueue"] = "big" })}},
			user:       boundTo("w"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Worker: "w", Reason: `worker "w" is labelled for queue "big" but is not pinned to its pool (nodeSelector pool=big), and it runs on no node yet`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a task pod's token is no worker's, however it is labelled",
			workers:    &fakeWorkers{cached: []*corev1.Pod{workerPod("task", "big", func(p *corev1.Pod) { p.Labels[policy.TaskPodLabel] = "True" })}},
			user:       boundTo("task"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `pod "task" is a task pod, not a worker`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a worker's token with an out-of-cluster label takes the in-cluster fallbacks",
			workers:    &fakeWorkers{},
			user:       boundTo("gone"),
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `pod "gone", which the request's token is bound to, is not a running worker (gone, or not matched by kpoguard's worker selector)`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "no worker lookups",
			noWorkers:  true,
			user:       boundTo("worker-big-0"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: errNoWorkers.Error()},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a worker's label naming no queue",
			workers:    &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "gpu")}},
			user:       boundTo("w"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `worker "w"'s label workerQueue="gpu" names no queue of the policy`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a worker without queue labels",
			workers:    &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "big", func(p *corev1.Pod) { delete(p.Labels, "workerQueue") })}},
			user:       boundTo("w"),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `worker "w" has none of the queue labels airflow.example.com/queue, workerQueue`},
			wantResult: resolutionUnknown,
		},
		{
			name: "a kubeconfig pod takes its KubernetesExecutor pod's queue: the newest live one",
			workers: &fakeWorkers{cached: []*corev1.Pod{
				executorPod("ke-old", "default", t0),
				executorPod("ke-new", "big", t0.Add(time.Minute)),
				executorPod("ke-done", "default", t0.Add(2*time.Minute), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				executorPod("ke-going", "default", t0.Add(2*time.Minute), func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }),
				executorPod("task-posing", "default", t0.Add(3*time.Minute), func(p *corev1.Pod) { p.Labels["kubernetes_pod_operator"] = "True" }),
				executorPod("other-run", "default", t0.Add(3*time.Minute), func(p *corev1.Pod) { p.Labels["run_id"] = "manual__2" }),
			}},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaKubernetesExecutor, Worker: "ke-new", Queue: "big"},
			wantResult: resolutionKubernetesExecutor,
		},
		{
			name:       "no KubernetesExecutor pod: the default queue",
			workers:    &fakeWorkers{},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaDefaultQueue, Queue: "default"},
			wantResult: resolutionDefaultQueue,
		},
		{
			name:       "in-cluster pods follow the other order",
			workers:    &fakeWorkers{cached: []*corev1.Pod{executorPod("ke", "big", t0)}},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  map[string]string{"dag_id": "etl", "task_id": "load", "run_id": "manual__1"},
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "every failed step is in the reason",
			policy:     strings.Replace(parentPolicy, "outOfClusterFallbacks: [kubernetes-executor, default-queue]", "outOfClusterFallbacks: [kubernetes-executor]", 1),
			workers:    &fakeWorkers{},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  map[string]string{"airflow_kpo_in_cluster": "False", "dag_id": "etl"},
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"; the pod has no task_id label to find a KubernetesExecutor pod by`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "a KubernetesExecutor pod whose queue is unknown",
			policy:     strings.Replace(parentPolicy, "outOfClusterFallbacks: [kubernetes-executor, default-queue]", "outOfClusterFallbacks: [kubernetes-executor]", 1),
			workers:    &fakeWorkers{cached: []*corev1.Pod{executorPod("ke", "gpu", t0)}},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"; worker "ke"'s label workerQueue="gpu" names no queue of the policy`},
			wantResult: resolutionUnknown,
		},
		{
			name:       "the KubernetesExecutor lookup fails",
			policy:     strings.Replace(parentPolicy, "outOfClusterFallbacks: [kubernetes-executor, default-queue]", "outOfClusterFallbacks: [kubernetes-executor]", 1),
			workers:    &fakeWorkers{err: errors.New("forbidden")},
			user:       authenticationv1.UserInfo{Username: "alice"},
			podLabels:  keTaskLabels(),
			want:       &policy.Parent{Via: policy.ViaUnknown, Reason: `the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"; listing KubernetesExecutor pods failed: forbidden`},
			wantResult: resolutionUnknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := parentPolicy
			if tt.policy != "" {
				doc = tt.policy
			}
			d := newDeps(t, doc)
			if !tt.noWorkers {
				d.Workers = tt.workers
			}
			rules, err := d.Policies.Current().RulesFor(policy.Namespace{Name: testNamespace})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tt.podLabels}}
			got, result := d.resolveParent(t.Context(), tt.user, testNamespace, pod, rules.NodePool)
			if !reflect.DeepEqual(got, tt.want) || result != tt.wantResult {
				t.Errorf("got %s %+v\nwant %s %+v", result, got, tt.wantResult, tt.want)
			}
		})
	}
}

// Inherit copies the worker's placement, with its node's labels when the
// policy names them.
func TestResolveParentInherit(t *testing.T) {
	req := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}
	tol := corev1.Toleration{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "big", Effect: corev1.TaintEffectNoSchedule}
	worker := workerPod("w", "big", func(p *corev1.Pod) {
		p.Spec.NodeName = "node-from-spec"
		p.Spec.Tolerations = []corev1.Toleration{tol}
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{req}}}}
	})
	bare := workerPod("bare", "", func(p *corev1.Pod) { p.Spec.NodeSelector = nil })
	nodes := map[string]map[string]string{
		"node-1":         {"node.kubernetes.io/instance-type": "m5.4xlarge", "eks.amazonaws.com/nodegroup": "big", "other": "x"},
		"node-from-spec": {"node.kubernetes.io/instance-type": "m5.8xlarge"},
	}
	const inherit = basePolicy + "    nodePool:\n      parent: {source: inherit, nodeLabels: [node.kubernetes.io/instance-type, eks.amazonaws.com/nodegroup]}\n"
	tests := []struct {
		name string
		user authenticationv1.UserInfo
		want *policy.Placement
		// refused is why, when the task is refused instead.
		refused string
	}{
		{name: "the node the token names", user: boundTo("w", extraNodeName, "node-1"), want: &policy.Placement{
			NodeSelector: map[string]string{"pool": "big", "node.kubernetes.io/instance-type": "m5.4xlarge", "eks.amazonaws.com/nodegroup": "big"},
			Tolerations:  []corev1.Toleration{tol}, Terms: []corev1.NodeSelectorTerm{req}}},
		{name: "the worker's own node without the extra", user: boundTo("w"), want: &policy.Placement{
			NodeSelector: map[string]string{"pool": "big", "node.kubernetes.io/instance-type": "m5.8xlarge"},
			Tolerations:  []corev1.Toleration{tol}, Terms: []corev1.NodeSelectorTerm{req}}},
		{name: "an unreadable node refuses the task", user: boundTo("w", extraNodeName, "gone"),
			refused: `the labels of node "gone", where worker "w" runs, could not be read: nodes "gone" not found`},
		{name: "a worker placed nowhere in particular, on a node", user: boundTo("bare", extraNodeName, "node-1"), want: &policy.Placement{
			NodeSelector: map[string]string{"node.kubernetes.io/instance-type": "m5.4xlarge", "eks.amazonaws.com/nodegroup": "big"}}},
		{name: "a worker placed nowhere, not yet scheduled: nothing to inherit, the fallback (deny) decides", user: boundTo("bare"),
			refused: `worker "bare" is pinned to no node pool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeps(t, inherit)
			d.Workers = &fakeWorkers{cached: []*corev1.Pod{worker, bare}, nodes: nodes}
			rules, err := d.Policies.Current().RulesFor(policy.Namespace{Name: testNamespace})
			if err != nil {
				t.Fatal(err)
			}
			got, result := d.resolveParent(t.Context(), tt.user, testNamespace, &corev1.Pod{}, rules.NodePool)
			if tt.refused != "" {
				if result != resolutionUnknown || got.Via != policy.ViaUnknown || !strings.Contains(got.Reason, tt.refused) {
					t.Errorf("got %s %+v, want refused: %s", result, got, tt.refused)
				}
				return
			}
			if result != resolutionFound || got.Via != policy.ViaIdentity || !reflect.DeepEqual(got.Placement, tt.want) {
				t.Errorf("got %s %+v\nwant placement %+v", result, got.Placement, tt.want)
			}
		})
	}
	// The copy is the task's: the cached worker stays as it was.
	if len(worker.Spec.NodeSelector) != 1 {
		t.Errorf("the worker's nodeSelector changed: %v", worker.Spec.NodeSelector)
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time      { return c.now }
func (c *fakeClock) Add(d time.Duration) { c.now = c.now.Add(d) }

// gets counts the GETs of pods a fake clientset was asked for.
func gets(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	return n
}

// The cache reads a worker with a GET and keeps it, trimmed, for
// workerTTL; a pod of another UID, or not a worker, is not found and not
// kept. Executor pods are listed by the API server, nodes come from their
// informer once it has synced.
func TestWorkerCache(t *testing.T) {
	worker := workerPod("w", "big", func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{{Name: "worker", Image: "airflow"}}
	})
	notWorker := workerPod("task", "big", func(p *corev1.Pod) { p.Labels["component"] = "task" })
	ke := executorPod("ke", "big", time.Now())
	keNotWorker := executorPod("ke-task", "big", time.Now(), func(p *corev1.Pod) { p.Labels["component"] = "task" })
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"size": "big"}},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"big-image"}}}}}
	workers := labels.SelectorFromSet(labels.Set{"component": "worker"})
	sel := labels.SelectorFromSet(labels.Set{"kubernetes_executor": "True", "run_id": "manual__1"})
	ctx := t.Context()
	client := fake.NewClientset(worker, notWorker, ke, keNotWorker, node)
	c, err := NewWorkerCache(ctx, client, workers, time.Second, 10, NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	c.now = clk.Now

	for i, want := range []struct {
		after  time.Duration
		cached bool
		gets   int
	}{
		{cached: false, gets: 1},
		{after: workerTTL - time.Second, cached: true, gets: 1},
		{after: 2 * time.Second, cached: false, gets: 2}, // past the TTL
	} {
		clk.Add(want.after)
		pod, cached, err := c.Worker(ctx, testNamespace, "w", "w-uid")
		if err != nil || pod.Name != "w" || cached != want.cached || gets(client) != want.gets {
			t.Errorf("lookup %d: %v cached=%v err=%v after %d GETs; want cached=%v after %d", i, pod, cached, err, gets(client), want.cached, want.gets)
		}
		if len(pod.Spec.Containers) != 0 || pod.Spec.NodeSelector["pool"] != "big" || pod.Spec.ServiceAccountName != "airflow-worker" {
			t.Errorf("worker not trimmed to its placement: %+v", pod)
		}
	}
	for _, tc := range []struct{ name, uid string }{{"w", "other-uid"}, {"task", "task-uid"}, {"missing", "x"}} {
		if _, _, err := c.Worker(ctx, testNamespace, tc.name, tc.uid); !apierrors.IsNotFound(err) {
			t.Errorf("%s/%s: %v, want not found", tc.name, tc.uid, err)
		}
	}
	if n := c.workers.Len(); n != 1 {
		t.Errorf("%d pods cached, want only the worker", n)
	}

	// A worker relabelled out of the selector is not found once its entry
	// is past the TTL.
	relabelled := worker.DeepCopy()
	relabelled.Labels["component"] = "retired"
	if _, err := client.CoreV1().Pods(testNamespace).Update(ctx, relabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Add(workerTTL)
	if _, _, err := c.Worker(ctx, testNamespace, "w", "w-uid"); !apierrors.IsNotFound(err) {
		t.Errorf("relabelled worker: %v, want not found", err)
	}

	if pods, err := c.ExecutorPods(ctx, testNamespace, sel); err != nil || len(pods) != 1 || pods[0].Name != "ke" {
		t.Errorf("executor pods: %v, %v; want only the worker ke", pods, err)
	}
	if l, err := c.NodeLabels(ctx, "n1"); err != nil || l["size"] != "big" {
		t.Errorf("node labels: %v, %v", l, err)
	}
	for deadline := time.Now().Add(5 * time.Second); c.nodes.Load() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node informer never synced")
		}
	}
	// The API fails from now on: the node informer still answers, and a
	// node it lacks goes to the API.
	client.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("API down")
	})
	if l, err := c.NodeLabels(ctx, "n1"); err != nil || l["size"] != "big" {
		t.Errorf("node labels from the cache: %v, %v", l, err)
	}
	if _, err := c.NodeLabels(ctx, "n2"); err == nil || err.Error() != "API down" {
		t.Errorf("a node missing from the cache: %v, want the GET's error", err)
	}
	if trimmed, _ := trimNode(node); len(trimmed.(*corev1.Node).Status.Images) != 0 || trimmed.(*corev1.Node).Labels["size"] != "big" {
		t.Errorf("trimNode kept %+v", trimmed)
	}
}

// However many pods are labelled like workers and looked up, the cache
// holds at most its size, drops the least recently used, and counts both.
func TestWorkerCacheIsBounded(t *testing.T) {
	const size = 3
	var pods []runtime.Object
	for i := range 10 {
		pods = append(pods, workerPod(fmt.Sprintf("look-alike-%d", i), "default"))
	}
	client := fake.NewClientset(pods...)
	m := NewMetrics()
	c, err := NewWorkerCache(t.Context(), client, labels.SelectorFromSet(labels.Set{"component": "worker"}), time.Second, size, m)
	if err != nil {
		t.Fatal(err)
	}
	lookUp := func(i int) bool {
		t.Helper()
		name := fmt.Sprintf("look-alike-%d", i)
		_, cached, err := c.Worker(t.Context(), testNamespace, name, name+"-uid")
		if err != nil {
			t.Fatal(err)
		}
		return cached
	}
	for i := range 10 {
		lookUp(i)
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"cached pods", float64(c.workers.Len()), size},
		{"kpoguard_worker_cache_pods", testutil.ToFloat64(m.workerCachePods), size},
		{"kpoguard_worker_cache_evictions_total", testutil.ToFloat64(m.workerCacheEvictions), 10 - size},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// In this order: looking 0 up first would evict 7.
	for _, c := range []struct {
		i    int
		want bool
	}{{9, true}, {7, true}, {0, false}} {
		if cached := lookUp(c.i); cached != c.want {
			t.Errorf("look-alike-%d cached = %v, want %v", c.i, cached, c.want)
		}
	}
	if _, err := NewWorkerCache(t.Context(), client, labels.Everything(), time.Second, 0, m); err == nil {
		t.Error("a cache of size 0 was made")
	}
}

// Through the handlers: the mutating webhook pins the pod to its worker's
// pool whatever the DAG's label says; the validating webhook refuses a
// pod whose worker is unknown; both count how.
func TestParentThroughHandlers(t *testing.T) {
	const conflictPolicy = parentPolicy + "        onConflict: override\n"
	taskPod := func(labels map[string]string) []byte {
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "task", Namespace: testNamespace, Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Image: "alpine"}}},
		}
		return []byte(mustJSON(t, pod))
	}
	as := func(user authenticationv1.UserInfo, raw []byte) admission.Request {
		r := newPodRequest(admissionv1.Create, raw)
		r.UserInfo = user
		return r
	}
	d := newDeps(t, conflictPolicy)
	d.Workers = &fakeWorkers{cached: []*corev1.Pod{workerPod("worker-big-0", "big")}}

	raw := taskPod(map[string]string{"kubernetes_pod_operator": "True", "kpoguard.io/queue": "default"})
	resp := d.MutatePods().Handle(t.Context(), as(boundTo("worker-big-0"), raw))
	mutated := applyPatch(t, raw, resp)
	var pod corev1.Pod
	if err := json.Unmarshal(mutated, &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeSelector["pool"] != "big" {
		t.Errorf("nodeSelector %v, want the worker's pool big", pod.Spec.NodeSelector)
	}
	if resp := d.ValidatePods().Handle(t.Context(), as(boundTo("worker-big-0"), mutated)); !resp.Allowed {
		t.Errorf("the placed pod was refused: %s", resp.Result.Message)
	}
	for _, c := range []struct {
		hook, result string
		want         float64
	}{{hookMutate, resolutionFound, 1}, {hookValidate, resolutionFound, 1}, {hookMutate, resolutionConflict, 1}} {
		if got := testutil.ToFloat64(d.Metrics.parentResolutions.WithLabelValues(c.hook, c.result)); got != c.want {
			t.Errorf("%s %s = %v, want %v", c.hook, c.result, got, c.want)
		}
	}

	resp = d.ValidatePods().Handle(t.Context(), as(authenticationv1.UserInfo{Username: "alice"}, raw))
	const want = `pod "task" is forbidden by kpoguard: [node-pool] request (userInfo): the Airflow worker that launched this pod could not be determined: ` +
		`the request came from "alice", not from a service account of namespace "astronomer-example-deployment-1234"; ` +
		`create task pods from an Airflow worker with its own service account (KubernetesPodOperator in_cluster=True), or ask your platform team`
	if resp.Allowed || resp.Result.Message != want {
		t.Errorf("unknown worker: allowed=%v\n%s\nwant:\n%s", resp.Allowed, resp.Result.Message, want)
	}
	if got := testutil.ToFloat64(d.Metrics.parentResolutions.WithLabelValues(hookValidate, resolutionUnknown)); got != 1 {
		t.Errorf("unknown resolutions = %v, want 1", got)
	}
}

// BenchmarkResolveParent times finding the launching worker in the
// worker cache: the path of every request but a worker's first in
// workerTTL.
func BenchmarkResolveParent(b *testing.B) {
	d := newDeps(b, parentPolicy)
	workers, err := NewWorkerCache(b.Context(), fake.NewClientset(workerPod("worker-big-0", "big")),
		labels.SelectorFromSet(labels.Set{"component": "worker"}), time.Second, 10, d.Metrics)
	if err != nil {
		b.Fatal(err)
	}
	// A stopped clock: however long the benchmark runs, the entry stays fresh.
	workers.now = (&fakeClock{now: time.Unix(1e9, 0)}).Now
	d.Workers = workers
	rules, err := d.Policies.Current().RulesFor(policy.Namespace{Name: testNamespace})
	if err != nil {
		b.Fatal(err)
	}
	pod := &corev1.Pod{}
	user := boundTo("worker-big-0")
	if _, result := d.resolveParent(b.Context(), user, testNamespace, pod, rules.NodePool); result != resolutionFoundAfterMiss {
		b.Fatalf("first resolution %s, want the worker read from the API", result)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, result := d.resolveParent(b.Context(), user, testNamespace, pod, rules.NodePool); result != resolutionFound {
			b.Fatal(result)
		}
	}
}

// Without node reads, a worker's queue label is verified by its own pins,
// and nodeLabels refuses the task rather than leaving the labels out.
func TestWithoutNodes(t *testing.T) {
	worker := workerPod("w", "big", func(p *corev1.Pod) { p.Spec.NodeName = "node-1" })
	nodes := map[string]map[string]string{"node-1": {"pool": "big", "type": "m5"}}
	for _, tt := range []struct {
		name, policy string
		want         *policy.Parent
	}{
		{"label, verified by the worker's nodeSelector", parentPolicy,
			&policy.Parent{Via: policy.ViaIdentity, Worker: "w", Queue: "big"}},
		{"inherit with nodeLabels: refused", basePolicy + "    nodePool:\n      parent: {source: inherit, nodeLabels: [type]}\n",
			&policy.Parent{Via: policy.ViaUnknown, Worker: "w", Reason: `the labels of node "node-1", where worker "w" runs, could not be read: ` + errNodesNotRead.Error()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeps(t, tt.policy)
			d.Workers = WithoutNodes{&fakeWorkers{cached: []*corev1.Pod{worker}, nodes: nodes}}
			rules, err := d.Policies.Current().RulesFor(policy.Namespace{Name: testNamespace})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := d.resolveParent(t.Context(), boundTo("w"), testNamespace, &corev1.Pod{}, rules.NodePool)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
