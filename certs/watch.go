package certs

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// watch signals changed whenever the Secret or either webhook
// configuration is created, changed or deleted: a configuration replaced
// by helm upgrade --force, Argo CD or a break-glass restore has no caBundle,
// and until it gets one the API server cannot call kpoguard.
func (m *Manager) watch(ctx context.Context, changed chan<- struct{}) error {
	signal := func() {
		select {
		case changed <- struct{}{}:
		default: // a sync is already due
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(_, _ any) { signal() },
		DeleteFunc: func(any) { signal() },
	}
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name })
	}
	// Watches by name, which RBAC matches to the resourceNames the chart
	// grants.
	configs := informers.NewSharedInformerFactoryWithOptions(m.Client, 0, byName(m.WebhookConfigurations))
	secrets := informers.NewSharedInformerFactoryWithOptions(m.Client, 0, informers.WithNamespace(m.Namespace), byName(m.SecretName))
	for _, informer := range []cache.SharedIndexInformer{
		configs.Admissionregistration().V1().MutatingWebhookConfigurations().Informer(),
		configs.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer(),
		secrets.Core().V1().Secrets().Informer(),
	} {
		if _, err := informer.AddEventHandler(handler); err != nil {
			return err
		}
	}
	configs.Start(ctx.Done())
	secrets.Start(ctx.Done())
	return nil
}
