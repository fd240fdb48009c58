package webhook

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/registry"
	"github.com/kpoguard/kpoguard/review"
)

// Keychains gives the credentials a pod pulls its images with.
type Keychains interface {
	For(ctx context.Context, pod *corev1.Pod) (authn.Keychain, error)
}

// RegistryImages looks a pod's images up in their registries, through the
// cache, all at once and within the admission's budget.
type RegistryImages struct {
	Cache *registry.Cache
	// Keychains reads pull secrets when the policy asks for them; nil:
	// anonymous lookups only.
	Keychains Keychains
	// Margin is left of the admission's deadline for everything else the
	// API server and kpoguard do with the request.
	Margin time.Duration
	Log    logr.Logger
	// OnPanic is told of a panic recovered in a lookup goroutine (see
	// LookupPanics); the image's lookup fails. Nil: recovered all the same.
	OnPanic func(recovered any)
}

// Resolve implements ImageResolver.
func (r *RegistryImages) Resolve(ctx context.Context, pod *corev1.Pod, cfg policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts {
	budget := r.budget(ctx, cfg.LookupTimeout)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var keys authn.Keychain
	if cfg.UsePullSecrets && r.Keychains != nil && len(images) > 0 {
		k, err := r.Keychains.For(ctx, pod)
		if err != nil {
			// The registry may still answer anonymously; if not, the
			// lookup fails as unauthorized and the policy decides.
			r.Log.Info("reading pull secrets failed; looking up anonymously", "namespace", pod.Namespace, "pod", review.PodName(pod), "error", err.Error())
		} else {
			keys = k
		}
	}
	conf := registryConfig(cfg)
	out := make(map[string]policy.ImageFacts, len(images))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, image := range images {
		wg.Go(func() {
			facts := r.lookup(ctx, conf, image, keys, budget)
			mu.Lock()
			out[image] = facts
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// LookupPanics is the OnPanic of RegistryImages, PullSecretKeychains and
// the registry cache: it logs a recovered panic with its stack, and counts
// it as kpoguard_admission_panics_total{webhook="image-lookup"} unless m
// is nil (kpoguard check). It runs in the deferred function that
// recovered, so the stack is the panic's.
func LookupPanics(m *Metrics, log logr.Logger) func(recovered any) {
	return func(v any) {
		if m != nil {
			m.panics.WithLabelValues(panicImageLookup).Inc()
		}
		log.Error(fmt.Errorf("panic: %v", v), "recovered from a panic in an image lookup", "stack", string(debug.Stack()))
	}
}

// recoverLookup is deferred by the goroutines a lookup starts, which the
// handler's recover does not cover: it recovers a panic, reports it, and
// hands it to fail so that the lookup fails instead of the process.
func recoverLookup(report func(any), fail func(recovered any)) {
	if v := recover(); v != nil {
		if report != nil {
			report(v)
		}
		fail(v)
	}
}

// budget is min(lookupTimeout, the time left before the admission's
// deadline minus the margin).
func (r *RegistryImages) budget(ctx context.Context, timeout time.Duration) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(min(timeout, time.Until(deadline)-r.Margin), 0)
	}
	return timeout
}

// lookup runs in a goroutine of its own: a panic fails this image's
// lookup instead of the process.
func (r *RegistryImages) lookup(ctx context.Context, conf registry.Config, image string, keys authn.Keychain, budget time.Duration) (facts policy.ImageFacts) {
	defer recoverLookup(r.OnPanic, func(any) { facts = policy.ImageFacts{Err: failureText(registry.ReasonInternal, budget)} })
	res, err := r.Cache.LookupImage(ctx, conf, image, keys)
	if err != nil {
		r.Log.V(1).Info("image lookup failed", "image", image, "error", err.Error())
		return policy.ImageFacts{Err: failureText(registry.ReasonOf(err), budget)}
	}
	return policy.ImageFacts{Platforms: platforms(res.Platforms)}
}

// failureText says why a lookup failed, for the DAG author; the details
// (URLs, registry messages) go to kpoguard's log.
func failureText(reason registry.Reason, budget time.Duration) string {
	switch reason {
	case registry.ReasonNotFound:
		return "the registry has no such image"
	case registry.ReasonUnauthorized:
		return "the registry refused access; check the pod's imagePullSecrets"
	case registry.ReasonRateLimited:
		return "the registry is rate limiting lookups"
	case registry.ReasonTimeout:
		return fmt.Sprintf("the registry did not answer within %v", budget.Round(10*time.Millisecond))
	case registry.ReasonUnreachable:
		return "the registry could not be reached"
	case registry.ReasonUnlisted:
		return "the policy does not let kpoguard ask this image's registry; use a registry your platform lists"
	case registry.ReasonInternal:
		return "kpoguard failed internally looking it up; its log says why"
	}
	return "the image reference or its manifest could not be read"
}

func platforms(ps []v1.Platform) []policy.Platform {
	out := make([]policy.Platform, len(ps))
	for i, p := range ps {
		out[i] = policy.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	}
	return out
}

func registryConfig(cfg policy.ImageArchitectureConfig) registry.Config {
	c := registry.Config{OnlyListed: cfg.OnlyListedRegistries}
	for _, r := range cfg.Registries {
		c.Registries = append(c.Registries, registry.Registry{Name: r.Name, Host: r.Host, Mirror: r.Mirror, Insecure: r.Insecure})
	}
	return c
}
