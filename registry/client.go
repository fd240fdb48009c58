package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	lru "github.com/hashicorp/golang-lru/v2"
)

// ClientOptions configure a Client. Zero values take the defaults.
type ClientOptions struct {
	// RootCAs verify registries' certificates; nil: the system's.
	RootCAs *x509.CertPool
	// PerRegistry bounds concurrent requests to one host. Default 8.
	PerRegistry int
	// Attempts bounds the tries of one request, retries included. Default 3.
	Attempts int
	// Backoff is the first wait before a retry; it doubles. Default 100ms.
	Backoff time.Duration
	Metrics *Metrics
	// UserAgent names kpoguard to registries.
	UserAgent string
}

// pullerLifetime bounds how long a puller (and the tokens and repositories
// it remembers) is reused; maxPullers how many are kept.
const (
	pullerLifetime = 10 * time.Minute
	maxPullers     = 256
)

// Client asks registries, with one go-containerregistry Puller per
// registry and credential identity so that pings and tokens are reused.
type Client struct {
	transport http.RoundTripper
	userAgent string

	// pullers are bounded: registries and credentials come from pods.
	pullers *lru.Cache[string, pullerEntry]
}

type pullerEntry struct {
	puller  *remote.Puller
	created time.Time
}

// NewClient returns a Client.
func NewClient(o ClientOptions) *Client {
	if o.PerRegistry <= 0 {
		o.PerRegistry = 8
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.UserAgent == "" {
		o.UserAgent = "kpoguard"
	}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   o.PerRegistry,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	pullers, _ := lru.New[string, pullerEntry](maxPullers)
	return &Client{
		transport: &roundTripper{next: base, limit: o.PerRegistry, metrics: o.Metrics, attempts: o.Attempts, backoff: o.Backoff, slots: map[string]*hostSlots{}},
		userAgent: o.UserAgent,
		pullers:   pullers,
	}
}

// Digest resolves a tag with a HEAD request, which Docker Hub does not
// count against pull limits. A registry that answers HEAD badly is asked
// with GET.
func (c *Client) Digest(ctx context.Context, t Target) (v1.Hash, error) {
	p, err := c.puller(t)
	if err != nil {
		return v1.Hash{}, classify(err)
	}
	ctx = withTarget(ctx, t)
	d, err := p.Head(ctx, t.Ref)
	if err == nil {
		return d.Digest, nil
	}
	// Fall back to GET only when the registry answered HEAD badly (405,
	// or without a digest header), not when it could not be reached.
	var terr *transport.Error
	var nerr net.Error
	var own *Error
	if errors.As(err, &terr) && terr.StatusCode != http.StatusMethodNotAllowed || errors.As(err, &nerr) || errors.As(err, &own) || ctx.Err() != nil {
		return v1.Hash{}, classify(err)
	}
	desc, err := p.Get(ctx, t.Ref)
	if err != nil {
		return v1.Hash{}, classify(err)
	}
	return desc.Digest, nil
}

// Platforms reads the manifest with the digest: an index lists its
// entries' platforms; a single manifest has none, so its config blob is
// read for the os, architecture and variant it was built for.
func (c *Client) Platforms(ctx context.Context, t Target, digest v1.Hash) ([]v1.Platform, error) {
	p, err := c.puller(t)
	if err != nil {
		return nil, classify(err)
	}
	ctx = withTarget(ctx, t)
	desc, err := p.Get(ctx, t.Ref.Context().Digest(digest.String()))
	if err != nil {
		return nil, classify(err)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, &Error{Reason: ReasonInvalid, Err: err}
		}
		return indexPlatforms(idx), nil
	case desc.MediaType.IsImage():
		return imagePlatform(desc)
	}
	return nil, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("manifest of media type %q is not an image or an index", desc.MediaType)}
}

// maxPlatforms bounds the platforms kept of one index; real ones list a
// handful.
const maxPlatforms = 64

// indexPlatforms lists the runnable platforms of an index, each once,
// skipping the unknown/unknown entries build tools add for attestations.
func indexPlatforms(idx *v1.IndexManifest) []v1.Platform {
	var out []v1.Platform
	for _, m := range idx.Manifests {
		p := m.Platform
		if p == nil || p.OS == "unknown" || p.Architecture == "unknown" || m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		q := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		if !slices.ContainsFunc(out, func(have v1.Platform) bool { return have.Equals(q) }) && len(out) < maxPlatforms {
			out = append(out, q)
		}
	}
	return out
}

func imagePlatform(desc *remote.Descriptor) ([]v1.Platform, error) {
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, &Error{Reason: ReasonInvalid, Err: err}
	}
	if m.Config.Size <= 0 || m.Config.Size > maxConfigSize {
		return nil, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("config blob of %d bytes is larger than %d", m.Config.Size, maxConfigSize)}
	}
	img, err := desc.Image()
	if err != nil {
		return nil, classify(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, classify(err)
	}
	if cfg.OS == "" || cfg.Architecture == "" {
		return nil, &Error{Reason: ReasonInvalid, Err: errors.New("the image config names no os and architecture")}
	}
	return []v1.Platform{{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}, nil
}

func (c *Client) puller(t Target) (*remote.Puller, error) {
	key := t.Ref.Context().Registry.Name() + " " + t.Identity + insecureSuffix(t)
	if e, ok := c.pullers.Get(key); ok && time.Since(e.created) < pullerLifetime {
		return e.puller, nil
	}
	auth := t.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	p, err := remote.NewPuller(
		remote.WithTransport(c.transport),
		remote.WithAuth(auth),
		remote.WithUserAgent(c.userAgent),
		// The transport retries, within the caller's deadline.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	)
	if err != nil {
		return nil, err
	}
	c.pullers.Add(key, pullerEntry{puller: p, created: time.Now()})
	return p, nil
}

var _ Source = (*Client)(nil)
