package webhook

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/kpoguard/kpoguard/policy"
)

// WorkerCache answers worker lookups from an informer cache of the pods
// the worker selector matches (so its memory follows the number of
// workers, not of pods), trimmed to what placement needs. A pod missing
// from the cache, such as a worker started a moment ago, is read from the
// API server (see read). Node labels come from a second informer,
// started only when a policy asks for them.
type WorkerCache struct {
	ctx      context.Context
	client   kubernetes.Interface
	selector labels.Selector
	timeout  time.Duration

	podsOnce, nodesOnce sync.Once
	pods                atomic.Pointer[corelisters.PodLister]
	nodes               atomic.Pointer[corelisters.NodeLister]
}

// NewWorkerCache returns a cache of the pods selector matches, kept until
// ctx ends; timeout bounds each read made on a cache miss.
func NewWorkerCache(ctx context.Context, client kubernetes.Interface, selector labels.Selector, timeout time.Duration) *WorkerCache {
	return &WorkerCache{ctx: ctx, client: client, selector: selector, timeout: timeout}
}

// Worker returns a worker pod whose UID is uid.
func (c *WorkerCache) Worker(ctx context.Context, namespace, name, uid string) (*corev1.Pod, bool, error) {
	c.podsOnce.Do(func() { go c.watchPods() })
	pod, cached, err := lookup(ctx, &c.pods, c.timeout,
		func(l corelisters.PodLister) (*corev1.Pod, bool) {
			// A cached pod with another UID is an older pod of that
			// name: the API server has the truth.
			pod, err := l.Pods(namespace).Get(name)
			return pod, err == nil && string(pod.UID) == uid
		},
		func(ctx context.Context) (*corev1.Pod, error) {
			return c.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		})
	switch {
	case err != nil:
		return nil, false, err
	case string(pod.UID) != uid || !c.selector.Matches(labels.Set(pod.Labels)):
		return nil, false, apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	return pod, cached, nil
}

// IsWorker says whether the pod of that namespace and name is a worker,
// for the worker guard. Once the informer has synced its answer is final:
// it holds every pod the selector matches, so a pod it lacks is no worker,
// and exec into other pods (most execs, KPO's into its xcom sidecars
// among them) costs no read from the API server, nor fails when that is
// slow. A worker created within the watch's lag is not running yet, so
// there is nothing in it to exec into; a pod relabelled into the selector
// within it could be exec'd into a moment earlier anyway.
func (c *WorkerCache) IsWorker(ctx context.Context, namespace, name string) (bool, error) {
	c.podsOnce.Do(func() { go c.watchPods() })
	pod, _, err := lookup(ctx, &c.pods, c.timeout,
		func(l corelisters.PodLister) (*corev1.Pod, bool) {
			pod, _ := l.Pods(namespace).Get(name) // a miss is an answer too: nil
			return pod, true
		},
		func(ctx context.Context) (*corev1.Pod, error) {
			return c.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return pod != nil && c.Selects(pod.Labels), nil
}

// Selects says whether a pod with these labels is a worker: the selector
// matches it and it is not a task pod, whose labels are the DAG's (see
// workerOf).
func (c *WorkerCache) Selects(podLabels map[string]string) bool {
	_, task := podLabels[policy.TaskPodLabel]
	return !task && c.selector.Matches(labels.Set(podLabels))
}

// ExecutorPods lists worker pods matching sel, from the cache once it has
// synced and from the API before.
func (c *WorkerCache) ExecutorPods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	c.podsOnce.Do(func() { go c.watchPods() })
	reqs, _ := sel.Requirements()
	workers, _ := c.selector.Requirements()
	pods, _, err := lookup(ctx, &c.pods, c.timeout,
		func(l corelisters.PodLister) ([]*corev1.Pod, bool) {
			pods, err := l.Pods(namespace).List(sel)
			return pods, err == nil
		},
		func(ctx context.Context) ([]*corev1.Pod, error) {
			list, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.NewSelector().Add(reqs...).Add(workers...).String()})
			if err != nil {
				return nil, err
			}
			out := make([]*corev1.Pod, len(list.Items))
			for i := range list.Items {
				out[i] = &list.Items[i]
			}
			return out, nil
		})
	return pods, err
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

func (c *WorkerCache) watchPods() {
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = c.selector.String() }),
		informers.WithTransform(trimWorker))
	pods := factory.Core().V1().Pods()
	publishWhenSynced(c.ctx, factory, pods.Informer(), pods.Lister(), &c.pods)
}

func (c *WorkerCache) watchNodes() {
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithTransform(trimNode))
	nodes := factory.Core().V1().Nodes()
	publishWhenSynced(c.ctx, factory, nodes.Informer(), nodes.Lister(), &c.nodes)
}

// trimWorker keeps what resolving a parent reads of a worker pod: the
// rest (containers, volumes, status detail) would only cost memory.
func trimWorker(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Labels: pod.Labels,
			ResourceVersion: pod.ResourceVersion, CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: pod.Spec.ServiceAccountName, NodeName: pod.Spec.NodeName,
			NodeSelector: pod.Spec.NodeSelector, Tolerations: pod.Spec.Tolerations, Affinity: pod.Spec.Affinity,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}, nil
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
