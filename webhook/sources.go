package webhook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kpoguard/kpoguard/policy"
)

// WatchFile offers the policy file to the store now, then again whenever
// its content changes, checking every interval until ctx ends. Polling
// follows a mounted ConfigMap's symlink swaps, which file events miss.
// The first load's error is returned: kpoguard does not start on a bad
// policy.
func WatchFile(ctx context.Context, path string, interval time.Duration, store *PolicyStore) error {
	last, err := os.ReadFile(path)
	if err != nil {
		store.Refuse(err, path)
		return err
	}
	if err := store.Offer(last, path); err != nil {
		return err
	}
	go func() {
		var lastErr string
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			data, err := os.ReadFile(path)
			if err != nil {
				if err.Error() != lastErr {
					store.Refuse(err, path)
					lastErr = err.Error()
				}
				continue
			}
			// After a read error the same content is offered again, so the
			// reload gauge recovers when the file comes back unchanged.
			if !bytes.Equal(data, last) || lastErr != "" {
				last = data
				_ = store.Offer(data, path) // refusals are logged and counted by the store
			}
			lastErr = ""
		}
	}()
	return nil
}

// WatchConfigMap offers the policy in a ConfigMap's policy.yaml key to the
// store whenever the ConfigMap changes. It returns once the first version
// is loaded, or with the error that keeps kpoguard from starting.
func WatchConfigMap(ctx context.Context, client kubernetes.Interface, namespace, name string, store *PolicyStore) error {
	origin := "configmap " + namespace + "/" + name
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))
	informer := factory.Core().V1().ConfigMaps().Informer()
	offer := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		if data, ok := cm.Data[PolicyKey]; ok {
			_ = store.Offer([]byte(data), origin) // refusals are logged and counted by the store
			return
		}
		store.Refuse(errNoPolicyKey, origin)
	}
	registration, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    offer,
		UpdateFunc: func(_, obj any) { offer(obj) },
		DeleteFunc: func(any) { store.Refuse(fmt.Errorf("the ConfigMap was deleted"), origin) },
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The registration has synced once its handler saw the first version.
	if !cache.WaitForCacheSync(syncCtx.Done(), registration.HasSynced) {
		return fmt.Errorf("reading %s: timed out", origin)
	}
	if store.Current() != nil {
		return nil
	}
	obj, exists, err := informer.GetStore().GetByKey(namespace + "/" + name)
	switch {
	case err != nil:
		return fmt.Errorf("reading %s: %w", origin, err)
	case !exists:
		return fmt.Errorf("%s not found", origin)
	}
	data, ok := obj.(*corev1.ConfigMap).Data[PolicyKey]
	if !ok {
		return fmt.Errorf("%s: %w", origin, errNoPolicyKey)
	}
	_, err = policy.Load([]byte(data))
	return fmt.Errorf("%s: %w", origin, err)
}

var errNoPolicyKey = fmt.Errorf("no key %q", PolicyKey)

// NamespaceCache answers namespace labels from an informer cache, so
// admission requests do not wait on the API server for them. The informer
// starts on first use, that is only once a policy selects namespaces by
// label; until it has synced, and for a namespace created a moment ago,
// the labels come from a GET.
type NamespaceCache struct {
	ctx     context.Context
	client  kubernetes.Interface
	timeout time.Duration
	start   sync.Once
	lister  atomic.Pointer[corelisters.NamespaceLister]
}

// NewNamespaceCache returns a cache that watches namespaces until ctx
// ends; timeout bounds each read made on a cache miss.
func NewNamespaceCache(ctx context.Context, client kubernetes.Interface, timeout time.Duration) *NamespaceCache {
	return &NamespaceCache{ctx: ctx, client: client, timeout: timeout}
}

// Labels returns a namespace's labels.
func (c *NamespaceCache) Labels(ctx context.Context, name string) (map[string]string, error) {
	c.start.Do(func() { go c.watch() })
	ns, _, err := lookup(ctx, &c.lister, c.timeout,
		func(l corelisters.NamespaceLister) (*corev1.Namespace, bool) {
			ns, err := l.Get(name)
			return ns, err == nil
		},
		func(ctx context.Context) (*corev1.Namespace, error) {
			return c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return nil, err
	}
	return ns.Labels, nil
}

func (c *NamespaceCache) watch() {
	factory := informers.NewSharedInformerFactory(c.client, 0)
	namespaces := factory.Core().V1().Namespaces()
	publishWhenSynced(c.ctx, factory, namespaces.Informer(), namespaces.Lister(), &c.lister)
}

// lookup is how the informer caches (namespaces, nodes) answer: from
// their lister once that has synced (cached says whether it holds the
// object), else, and for what it does not hold yet (a namespace or node
// created a moment ago), from the API server within timeout, so that an
// admission never waits long on a slow API server. It reports whether
// the cache answered.
func lookup[L, T any](ctx context.Context, lister *atomic.Pointer[L], timeout time.Duration,
	cached func(L) (T, bool), get func(context.Context) (T, error)) (T, bool, error) {
	if l := lister.Load(); l != nil {
		if v, ok := cached(*l); ok {
			return v, true, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := get(ctx)
	return v, false, err
}

// publishWhenSynced starts the factory's informers and stores lister in dst
// once informer has synced; until then callers ask the API server.
func publishWhenSynced[L any](ctx context.Context, factory informers.SharedInformerFactory, informer cache.SharedIndexInformer, lister L, dst *atomic.Pointer[L]) {
	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		dst.Store(&lister)
	}
}
