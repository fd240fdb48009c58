package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// CacheOptions configure a Cache. Zero values take the defaults.
type CacheOptions struct {
	// Entries bounds each of the two caches (tags, manifests). Default 10000.
	Entries int
	// TagTTL is how long a tag's digest is trusted. Default 5m.
	TagTTL time.Duration
	// StaleTTL is how long past TagTTL a digest is still served while it is
	// refreshed in the background. Default 1h.
	StaleTTL time.Duration
	// FailureTTL is how long a failure is remembered. Default 15s.
	FailureTTL time.Duration
	// RefreshTimeout bounds a request to the registry, which goes on in the
	// background when its callers' budgets run out. Default 10s.
	RefreshTimeout time.Duration
	Metrics        *Metrics
	// OnPanic is told of a panic recovered in a lookup; the lookup fails
	// with ReasonInternal. Nil: recovered all the same.
	OnPanic func(recovered any)
	// Now is the clock; tests set it.
	Now func() time.Time
}

// Cache sits in front of a Source. A manifest's platforms are kept
// by digest (immutable) in a bounded LRU; a tag's digest for TagTTL, then
// served stale while refreshed in the background; failures for FailureTTL.
// Concurrent lookups of one key share one upstream request. Keys hold the
// credential identity's hash, never a credential.
type Cache struct {
	next      Source
	o         CacheOptions
	tags      *lru.Cache[string, cached[v1.Hash]]
	manifests *lru.Cache[string, cached[[]v1.Platform]]
	// failures are kept apart, so that a flood of bad references cannot
	// evict the answers admissions need.
	failures *lru.Cache[string, failure]
	flights  singleflight.Group
}

type cached[V any] struct {
	value   V
	fetched time.Time
	// nextRefresh holds off background refreshes of a stale entry.
	nextRefresh time.Time
}

// failure is a remembered error: its reason and a short text, never the
// request (which carries credentials) behind it.
type failure struct {
	err     *Error
	fetched time.Time
}

// NewCache puts a cache in front of next.
func NewCache(next Source, o CacheOptions) *Cache {
	if o.Entries <= 0 {
		o.Entries = 10000
	}
	if o.TagTTL <= 0 {
		o.TagTTL = 5 * time.Minute
	}
	if o.StaleTTL <= 0 {
		o.StaleTTL = time.Hour
	}
	if o.FailureTTL <= 0 {
		o.FailureTTL = 15 * time.Second
	}
	if o.RefreshTimeout <= 0 {
		o.RefreshTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tags, _ := lru.New[string, cached[v1.Hash]](o.Entries)
	manifests, _ := lru.New[string, cached[[]v1.Platform]](o.Entries)
	failures, _ := lru.New[string, failure](max(o.Entries/10, 100))
	return &Cache{next: next, o: o, tags: tags, manifests: manifests, failures: failures}
}

// LookupImage parses an image as a pod names it, resolves its credentials
// and mirror, and looks it up.
func (c *Cache) LookupImage(ctx context.Context, cfg Config, image string, keys authn.Keychain) (Result, error) {
	t, err := cfg.Target(ctx, image, keys)
	if err != nil {
		c.observe(time.Now(), false, err)
		return Result{}, err
	}
	return c.Lookup(ctx, t)
}

// Lookup finds the target's platforms, counting the result and its time:
// a tag through its digest, a digest reference directly.
func (c *Cache) Lookup(ctx context.Context, t Target) (Result, error) {
	start := time.Now()
	var upstream bool
	res, err := c.lookup(ctx, t, &upstream)
	c.observe(start, upstream, err)
	return res, err
}

func (c *Cache) lookup(ctx context.Context, t Target, upstream *bool) (Result, error) {
	var digest v1.Hash
	var err error
	if d, ok := t.Ref.(name.Digest); ok {
		if digest, err = v1.NewHash(d.DigestStr()); err != nil {
			return Result{}, &Error{Reason: ReasonInvalid, Err: err}
		}
	} else if digest, err = c.digest(ctx, t, upstream); err != nil {
		return Result{}, err
	}
	platforms, err := c.platforms(ctx, t, digest, upstream)
	if err != nil {
		return Result{}, err
	}
	return Result{Digest: digest, Platforms: platforms}, nil
}

func (c *Cache) observe(start time.Time, upstream bool, err error) {
	m := c.o.Metrics
	if m == nil {
		return
	}
	result, class := resultHit, resultHit
	switch {
	case err != nil:
		result, class = string(ReasonOf(err)), "error"
	case upstream:
		result, class = resultMiss, resultMiss
	}
	m.lookups.WithLabelValues(result).Inc()
	m.duration.WithLabelValues(class).Observe(time.Since(start).Seconds())
}

func (c *Cache) digest(ctx context.Context, t Target, upstream *bool) (v1.Hash, error) {
	key := "tag " + t.Key()
	if e, ok := c.tags.Get(key); ok {
		age := c.o.Now().Sub(e.fetched)
		switch {
		case age < c.o.TagTTL:
			return e.value, nil
		case age < c.o.TagTTL+c.o.StaleTTL:
			c.refreshTag(key, t, e)
			return e.value, nil
		}
	}
	if err := c.failed(key); err != nil {
		return v1.Hash{}, err
	}
	*upstream = true
	v, err := c.shared(ctx, key, func(ctx context.Context) (any, error) {
		// A flight that ended between the lookups above and this one
		// has just cached its answer.
		if e, ok := c.tags.Get(key); ok && c.o.Now().Sub(e.fetched) < c.o.TagTTL {
			return e.value, nil
		}
		if err := c.failed(key); err != nil {
			return nil, err
		}
		h, err := c.next.Digest(ctx, t)
		if err != nil {
			return nil, c.remember(key, err)
		}
		c.tags.Add(key, cached[v1.Hash]{value: h, fetched: c.o.Now()})
		c.count()
		return h, nil
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v.(v1.Hash), nil
}

func (c *Cache) platforms(ctx context.Context, t Target, digest v1.Hash, upstream *bool) ([]v1.Platform, error) {
	key := manifestKey(t, digest)
	if e, ok := c.manifests.Get(key); ok {
		return e.value, nil
	}
	if err := c.failed(key); err != nil {
		return nil, err
	}
	*upstream = true
	v, err := c.shared(ctx, key, func(ctx context.Context) (any, error) {
		if e, ok := c.manifests.Get(key); ok {
			return e.value, nil
		}
		if err := c.failed(key); err != nil {
			return nil, err
		}
		ps, err := c.next.Platforms(ctx, t, digest)
		if err != nil {
			return nil, c.remember(key, err)
		}
		c.manifests.Add(key, cached[[]v1.Platform]{value: ps, fetched: c.o.Now()})
		c.count()
		return ps, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]v1.Platform), nil
}

// failed is the remembered failure of key, while it is fresh.
func (c *Cache) failed(key string) error {
	if f, ok := c.failures.Get(key); ok && c.o.Now().Sub(f.fetched) < c.o.FailureTTL {
		return f.err
	}
	return nil
}

// remember keeps a failure for FailureTTL, reduced to its reason and a
// short text, and returns that.
func (c *Cache) remember(key string, err error) error {
	const maxText = 300
	c0 := classify(err)
	for {
		inner, ok := c0.Err.(*Error)
		if !ok {
			break
		}
		c0 = inner
	}
	text := c0.Err.Error()
	if len(text) > maxText {
		text = text[:maxText] + "..."
	}
	e := &Error{Reason: ReasonOf(err), Err: errors.New(text)}
	c.failures.Add(key, failure{err: e, fetched: c.o.Now()})
	c.count()
	return e
}

func manifestKey(t Target, digest v1.Hash) string {
	return "manifest " + t.Identity + " " + t.Ref.Context().Name() + "@" + digest.String() + insecureSuffix(t)
}

// shared runs fn once for all concurrent callers of key. Each caller waits
// no longer than its own deadline, but the request runs on, detached, for
// up to RefreshTimeout: a caller leaving does not fail the others, and a
// slow answer still lands in the cache for the next admission.
func (c *Cache) shared(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	deadline := time.Now().Add(c.o.RefreshTimeout)
	budget, hasBudget := ctx.Deadline()
	if hasBudget && budget.After(deadline) {
		deadline = budget
	}
	ch := c.flights.DoChan(key, c.recovering(func() (any, error) {
		fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		if hasBudget {
			fctx = withBudget(fctx, budget)
		}
		return fn(fctx)
	}))
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, classify(ctx.Err())
	}
}

// refreshTag asks for a stale tag's digest in the background, and for the
// new manifest's platforms when the tag moved. A failed refresh keeps the
// stale digest and is not retried for FailureTTL.
func (c *Cache) refreshTag(key string, t Target, stale cached[v1.Hash]) {
	now := c.o.Now()
	if now.Before(stale.nextRefresh) {
		return
	}
	stale.nextRefresh = now.Add(c.o.RefreshTimeout)
	c.tags.Add(key, stale)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.o.RefreshTimeout)
		defer cancel()
		_, _, _ = c.flights.Do(key, c.recovering(func() (any, error) {
			h, err := c.next.Digest(ctx, t)
			if err != nil {
				stale.nextRefresh = c.o.Now().Add(c.o.FailureTTL)
				c.tags.Add(key, stale)
				return nil, err
			}
			c.tags.Add(key, cached[v1.Hash]{value: h, fetched: c.o.Now()})
			if h != stale.value {
				var upstream bool
				_, _ = c.platforms(ctx, t, h, &upstream)
			}
			return h, nil
		}))
	}()
}

// recovering turns a panic in a flight into its error. A flight runs in a
// goroutine of its own, where no handler's recover reaches, and
// singleflight re-panics what it catches where nothing can recover it:
// either way one bad lookup would end the process.
func (c *Cache) recovering(fn func() (any, error)) func() (any, error) {
	return func() (v any, err error) {
		defer func() {
			if r := recover(); r != nil {
				if c.o.OnPanic != nil {
					c.o.OnPanic(r)
				}
				v, err = nil, &Error{Reason: ReasonInternal, Err: fmt.Errorf("panic: %v", r)}
			}
		}()
		return fn()
	}
}

func (c *Cache) count() {
	if m := c.o.Metrics; m != nil {
		m.cacheEntries.WithLabelValues("tags").Set(float64(c.tags.Len()))
		m.cacheEntries.WithLabelValues("manifests").Set(float64(c.manifests.Len()))
		m.cacheEntries.WithLabelValues("failures").Set(float64(c.failures.Len()))
	}
}
