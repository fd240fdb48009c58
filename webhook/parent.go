package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kpoguard/kpoguard/policy"
)

// What the API server puts in userInfo.extra for a pod-bound
// service-account token (k8s.io/apiserver's serviceaccount package).
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"

	serviceAccountPrefix = "system:serviceaccount:"
)

// Labels KPO and the KubernetesExecutor put on their pods.
const (
	labelKubernetesExecutor = "kubernetes_executor"
	labelDagID              = "dag_id"
	labelTaskID             = "task_id"
	labelRunID              = "run_id"
)

// Results of a parent resolution, the values of
// kpoguard_parent_resolutions_total's result label.
const (
	resolutionFound              = "found"
	resolutionFoundAfterMiss     = "found-after-cache-miss"
	resolutionKubernetesExecutor = "kubernetes-executor"
	resolutionDefaultQueue       = "default-queue"
	resolutionUnknown            = "unknown"
	resolutionConflict           = "conflict"
)

// resolutionResults are how a resolution ends; conflicts are counted
// besides, by the mutating webhook only.
var resolutionResults = []string{resolutionFound, resolutionFoundAfterMiss, resolutionKubernetesExecutor,
	resolutionDefaultQueue, resolutionUnknown}

// Workers looks up Airflow worker pods and their nodes.
type Workers interface {
	// Worker returns the worker pod of that namespace, name and UID, and
	// whether it came from the cache. A pod that is not a worker, or has
	// another UID, is not found.
	Worker(ctx context.Context, namespace, name, uid string) (pod *corev1.Pod, cached bool, err error)
	// ExecutorPods returns the worker pods in a namespace that match sel.
	ExecutorPods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error)
	// NodeLabels returns a node's labels.
	NodeLabels(ctx context.Context, name string) (map[string]string, error)
}

var errNoWorkers = errors.New("kpoguard runs without worker lookups (no API access, or an empty --worker-selector)")

// WithoutNodes looks workers up but never reads nodes, for a kpoguard whose
// RBAC does not let it (the chart's workers.readNodes off): no read is
// attempted, refused and logged on every admission.
type WithoutNodes struct{ Workers }

var errNodesNotRead = errors.New("kpoguard does not read nodes (--read-nodes=false; the chart's workers.readNodes)")

// NodeLabels implements Workers.
func (WithoutNodes) NodeLabels(context.Context, string) (map[string]string, error) {
	return nil, errNodesNotRead
}

// resolveParent finds the worker that launched a pod, as the rules'
// nodePool.parent says: the worker pod the request's pod-bound token
// names, else the fallbacks in order. namespace is the request's. It
// returns the fact and the result to count.
func (d *Deps) resolveParent(ctx context.Context, user authenticationv1.UserInfo, namespace string, pod *corev1.Pod, np policy.NodePoolConfig) (*policy.Parent, string) {
	worker, cached, reason, failed := d.workerOf(ctx, user, namespace)
	if failed {
		// The token names a pod that could not be read: guessing a pool
		// by fallback could place a real worker's task elsewhere.
		return &policy.Parent{Via: policy.ViaUnknown, Reason: reason}, resolutionUnknown
	}
	if worker != nil {
		p, why := d.parentFrom(ctx, worker, np, nodeNameOf(user, worker))
		switch {
		case p != nil && p.Via == policy.ViaUnknown:
			return p, resolutionUnknown
		case p != nil && cached:
			return p, resolutionFound
		case p != nil:
			return p, resolutionFoundAfterMiss
		}
		reason = why
	}
	podBound := single(user.Extra[extraPodName]) != ""
	for _, f := range np.Parent.FallbacksFor(pod.Labels, podBound) {
		switch f {
		case policy.FallbackKubernetesExecutor:
			ke, why := d.kubernetesExecutorOf(ctx, namespace, pod.Labels)
			if ke == nil {
				reason += "; " + why
				continue
			}
			p, why := d.parentFrom(ctx, ke, np, ke.Spec.NodeName)
			if p == nil || p.Via == policy.ViaUnknown {
				reason += "; " + why
				continue
			}
			p.Via = policy.ViaKubernetesExecutor
			return p, resolutionKubernetesExecutor
		case policy.FallbackDefaultQueue:
			return &policy.Parent{Via: policy.ViaDefaultQueue, Queue: np.DefaultQueue}, resolutionDefaultQueue
		}
	}
	return &policy.Parent{Via: policy.ViaUnknown, Reason: reason}, resolutionUnknown
}

// workerOf returns the worker pod the request's identity is bound to, or
// why there is none, and whether the lookup itself failed. Only a service
// account of the pod's own namespace with a pod-bound token counts, and
// only a worker with the token's UID that is not itself a task pod.
func (d *Deps) workerOf(ctx context.Context, user authenticationv1.UserInfo, namespace string) (pod *corev1.Pod, cached bool, reason string, failed bool) {
	sa, ok := strings.CutPrefix(user.Username, serviceAccountPrefix+namespace+":")
	if !ok || sa == "" || strings.Contains(sa, ":") {
		return nil, false, fmt.Sprintf("the request came from %q, not from a service account of namespace %q", user.Username, namespace), false
	}
	name, uid := single(user.Extra[extraPodName]), single(user.Extra[extraPodUID])
	if name == "" || uid == "" {
		return nil, false, fmt.Sprintf("service account %q authenticated with a token that is not bound to a pod", sa), false
	}
	if d.Workers == nil {
		return nil, false, errNoWorkers.Error(), false
	}
	pod, cached, err := d.Workers.Worker(ctx, namespace, name, uid)
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, fmt.Sprintf("pod %q, which the request's token is bound to, is not a running worker (gone, or not matched by kpoguard's worker selector)", name), false
	case err != nil:
		return nil, false, fmt.Sprintf("looking up pod %q failed: %v", name, err), true
	case pod.Spec.ServiceAccountName != sa:
		return nil, false, fmt.Sprintf("pod %q runs as service account %q, not %q", name, pod.Spec.ServiceAccountName, sa), false
	}
	if _, task := pod.Labels[policy.TaskPodLabel]; task {
		// A task pod's labels are the DAG's: it is never a worker.
		return nil, false, fmt.Sprintf("pod %q is a task pod, not a worker", name), false
	}
	return pod, cached, "", false
}

// single returns the one value of an extra, or "" if there is not exactly one.
func single(values authenticationv1.ExtraValue) string {
	if len(values) != 1 {
		return ""
	}
	return values[0]
}

// nodeNameOf is the worker's node: from the token (Kubernetes 1.30+),
// else from the worker's spec.
func nodeNameOf(user authenticationv1.UserInfo, worker *corev1.Pod) string {
	if n := single(user.Extra[extraNodeName]); n != "" {
		return n
	}
	return worker.Spec.NodeName
}

// parentFrom reads what the policy's decision about a worker needs
// besides the worker (its node's labels) and has the policy decide.
func (d *Deps) parentFrom(ctx context.Context, worker *corev1.Pod, np policy.NodePoolConfig, nodeName string) (*policy.Parent, string) {
	node := policy.WorkerNode{Name: nodeName}
	if np.NeedsWorkerNode() && nodeName != "" {
		labels, err := d.Workers.NodeLabels(ctx, nodeName)
		if err != nil {
			node.Err = err.Error()
		}
		node.Labels = labels
	}
	return policy.WorkerParent(worker, node, np)
}

// kubernetesExecutorOf finds the KubernetesExecutor pod running the same
// task as a pod with these labels: the newest live one, if several.
func (d *Deps) kubernetesExecutorOf(ctx context.Context, namespace string, podLabels map[string]string) (*corev1.Pod, string) {
	set := labels.Set{labelKubernetesExecutor: "True"}
	for _, key := range []string{labelDagID, labelTaskID, labelRunID} {
		v, ok := podLabels[key]
		if !ok {
			return nil, fmt.Sprintf("the pod has no %s label to find a KubernetesExecutor pod by", key)
		}
		set[key] = v
	}
	if d.Workers == nil {
		return nil, errNoWorkers.Error()
	}
	pods, err := d.Workers.ExecutorPods(ctx, namespace, labels.SelectorFromSet(set))
	if err != nil {
		return nil, fmt.Sprintf("listing KubernetesExecutor pods failed: %v", err)
	}
	pods = slices.DeleteFunc(slices.Clone(pods), func(p *corev1.Pod) bool {
		// A task pod cannot be its own parent, however it is labelled.
		_, task := p.Labels[policy.TaskPodLabel]
		return task || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if len(pods) == 0 {
		return nil, fmt.Sprintf("no KubernetesExecutor pod runs task %s.%s of run %s", set[labelDagID], set[labelTaskID], set[labelRunID])
	}
	return slices.MaxFunc(pods, func(a, b *corev1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	}), ""
}
