package policy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A request with a pod-bound token takes only the fallbacks labels cannot
// steer, whatever the policy lists and the pod's labels say.
func TestFallbacksForPodBoundRequests(t *testing.T) {
	c := ParentConfig{
		Fallbacks:             []Fallback{FallbackKubernetesExecutor, FallbackDefaultQueue},
		OutOfClusterFallbacks: []Fallback{FallbackKubernetesExecutor, FallbackDeny},
	}
	for _, tt := range []struct {
		name     string
		labels   map[string]string
		podBound bool
		want     []Fallback
	}{
		{"in cluster, no pod-bound token", nil, false, []Fallback{FallbackKubernetesExecutor, FallbackDefaultQueue}},
		{"out of cluster, no pod-bound token", map[string]string{InClusterLabel: "False"}, false, []Fallback{FallbackKubernetesExecutor, FallbackDeny}},
		{"pod-bound: no kubernetes-executor", nil, true, []Fallback{FallbackDefaultQueue}},
		{"pod-bound, labelled out of cluster: still the in-cluster list", map[string]string{InClusterLabel: "False"}, true, []Fallback{FallbackDefaultQueue}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.FallbacksFor(tt.labels, tt.podBound); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if !reflect.DeepEqual(c.Fallbacks, []Fallback{FallbackKubernetesExecutor, FallbackDefaultQueue}) {
		t.Errorf("the policy's list changed: %v", c.Fallbacks)
	}
}

// A worker's queue label is believed only where the worker runs in that
// queue's pool: by its node's labels, else by its own immutable pins.
func TestWorkerParentVerifiesTheQueueLabel(t *testing.T) {
	np := NodePoolConfig{
		Parent: ParentConfig{Source: ParentLabel, QueueLabels: []string{"queue"}},
		Queues: map[string]QueueSpec{
			"default": {NodeSelector: map[string]string{"pool": "default"}},
			"nvme": {NodeSelector: map[string]string{"pool": "nvme"},
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "type", Operator: corev1.NodeSelectorOpIn, Values: []string{"m5d"}}}},
			"gpu": {Tolerations: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}},
		},
	}
	worker := func(queue string, selector map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w", Labels: map[string]string{"queue": queue}},
			Spec: corev1.PodSpec{NodeSelector: selector}}
	}
	nvmeNode := WorkerNode{Name: "n1", Labels: map[string]string{"pool": "nvme", "type": "m5d"}}
	cpuNode := WorkerNode{Name: "n2", Labels: map[string]string{"pool": "default"}}
	unreadable := WorkerNode{Name: "n3", Err: "forbidden"}
	for _, tt := range []struct {
		name   string
		worker *corev1.Pod
		node   WorkerNode
		queue  string // the queue decided, or
		reason string // why the task is refused
	}{
		{"node in the claimed pool", worker("nvme", nil), nvmeNode, "nvme", ""},
		{"node outside the claimed pool", worker("nvme", nil), cpuNode, "", `worker "w" is labelled for queue "nvme" but runs on node "n2", which lacks pool=nvme`},
		{"node unreadable, pins hold the nodeSelector", worker("default", map[string]string{"pool": "default"}), unreadable, "default", ""},
		{"node unreadable, pins miss the matchExpressions", worker("nvme", map[string]string{"pool": "nvme"}), unreadable, "",
			`but is not pinned to its pool (required node affinity type In m5d), and node "n3" cannot be read: forbidden`},
		{"node unreadable, relabelled", worker("nvme", map[string]string{"pool": "default"}), unreadable, "", `is not pinned to its pool (nodeSelector pool=nvme)`},
		{"a queue told apart only by tolerations", worker("gpu", nil), cpuNode, "", `whose pool is told apart only by tolerations`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := WorkerParent(tt.worker, tt.node, np)
			switch {
			case p == nil:
				t.Fatal("no parent: the fallbacks would decide")
			case tt.queue != "" && (p.Via != ViaIdentity || p.Queue != tt.queue):
				t.Errorf("got %+v, want queue %s", p, tt.queue)
			case tt.queue == "" && (p.Via != ViaUnknown || !strings.Contains(p.Reason, tt.reason)):
				t.Errorf("got %+v, want refused: %s", p, tt.reason)
			}
		})
	}
}

// Inherit: only pins are evidence of a pool; tolerations follow a pinned
// worker, and never make one.
func TestWorkerParentInheritsOnlyPins(t *testing.T) {
	np := NodePoolConfig{Parent: ParentConfig{Source: ParentInherit, NodeLabels: []string{"type"}}}
	tol := []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
	for _, tt := range []struct {
		name     string
		selector map[string]string
		node     WorkerNode
		want     *Placement // nil: decides nothing, or
		refused  string     // refused with this reason
	}{
		{"tolerations alone pin nothing", nil, WorkerNode{}, nil, ""},
		{"tolerations alone, on a node without the copied labels", nil, WorkerNode{Name: "n", Labels: map[string]string{"other": "x"}}, nil, ""},
		{"a nodeSelector pins, and takes the tolerations along", map[string]string{"pool": "a"}, WorkerNode{},
			&Placement{NodeSelector: map[string]string{"pool": "a"}, Tolerations: tol}, ""},
		{"node labels pin", nil, WorkerNode{Name: "n", Labels: map[string]string{"type": "m5"}},
			&Placement{NodeSelector: map[string]string{"type": "m5"}, Tolerations: tol}, ""},
		{"a node that cannot be read refuses", map[string]string{"pool": "a"}, WorkerNode{Name: "n", Err: "timeout"}, nil, `the labels of node "n", where worker "w" runs, could not be read: timeout`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Spec: corev1.PodSpec{NodeSelector: tt.selector, Tolerations: tol}}
			p, why := WorkerParent(w, tt.node, np)
			switch {
			case tt.refused != "":
				if p == nil || p.Via != ViaUnknown || p.Reason != tt.refused {
					t.Errorf("got %+v, want refused: %s", p, tt.refused)
				}
			case tt.want == nil:
				if p != nil || !strings.Contains(why, "is pinned to no node pool") {
					t.Errorf("got %+v (%s), want nothing to inherit", p, why)
				}
			case p == nil || !reflect.DeepEqual(p.Placement, tt.want):
				t.Errorf("got %+v, want placement %+v", p, tt.want)
			}
		})
	}
}

// The linter warns about queues a worker's label cannot be verified for,
// in the document's rules and in each override.
func TestWarningsNameUnverifiableQueues(t *testing.T) {
	p := mustLoad(t, doc(`nodePool:
  defaultQueue: a
  parent: {source: label, queueLabels: [queue]}
  queues:
    a: {nodeSelector: {pool: x}}
    b: {nodeSelector: {pool: x}, tolerations: [{key: b, operator: Exists}]}
    c: {nodeSelector: {pool: c}}
`)+`  overrides:
  - namespaces: [team-a]
    rules:
      nodePool:
        queues:
          gpu: {tolerations: [{key: gpu, operator: Exists}]}
`)
	want := []string{
		"spec.rules.nodePool.queues[a] and spec.rules.nodePool.queues[b]: differ only by tolerations, so a worker's label cannot be verified between them",
		"spec.overrides[0].rules.nodePool.queues[gpu]: has no nodeSelector or matchExpressions, so a worker labelled for it cannot be verified to run in its pool: its tasks are refused",
	}
	if got := p.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := mustLoad(t, doc("nodePool: {queues: {a: {tolerations: [{key: a, operator: Exists}]}}, defaultQueue: a}\n")).Warnings(); got != nil {
		t.Errorf("warnings without source label: %v", got)
	}
}
