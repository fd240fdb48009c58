package webhook

import (
	"context"
	"fmt"
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

// budget is min(lookupTimeout, the time left before the admission's
// deadline minus the margin).
func (r *RegistryImages) budget(ctx context.Context, timeout time.Duration) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(min(timeout, time.Until(deadline)-r.Margin), 0)
	}
	return timeout
}

func (r *RegistryImages) lookup(ctx context.Context, conf registry.Config, image string, keys authn.Keychain, budget time.Duration) policy.ImageFacts {
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
