package registry

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

// uncached looks a target up through a fresh cache: every answer comes
// from the source.
func uncached(ctx context.Context, src Source, t Target) (Result, error) {
	return NewCache(src, CacheOptions{}).Lookup(ctx, t)
}

func newClient(s *registrytest.Server) *Client {
	return NewClient(ClientOptions{RootCAs: s.CertPool, Backoff: 10 * time.Millisecond, Metrics: NewMetrics(prometheus.NewRegistry())})
}

func target(t testing.TB, cfg Config, image string, keys authn.Keychain) Target {
	t.Helper()
	tg, err := cfg.Target(context.Background(), image, keys)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func platformStrings(ps []v1.Platform) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.OS + "/" + p.Architecture
		if p.Variant != "" {
			out[i] += "/" + p.Variant
		}
	}
	return out
}

func TestClientPlatforms(t *testing.T) {
	s := registrytest.New(t)
	c := newClient(s)
	creds := authn.NewMultiKeychain(staticKeychain{s.Host: &authn.Basic{Username: registrytest.User, Password: registrytest.Password}})
	tests := []struct {
		image string
		keys  authn.Keychain
		want  []string
		// blobs is how many config blobs the lookup reads: one for a
		// single manifest, none for an index.
		blobs int
	}{
		{image: registrytest.AMD64, want: []string{"linux/amd64"}, blobs: 1},
		{image: registrytest.ARM64, want: []string{"linux/arm64/v8"}, blobs: 1},
		{image: registrytest.Windows, want: []string{"windows/amd64"}, blobs: 1},
		{image: registrytest.MultiArch, want: []string{"linux/amd64", "linux/arm64/v8"}},
		{image: registrytest.ARM64Only, want: []string{"linux/arm64/v8"}},
		{image: registrytest.ManifestList, want: []string{"linux/amd64", "linux/arm64/v8"}},
		{image: registrytest.Private, keys: creds, want: []string{"linux/amd64"}, blobs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			s.Reset()
			res, err := uncached(context.Background(), c, target(t, Config{}, s.Ref(tt.image), tt.keys))
			if err != nil {
				t.Fatal(err)
			}
			if got := platformStrings(res.Platforms); !slices.Equal(got, tt.want) {
				t.Errorf("platforms = %v, want %v", got, tt.want)
			}
			if got := s.Requests("HEAD manifest"); got != 1 {
				t.Errorf("HEAD manifest requests = %d, want 1 (tag to digest)", got)
			}
			if got := s.Requests("GET manifest"); got != 1 {
				t.Errorf("GET manifest requests = %d, want 1", got)
			}
			if got := s.Requests("GET blob"); got != tt.blobs {
				t.Errorf("GET blob requests = %d, want %d", got, tt.blobs)
			}
		})
	}
}

// A digest reference needs no HEAD.
func TestClientDigestReference(t *testing.T) {
	s := registrytest.New(t)
	c := newClient(s)
	res, err := uncached(context.Background(), c, target(t, Config{}, s.Ref(registrytest.MultiArch), nil))
	if err != nil {
		t.Fatal(err)
	}
	s.Reset()
	byDigest := s.Ref(strings.TrimSuffix(registrytest.MultiArch, ":1.0")) + "@" + res.Digest.String()
	again, err := uncached(context.Background(), c, target(t, Config{}, byDigest, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(platformStrings(again.Platforms), platformStrings(res.Platforms)) {
		t.Errorf("by digest %v, by tag %v", again.Platforms, res.Platforms)
	}
	if got := s.Requests("HEAD manifest"); got != 0 {
		t.Errorf("HEAD requests = %d, want 0", got)
	}
}

func TestClientFailures(t *testing.T) {
	s := registrytest.New(t)
	refused, err := registrytest.RefusedHost()
	if err != nil {
		t.Fatal(err)
	}
	wrongCreds := staticKeychain{s.Host: &authn.Basic{Username: registrytest.User, Password: "wrong"}}
	tests := []struct {
		name    string
		image   string
		keys    authn.Keychain
		setup   func()
		timeout time.Duration
		want    Reason
		// within bounds the lookup's time: failures come back inside the budget.
		within time.Duration
	}{
		{name: "missing", image: s.Ref(registrytest.Missing), want: ReasonNotFound},
		{name: "private without credentials", image: s.Ref(registrytest.Private), want: ReasonUnauthorized},
		{name: "private with wrong credentials", image: s.Ref(registrytest.Private), keys: wrongCreds, want: ReasonUnauthorized},
		{name: "401", image: s.Ref(registrytest.Unauthorized), want: ReasonUnauthorized},
		{name: "429 with a Retry-After beyond the budget", image: s.Ref(registrytest.RateLimited),
			setup: func() { s.SetRateLimit(100, "30") }, timeout: time.Second, want: ReasonRateLimited, within: 500 * time.Millisecond},
		{name: "429 without Retry-After, every time", image: s.Ref(registrytest.RateLimited),
			setup: func() { s.SetRateLimit(100, "") }, want: ReasonRateLimited},
		{name: "slower than the budget", image: s.Ref(registrytest.Slow),
			setup: func() { s.SetDelay(time.Second) }, timeout: 300 * time.Millisecond, want: ReasonTimeout, within: time.Second},
		{name: "connection refused", image: refused + "/app/amd64:1.0", timeout: 2 * time.Second, want: ReasonUnreachable, within: 2 * time.Second},
		{name: "not a reference", image: "UPPER/case:1", want: ReasonInvalid},
		{name: "a manifest beyond the size bound", image: s.Ref(registrytest.Huge), want: ReasonInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Reset()
			if tt.setup != nil {
				tt.setup()
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			tg, err := Config{}.Target(ctx, tt.image, tt.keys)
			if err == nil {
				_, err = uncached(ctx, newClient(s), tg)
			}
			if err == nil {
				t.Fatal("lookup succeeded")
			}
			if got := ReasonOf(err); got != tt.want {
				t.Errorf("reason = %s (%v), want %s", got, err, tt.want)
			}
			if tt.within > 0 && time.Since(start) > tt.within {
				t.Errorf("took %v, want within %v", time.Since(start), tt.within)
			}
		})
	}
}

// A 429 whose Retry-After fits the budget is retried after it.
func TestClientRetriesAfterRetryAfter(t *testing.T) {
	s := registrytest.New(t)
	s.SetRateLimit(1, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	res, err := uncached(ctx, newClient(s), target(t, Config{}, s.Ref(registrytest.RateLimited), nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := platformStrings(res.Platforms); !slices.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("platforms = %v", got)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("answered after %v: Retry-After: 1 was not honoured", waited)
	}
}

// go-containerregistry speaks plaintext to loopback and private-range
// registries on its own; kpoguard only where the policy says so.
func TestClientPlaintextOnlyForInsecureRegistries(t *testing.T) {
	plain, err := registrytest.StartPlaintext()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	c := NewClient(ClientOptions{})
	_, err = c.Digest(context.Background(), target(t, Config{}, plain.Ref(registrytest.AMD64), nil))
	if !errors.Is(err, errPlaintext) {
		t.Fatalf("error = %v, want plaintext refused", err)
	}
	insecure := Config{Registries: []Registry{{Name: "local", Host: plain.Host, Insecure: true}}}
	res, err := uncached(context.Background(), c, target(t, insecure, plain.Ref(registrytest.AMD64), nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := platformStrings(res.Platforms); !slices.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("platforms = %v", got)
	}
}

type staticKeychain map[string]authn.Authenticator

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[r.RegistryStr()]; ok {
		return a, nil
	}
	return authn.Anonymous, nil
}

// One registry host gets at most PerRegistry requests at once.
func TestClientLimitsConcurrencyPerRegistry(t *testing.T) {
	s := registrytest.New(t)
	c := NewClient(ClientOptions{RootCAs: s.CertPool, PerRegistry: 2})
	tg := target(t, Config{}, s.Ref(registrytest.Slow), nil)
	// Warm the client's token and connection, then slow the registry.
	if _, err := uncached(context.Background(), c, tg); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	s.SetDelay(100 * time.Millisecond)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := c.Digest(context.Background(), tg); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := s.Requests("HEAD manifest"); got != 6 {
		t.Fatalf("%d HEAD requests, want 6", got)
	}
	if got := s.MaxInFlight(); got != 2 {
		t.Errorf("at most %d requests at once, want 2", got)
	}
}

// A registry that answers HEAD with 405 is asked with GET.
func TestClientFallsBackToGETWhenHEADIsRefused(t *testing.T) {
	s := registrytest.New(t)
	res, err := uncached(context.Background(), newClient(s), target(t, Config{}, s.Ref(registrytest.NoHead), nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := platformStrings(res.Platforms); !slices.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("platforms = %v", got)
	}
	if h, g := s.Requests("HEAD manifest"), s.Requests("GET manifest"); h != 1 || g != 2 {
		t.Errorf("%d HEAD, %d GET manifest requests; want 1 refused HEAD, then GET by tag and by digest", h, g)
	}
}

// Waiting out a Retry-After holds no connection slot: other images of the
// host are looked up meanwhile.
func TestClientRetryWaitHoldsNoSlot(t *testing.T) {
	s := registrytest.New(t)
	c := NewClient(ClientOptions{RootCAs: s.CertPool, PerRegistry: 1})
	if _, err := uncached(context.Background(), c, target(t, Config{}, s.Ref(registrytest.AMD64), nil)); err != nil {
		t.Fatal(err)
	}
	s.SetRateLimit(1, "2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	limited := make(chan error)
	go func() {
		_, err := uncached(ctx, c, target(t, Config{}, s.Ref(registrytest.RateLimited), nil))
		limited <- err
	}()
	time.Sleep(200 * time.Millisecond) // the first attempt got its 429
	start := time.Now()
	if _, err := uncached(ctx, c, target(t, Config{}, s.Ref(registrytest.MultiArch), nil)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("another image waited %v behind a Retry-After", took)
	}
	if err := <-limited; err != nil {
		t.Errorf("the rate-limited image, retried after 2s: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{in: "3", want: 3 * time.Second, ok: true},
		{in: " 0 ", want: 0, ok: true},
		{in: "Mon, 30 Nov 2026 12:00:05 GMT", want: 5 * time.Second, ok: true},
		{in: "Mon, 30 Nov 2026 11:59:00 GMT", want: 0, ok: true},
		{in: "99999999999999999", want: maxRetryAfter, ok: true},
		{in: "-1"},
		{in: "soon"},
		{in: ""},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// 502, 503 and 504 are retried with backoff, like 429.
func TestClientRetriesUnavailable(t *testing.T) {
	s := registrytest.New(t)
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		s.Reset()
		s.SetThrottle(2, status, "")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := uncached(ctx, newClient(s), target(t, Config{}, s.Ref(registrytest.RateLimited), nil))
		cancel()
		if err != nil {
			t.Errorf("%d twice, then an answer: %v", status, err)
		}
		s.Reset()
		s.SetThrottle(100, status, "")
		_, err = uncached(context.Background(), newClient(s), target(t, Config{}, s.Ref(registrytest.RateLimited), nil))
		if want := statusReason(status); ReasonOf(err) != want {
			t.Errorf("%d every time: %v, want %s", status, err, want)
		}
	}
}
