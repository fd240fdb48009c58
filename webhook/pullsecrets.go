package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// PullSecretKeychains reads a pod's imagePullSecrets and its service
// account's through the API, as the kubelet would pull with them (but the
// first credential matching a registry is the one used, where the kubelet
// tries each in turn). Keychains
// are kept for TTL, by namespace, service account and secret names, so a
// burst of task pods reads each Secret once.
type PullSecretKeychains struct {
	Client kubernetes.Interface
	TTL    time.Duration
	// OnPanic is told of a panic recovered while reading the secrets
	// (see LookupPanics); the read fails. Nil: recovered all the same.
	OnPanic func(recovered any)

	mu      sync.Mutex
	entries map[string]keychainEntry
	flights singleflight.Group
}

type keychainEntry struct {
	keys    authn.Keychain
	fetched time.Time
}

// maxKeychains bounds the cache; past it, expired entries are dropped.
const maxKeychains = 1000

// For implements Keychains.
func (k *PullSecretKeychains) For(ctx context.Context, pod *corev1.Pod) (authn.Keychain, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	names := make([]string, 0, len(pod.Spec.ImagePullSecrets))
	for _, s := range pod.Spec.ImagePullSecrets {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	key := pod.Namespace + "/" + sa + "/" + strings.Join(names, ",")

	k.mu.Lock()
	e, ok := k.entries[key]
	k.mu.Unlock()
	if ok && time.Since(e.fetched) < k.TTL {
		return e.keys, nil
	}
	// A burst of task pods reads the Secrets once, in a goroutine of
	// singleflight's, where a panic would end the process.
	ch := k.flights.DoChan(key, func() (_ any, err error) {
		defer recoverLookup(k.OnPanic, func(v any) { err = fmt.Errorf("reading pull secrets panicked: %v", v) })
		keys, err := kauth.New(ctx, k.Client, kauth.Options{Namespace: pod.Namespace, ServiceAccountName: sa, ImagePullSecrets: names})
		if err != nil {
			return nil, err
		}
		k.keep(key, keys)
		return keys, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(authn.Keychain), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k *PullSecretKeychains) keep(key string, keys authn.Keychain) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.entries == nil {
		k.entries = map[string]keychainEntry{}
	}
	if len(k.entries) >= maxKeychains {
		for key, e := range k.entries {
			if time.Since(e.fetched) >= k.TTL {
				delete(k.entries, key)
			}
		}
	}
	if len(k.entries) < maxKeychains {
		k.entries[key] = keychainEntry{keys: keys, fetched: time.Now()}
	}
}
