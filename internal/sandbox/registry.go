package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is go-containerregistry's in-memory OCI registry, served on
// loopback and seeded with images of known platforms.
type Registry struct {
	// Host is host:port of the registry.
	Host   string
	server *http.Server
}

// Seeded images, as repository:tag under the registry host.
const (
	ImageAMD64     = "demo/amd64-app:1.0"        // a single linux/amd64 manifest
	ImageARM64     = "demo/arm64-app:1.0"        // a single linux/arm64 manifest: would die with "exec format error"
	ImageARM64Only = "demo/arm64-only-index:1.0" // an index with only linux/arm64
	ImageMultiArch = "demo/multi-arch:1.0"       // an index: linux/amd64, linux/arm64 and an attestation
)

// StartRegistry serves a registry on 127.0.0.1 and pushes the seeded
// images into it.
func StartRegistry(ctx context.Context) (*Registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{Host: l.Addr().String(), server: &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 5 * time.Second,
	}}
	go func() {
		if err := r.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("registry: %v", err)
		}
	}()
	if err := r.seed(ctx); err != nil {
		r.Stop()
		return nil, fmt.Errorf("seeding the registry: %w", err)
	}
	return r, nil
}

// Stop shuts the registry down.
func (r *Registry) Stop() { _ = r.server.Close() }

// Ref is the full reference of a seeded image.
func (r *Registry) Ref(image string) string { return r.Host + "/" + image }

func (r *Registry) seed(ctx context.Context) error {
	amd64, err := platformImage("linux", "amd64", "")
	if err != nil {
		return err
	}
	arm64, err := platformImage("linux", "arm64", "v8")
	if err != nil {
		return err
	}
	// Build tools attach provenance as an index entry of platform
	// unknown/unknown; it runs nowhere.
	attestation, err := platformImage("unknown", "unknown", "")
	if err != nil {
		return err
	}
	entry := func(img v1.Image, os, arch, variant string) mutate.IndexAddendum {
		return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch, Variant: variant}}}
	}
	index := func(adds ...mutate.IndexAddendum) v1.ImageIndex {
		return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	for image, img := range map[string]v1.Image{ImageAMD64: amd64, ImageARM64: arm64} {
		ref, err := name.ParseReference(r.Ref(image))
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			return err
		}
	}
	for image, idx := range map[string]v1.ImageIndex{
		ImageARM64Only: index(entry(arm64, "linux", "arm64", "v8")),
		ImageMultiArch: index(entry(amd64, "linux", "amd64", ""), entry(arm64, "linux", "arm64", "v8"), entry(attestation, "unknown", "unknown", "")),
	} {
		ref, err := name.ParseReference(r.Ref(image))
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			return err
		}
	}
	return nil
}

// platformImage is a small random image whose config names its platform,
// the only place a single manifest records it.
func platformImage(os, arch, variant string) (v1.Image, error) {
	img, err := random.Image(256, 1)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture, cfg.Variant = os, arch, variant
	return mutate.ConfigFile(img, cfg)
}
