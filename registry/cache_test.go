package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

// 100 concurrent admissions of one uncached image cause one upstream
// manifest fetch; once cached, none.
func TestCacheCollapsesConcurrentLookups(t *testing.T) {
	s := registrytest.New(t)
	for _, image := range []string{registrytest.AMD64, registrytest.MultiArch} {
		t.Run(image, func(t *testing.T) {
			s.Reset()
			s.SetDelay(0)
			c := NewCache(newClient(s), CacheOptions{})
			tg := target(t, Config{}, s.Ref(image), nil)
			var wg sync.WaitGroup
			var failed atomic.Int32
			for range 100 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if _, err := c.Lookup(ctx, tg); err != nil {
						failed.Add(1)
					}
				})
			}
			wg.Wait()
			if failed.Load() > 0 {
				t.Fatalf("%d lookups failed", failed.Load())
			}
			if got := s.Requests("GET manifest"); got != 1 {
				t.Errorf("GET manifest requests = %d, want 1", got)
			}
			if got := s.Requests("HEAD manifest"); got != 1 {
				t.Errorf("HEAD manifest requests = %d, want 1", got)
			}
			s.Reset()
			if _, err := c.Lookup(context.Background(), tg); err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"HEAD manifest", "GET manifest", "GET blob", "ping", "token"} {
				if got := s.Requests(kind); got != 0 {
					t.Errorf("cached lookup made %d %s requests", got, kind)
				}
			}
		})
	}
}

// fakeSource counts calls and answers from its fields.
type fakeSource struct {
	mu        sync.Mutex
	digest    v1.Hash
	digestErr error
	platforms map[v1.Hash][]v1.Platform
	heads     int
	gets      int
	// block, when set, holds Digest until it is closed.
	block chan struct{}
	// panics, when set, makes Digest panic with it.
	panics string
}

func (f *fakeSource) Digest(ctx context.Context, _ Target) (v1.Hash, error) {
	f.mu.Lock()
	f.heads++
	d, err, block, panics := f.digest, f.digestErr, f.block, f.panics
	f.mu.Unlock()
	if panics != "" {
		panic(panics)
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return v1.Hash{}, classify(ctx.Err())
		}
	}
	return d, err
}

func (f *fakeSource) Platforms(_ context.Context, _ Target, h v1.Hash) ([]v1.Platform, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	ps, ok := f.platforms[h]
	if !ok {
		return nil, &Error{Reason: ReasonNotFound, Err: errors.New("no such manifest")}
	}
	return ps, nil
}

func (f *fakeSource) set(d v1.Hash, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.digest, f.digestErr = d, err
}

func (f *fakeSource) calls() (heads, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heads, f.gets
}

func hash(n int) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", n)}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func fakeTarget(t *testing.T, image, identity string) Target {
	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Ref: ref, Class: ClassOther, Identity: identity}
}

var amd64 = []v1.Platform{{OS: "linux", Architecture: "amd64"}}
var arm64 = []v1.Platform{{OS: "linux", Architecture: "arm64"}}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A tag is trusted for TagTTL, then served stale while a background
// refresh picks up where it moved, then looked up again on the path.
func TestCacheTagTTLAndStaleWhileRevalidate(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64, hash(2): arm64}}
	m := NewMetrics(prometheus.NewRegistry())
	c := NewCache(src, CacheOptions{TagTTL: time.Minute, StaleTTL: time.Hour, Now: clk.Now, Metrics: m})
	tg := fakeTarget(t, "example.com/app:1", "")
	lookup := func() Result {
		t.Helper()
		res, err := c.Lookup(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	lookup()
	clk.Add(30 * time.Second)
	lookup()
	if heads, gets := src.calls(); heads != 1 || gets != 1 {
		t.Fatalf("within TagTTL: %d HEADs, %d GETs; want 1, 1", heads, gets)
	}

	// The tag moves; past TagTTL the old answer is served at once and
	// the refresh happens in the background, new manifest included.
	src.set(hash(2), nil)
	clk.Add(time.Minute)
	if res := lookup(); res.Platforms[0].Architecture != "amd64" {
		t.Errorf("stale lookup = %v, want the cached amd64", res.Platforms)
	}
	waitFor(t, "the background refresh", func() bool { h, g := src.calls(); return h == 2 && g == 2 })
	if res := lookup(); res.Platforms[0].Architecture != "arm64" {
		t.Errorf("after the refresh = %v, want arm64", res.Platforms)
	}
	if heads, gets := src.calls(); heads != 2 || gets != 2 {
		t.Errorf("after the refresh: %d HEADs, %d GETs; want 2, 2", heads, gets)
	}
	if got := testutil.ToFloat64(m.lookups.WithLabelValues(resultHit)); got != 3 {
		t.Errorf("hits = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.lookups.WithLabelValues(resultMiss)); got != 1 {
		t.Errorf("misses = %v, want 1", got)
	}

	// Past the stale window the lookup waits for the registry.
	clk.Add(2 * time.Hour)
	lookup()
	if heads, _ := src.calls(); heads != 3 {
		t.Errorf("past the stale window: %d HEADs, want 3", heads)
	}
}

// A failed background refresh keeps the stale digest and waits
// FailureTTL before trying again.
func TestCacheFailedRefreshKeepsStaleDigest(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64}}
	c := NewCache(src, CacheOptions{TagTTL: time.Minute, FailureTTL: 10 * time.Second, Now: clk.Now})
	tg := fakeTarget(t, "example.com/app:1", "")
	if _, err := c.Lookup(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	src.set(v1.Hash{}, &Error{Reason: ReasonUnreachable, Err: errors.New("down")})
	clk.Add(2 * time.Minute)
	for range 3 {
		if _, err := c.Lookup(context.Background(), tg); err != nil {
			t.Fatalf("stale digest not served while the registry is down: %v", err)
		}
		waitFor(t, "the refresh", func() bool { h, _ := src.calls(); return h == 2 })
	}
	clk.Add(11 * time.Second)
	if _, err := c.Lookup(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second refresh", func() bool { h, _ := src.calls(); return h == 3 })
}

// A lookup that panics, in a flight or in a background refresh (each a
// goroutine of its own), fails with ReasonInternal and is reported,
// instead of ending the process; a refresh keeps serving the stale digest.
func TestCacheRecoversFromPanics(t *testing.T) {
	for _, tc := range []struct {
		name       string
		background bool
	}{{"a lookup", false}, {"a background refresh", true}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: time.Unix(1e9, 0)}
			src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64}}
			var panics atomic.Int32
			c := NewCache(src, CacheOptions{TagTTL: time.Minute, Now: clk.Now, OnPanic: func(any) { panics.Add(1) }})
			tg := fakeTarget(t, "example.com/app:1", "")
			if tc.background {
				if _, err := c.Lookup(context.Background(), tg); err != nil {
					t.Fatal(err)
				}
				clk.Add(2 * time.Minute)
			}
			src.mu.Lock()
			src.panics = "source bug"
			src.mu.Unlock()
			res, err := c.Lookup(context.Background(), tg)
			if tc.background {
				if err != nil || res.Digest != hash(1) {
					t.Errorf("stale lookup = %v, %v; want the stale digest", res, err)
				}
				waitFor(t, "the refresh's panic", func() bool { return panics.Load() == 1 })
				return
			}
			if ReasonOf(err) != ReasonInternal || panics.Load() != 1 {
				t.Errorf("lookup error %v (%s), %d panics reported; want internal, 1", err, ReasonOf(err), panics.Load())
			}
		})
	}
}

// Failures are remembered for FailureTTL, so a broken image does not send
// every admission to the registry.
func TestCacheRemembersFailuresBriefly(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	src := &fakeSource{digestErr: &Error{Reason: ReasonNotFound, Err: errors.New("no such tag")}}
	c := NewCache(src, CacheOptions{FailureTTL: 10 * time.Second, Now: clk.Now})
	tg := fakeTarget(t, "example.com/app:1", "")
	for range 3 {
		if _, err := c.Lookup(context.Background(), tg); ReasonOf(err) != ReasonNotFound {
			t.Fatalf("error = %v, want not found", err)
		}
	}
	if heads, _ := src.calls(); heads != 1 {
		t.Errorf("%d HEADs within FailureTTL, want 1", heads)
	}
	clk.Add(11 * time.Second)
	_, _ = c.Lookup(context.Background(), tg)
	if heads, _ := src.calls(); heads != 2 {
		t.Errorf("%d HEADs after FailureTTL, want 2", heads)
	}
}

// Answers are kept apart per credential identity.
func TestCacheKeysHoldTheIdentity(t *testing.T) {
	src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64}}
	c := NewCache(src, CacheOptions{})
	for _, id := range []string{"", "a1b2", "c3d4", ""} {
		if _, err := c.Lookup(context.Background(), fakeTarget(t, "example.com/app:1", id)); err != nil {
			t.Fatal(err)
		}
	}
	if heads, gets := src.calls(); heads != 3 || gets != 3 {
		t.Errorf("%d HEADs, %d GETs for 3 identities; want 3, 3", heads, gets)
	}
}

// The cache holds at most Entries of each kind.
func TestCacheIsBounded(t *testing.T) {
	src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64}}
	m := NewMetrics(prometheus.NewRegistry())
	c := NewCache(src, CacheOptions{Entries: 5, Metrics: m})
	for i := range 20 {
		if _, err := c.Lookup(context.Background(), fakeTarget(t, fmt.Sprintf("example.com/app:%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.cacheEntries.WithLabelValues("tags")); got != 5 {
		t.Errorf("tag entries = %v, want 5", got)
	}
	if c.tags.Len() != 5 {
		t.Errorf("tags hold %d, want 5", c.tags.Len())
	}
}

// A caller leaving early does not fail the others sharing its lookup,
// and each waits no longer than its own deadline.
func TestCacheSharedLookupOutlivesItsFirstCaller(t *testing.T) {
	src := &fakeSource{digest: hash(1), platforms: map[v1.Hash][]v1.Platform{hash(1): amd64}, block: make(chan struct{})}
	c := NewCache(src, CacheOptions{})
	tg := fakeTarget(t, "example.com/app:1", "")
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	patient, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	done := make(chan error)
	go func() {
		_, err := c.Lookup(patient, tg)
		done <- err
	}()
	start := time.Now()
	_, err := c.Lookup(short, tg)
	if ReasonOf(err) != ReasonTimeout || time.Since(start) > time.Second {
		t.Errorf("short caller: %v after %v, want a timeout at its deadline", err, time.Since(start))
	}
	close(src.block)
	if err := <-done; err != nil {
		t.Errorf("the patient caller failed with the first caller: %v", err)
	}
}
