package registry

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

func TestConfigTarget(t *testing.T) {
	cfg := Config{Registries: []Registry{
		{Name: "dockerhub", Host: "docker.io", Mirror: "mirror.internal:5000/dockerhub"},
		{Name: "internal", Host: "registry.internal:5000", Insecure: true},
		{Name: "quay", Host: "quay.io", Mirror: "quay-mirror.internal"},
	}}
	tests := []struct {
		image, wantRef, wantClass string
		wantInsecure              bool
	}{
		{image: "alpine:3.20", wantRef: "mirror.internal:5000/dockerhub/library/alpine:3.20", wantClass: "dockerhub"},
		{image: "docker.io/apache/airflow:2.10.0", wantRef: "mirror.internal:5000/dockerhub/apache/airflow:2.10.0", wantClass: "dockerhub"},
		{image: "index.docker.io/library/busybox@sha256:" + strings.Repeat("a", 64), wantRef: "mirror.internal:5000/dockerhub/library/busybox@sha256:" + strings.Repeat("a", 64), wantClass: "dockerhub"},
		{image: "registry.internal:5000/team/etl:7", wantRef: "registry.internal:5000/team/etl:7", wantClass: "internal", wantInsecure: true},
		{image: "quay.io/org/tool", wantRef: "quay-mirror.internal/org/tool:latest", wantClass: "quay"},
		{image: "ghcr.io/org/tool:1", wantRef: "ghcr.io/org/tool:1", wantClass: ClassOther},
		{image: "REGISTRY.internal:5000/team/etl:8", wantRef: "registry.internal:5000/team/etl:8", wantClass: "internal", wantInsecure: true},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			tg, err := cfg.Target(context.Background(), tt.image, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := tg.Ref.Name(); got != tt.wantRef {
				t.Errorf("ref = %s, want %s", got, tt.wantRef)
			}
			if tg.Class != tt.wantClass || tg.Insecure != tt.wantInsecure {
				t.Errorf("class %q insecure %v, want %q %v", tg.Class, tg.Insecure, tt.wantClass, tt.wantInsecure)
			}
			if tg.Identity != "" {
				t.Errorf("anonymous identity = %q, want empty", tg.Identity)
			}
		})
	}
}

// The identity is a hash: equal credentials share it, others do not, and
// it never holds the secret.
func TestTargetIdentity(t *testing.T) {
	keys := func(user, pass string) authn.Keychain {
		return staticKeychain{"registry.example.com": &authn.Basic{Username: user, Password: pass}}
	}
	id := func(k authn.Keychain) string {
		tg, err := Config{}.Target(context.Background(), "registry.example.com/app:1", k)
		if err != nil {
			t.Fatal(err)
		}
		return tg.Identity
	}
	a, a2, b := id(keys("robot", "s3cret")), id(keys("robot", "s3cret")), id(keys("robot", "other"))
	if a == "" || a != a2 || a == b {
		t.Errorf("identities %q %q %q: want equal for equal credentials, different otherwise", a, a2, b)
	}
	if strings.Contains(a, "s3cret") || strings.Contains(a, "robot") {
		t.Errorf("identity %q holds the credentials", a)
	}
}

// A mirror answers for the registry it stands in for, and requests are
// counted under the registry's name from the policy.
func TestMirrorAndRequestMetrics(t *testing.T) {
	s := registrytest.New(t)
	m := NewMetrics(prometheus.NewRegistry())
	c := NewClient(ClientOptions{RootCAs: s.CertPool, Metrics: m})
	cfg := Config{Registries: []Registry{{Name: "dockerhub", Host: "docker.io", Mirror: s.Host}}}
	res, err := uncached(context.Background(), c, target(t, cfg, "docker.io/"+registrytest.ManifestList, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := platformStrings(res.Platforms); !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("platforms = %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("dockerhub", "GET", "200")); got < 1 {
		t.Errorf("GET 200 requests counted under dockerhub = %v", got)
	}
	if got := testutil.ToFloat64(m.rateLimitRemaining.WithLabelValues("dockerhub")); got != 42 {
		t.Errorf("rate limit remaining = %v, want 42", got)
	}
	if n := testutil.CollectAndCount(m.requests); n == 0 {
		t.Fatal("no requests counted")
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(ClassOther, "GET", "200")); got != 0 {
		t.Errorf("mirror requests counted as other: %v", got)
	}
}

// With OnlyListed, an image of another registry fails without a
// connection.
func TestConfigOnlyListed(t *testing.T) {
	cfg := Config{OnlyListed: true, Registries: []Registry{{Name: "platform", Host: "registry.example.com"}}}
	if _, err := cfg.Target(context.Background(), "registry.example.com/app:1", nil); err != nil {
		t.Errorf("a listed registry: %v", err)
	}
	for _, image := range []string{"alpine", "10.0.0.1:22/x:1", "evil.example.net/app:1"} {
		if _, err := cfg.Target(context.Background(), image, nil); ReasonOf(err) != ReasonUnlisted {
			t.Errorf("%s: error %v, want unlisted", image, err)
		}
	}
}
