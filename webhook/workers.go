package webhook

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/kpoguard/kpoguard/policy"
)

// WorkerCache answers worker lookups from a bounded LRU of the workers
// it has been asked for, by namespace, name and UID, each kept for
// workerTTL and trimmed to what placement needs; a miss is a GET. It is
// not an informer over every pod the worker selector matches: anyone who
// may create pods can label any number of them like workers, and an
// informer would hold them all. Keyed by UID, an entry never answers for
// another pod of the same name; the TTL bounds how long a worker's changed
// labels or placement go unseen. Node labels come from an informer,
// started only when a policy asks for them: nodes are the cluster's, not
// the DAGs'.
type WorkerCache struct {
	ctx      context.Context
	client   kubernetes.Interface
	selector labels.Selector
	timeout  time.Duration
	metrics  *Metrics
	workers  *lru.Cache[workerKey, cachedWorker]
	// now is the clock; tests set it.
	now func() time.Time

	nodesOnce sync.Once
	nodes     atomic.Pointer[corelisters.NodeLister]
}

type workerKey struct{ namespace, name, uid string }

type cachedWorker struct {
	pod     *corev1.Pod
	fetched time.Time
}

// workerTTL is how long a worker read from the API server is trusted.
// Short, because a relabelled worker (moved to another queue, or out of
// the worker selector) should place its tasks accordingly soon; long
// enough that a Celery worker launching tasks all day costs a GET every
// half minute, and both webhooks of one pod, a few milliseconds apart,
// share one.
const workerTTL = 30 * time.Second

// NewWorkerCache returns a cache of at most size workers; timeout bounds
// each read from the API server, and ctx the node informer.
func NewWorkerCache(ctx context.Context, client kubernetes.Interface, selector labels.Selector, timeout time.Duration, size int, m *Metrics) (*WorkerCache, error) {
	workers, err := lru.New[workerKey, cachedWorker](size)
	if err != nil {
		return nil, err
	}
	return &WorkerCache{ctx: ctx, client: client, selector: selector, timeout: timeout, metrics: m, workers: workers, now: time.Now}, nil
}

// Worker returns a worker pod whose UID is uid.
func (c *WorkerCache) Worker(ctx context.Context, namespace, name, uid string) (*corev1.Pod, bool, error) {
	key := workerKey{namespace, name, uid}
	if e, ok := c.workers.Get(key); ok && c.now().Sub(e.fetched) < workerTTL {
		return e.pod, true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pod, err := c.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err != nil:
		return nil, false, err
	case string(pod.UID) != uid || !c.selector.Matches(labels.Set(pod.Labels)):
		// Not cached: a stale entry of this key is never served, and a
		// pod that is no worker takes no room from those that are.
		return nil, false, apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	pod = trimWorker(pod)
	if c.workers.Add(key, cachedWorker{pod: pod, fetched: c.now()}) {
		c.metrics.workerCacheEvictions.Inc()
	}
	c.metrics.workerCachePods.Set(float64(c.workers.Len()))
	return pod, false, nil
}

// IsWorker says whether the pod of that namespace and name is a worker,
// for the worker guard. It reads the pod from the API server, within the
// lookup timeout: an exec names no UID to key a cache by, and the pods it
// is asked about are mostly not workers (KPO execs into its xcom
// sidecars), which the cache keeps no room for.
func (c *WorkerCache) IsWorker(ctx context.Context, namespace, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pod, err := c.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return c.Selects(pod.Labels), nil
}

// Selects says whether a pod with these labels is a worker: the selector
// matches it and it is not a task pod, whose labels are the DAG's (see
// workerOf).
func (c *WorkerCache) Selects(podLabels map[string]string) bool {
	_, task := podLabels[policy.TaskPodLabel]
	return !task && c.selector.Matches(labels.Set(podLabels))
}

// ExecutorPods lists the worker pods matching sel from the API server,
// which filters them by label: the fallback's labels are the DAG's, so
// caching every pod they might match is what WorkerCache avoids.
func (c *WorkerCache) ExecutorPods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	reqs, _ := sel.Requirements()
	workers, _ := c.selector.Requirements()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	list, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.NewSelector().Add(reqs...).Add(workers...).String()})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// NodeLabels returns a node's labels.
func (c *WorkerCache) NodeLabels(ctx context.Context, name string) (map[string]string, error) {
	c.nodesOnce.Do(func() { go c.watchNodes() })
	node, _, err := lookup(ctx, &c.nodes, c.timeout,
		func(l corelisters.NodeLister) (*corev1.Node, bool) {
			node, err := l.Get(name)
			return node, err == nil
		},
		func(ctx context.Context) (*corev1.Node, error) {
			return c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return nil, err
	}
	return node.Labels, nil
}

func (c *WorkerCache) watchNodes() {
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithTransform(trimNode))
	nodes := factory.Core().V1().Nodes()
	publishWhenSynced(c.ctx, factory, nodes.Informer(), nodes.Lister(), &c.nodes)
}

// trimWorker keeps what resolving a parent reads of a worker pod (its
// identity, labels and placement): the rest (containers, volumes, status)
// would only cost the cache memory.
func trimWorker(pod *corev1.Pod) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Labels: pod.Labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: pod.Spec.ServiceAccountName, NodeName: pod.Spec.NodeName,
			NodeSelector: pod.Spec.NodeSelector, Tolerations: pod.Spec.Tolerations, Affinity: pod.Spec.Affinity,
		},
	}
}

// trimNode keeps a node's name and labels; a node's status (images,
// conditions) is most of its size.
func trimNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node.Name, Labels: node.Labels, ResourceVersion: node.ResourceVersion}}, nil
}
