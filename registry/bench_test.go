package registry

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

// A cached lookup: what every admission after the first pays per image.
func BenchmarkCachedLookup(b *testing.B) {
	s := registrytest.New(b)
	c := NewCache(newClient(s), CacheOptions{Metrics: NewMetrics(prometheus.NewRegistry())})
	tg := target(b, Config{}, s.Ref(registrytest.MultiArch), nil)
	if _, err := c.Lookup(context.Background(), tg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(context.Background(), tg); err != nil {
			b.Fatal(err)
		}
	}
}

// A cold lookup of each image kind, reporting the registry round trips it
// costs. "warm client": the connection and token are reused, as they are
// in a running kpoguard; "first contact" adds the ping and token.
func BenchmarkColdLookup(b *testing.B) {
	s := registrytest.New(b)
	kinds := []struct{ name, image string }{
		{"single-amd64", registrytest.AMD64},
		{"single-arm64", registrytest.ARM64},
		{"oci-index", registrytest.MultiArch},
		{"arm64-only-index", registrytest.ARM64Only},
		{"manifest-list", registrytest.ManifestList},
	}
	for _, mode := range []string{"warm-client", "first-contact"} {
		for _, k := range kinds {
			b.Run(mode+"/"+k.name, func(b *testing.B) {
				client := newClient(s)
				tg := target(b, Config{}, s.Ref(k.image), nil)
				if _, err := uncached(context.Background(), client, tg); err != nil {
					b.Fatal(err)
				}
				s.Reset()
				for b.Loop() {
					if mode == "first-contact" {
						// New pullers ping and fetch a token again; the
						// TCP and TLS connection is reused.
						client.pullers.Purge()
					}
					if _, err := NewCache(client, CacheOptions{}).Lookup(context.Background(), tg); err != nil {
						b.Fatal(err)
					}
				}
				trips := 0
				for _, kind := range []string{"ping", "token", "HEAD manifest", "GET manifest", "GET blob"} {
					trips += s.Requests(kind)
				}
				b.ReportMetric(float64(trips)/float64(b.N), "round-trips/op")
			})
		}
	}
}
