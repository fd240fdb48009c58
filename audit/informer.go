package audit

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// unfinished is the field selector of pods still to finish: the API
// server leaves the others out of the list and the watch.
const unfinished = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)

// WatchPods keeps the unfinished pods the selector selects (the task
// pods) in an informer's cache until ctx ends, and returns their lister
// once it has synced; it fails only when ctx ends first (the informer
// retries a failed LIST, logging why). Its API load is one LIST and one WATCH, however
// many pods: the API server filters by label and phase, and no pod is
// ever read alone. managedFields are dropped from the cache.
func WatchPods(ctx context.Context, client kubernetes.Interface, selector labels.Selector) (func() ([]*corev1.Pod, error), error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector, o.FieldSelector = selector.String(), unfinished
		}),
		informers.WithTransform(func(obj any) (any, error) {
			if pod, ok := obj.(*corev1.Pod); ok {
				pod.ManagedFields = nil
			}
			return obj, nil
		}))
	pods := factory.Core().V1().Pods()
	informer, lister := pods.Informer(), pods.Lister()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil, fmt.Errorf("listing task pods (%s): %w", selector, ctx.Err())
	}
	return func() ([]*corev1.Pod, error) { return lister.List(labels.Everything()) }, nil
}
