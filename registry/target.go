// Package registry finds the platforms an image runs on, with
// go-containerregistry: the entries of an index or manifest list, or the
// config blob of a single manifest. Client asks the registry; Cache sits in
// front of it so that admissions rarely wait on the network.
package registry

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Source is where platforms come from: a registry (Client), or a fake in
// tests; Cache sits in front of one. A tag costs a HEAD (Digest), and the
// digest a GET (Platforms).
type Source interface {
	// Digest resolves the target's tag to the digest of its manifest.
	Digest(ctx context.Context, t Target) (v1.Hash, error)
	// Platforms reads the platforms of the manifest with that digest.
	Platforms(ctx context.Context, t Target, digest v1.Hash) ([]v1.Platform, error)
}

// Result is what a lookup found.
type Result struct {
	Digest    v1.Hash
	Platforms []v1.Platform
}

// Registry is a registry the policy names: its name labels metrics, its
// mirror is asked instead of it, and only an insecure one is spoken to in
// plaintext HTTP.
type Registry struct {
	Name string
	// Host is the registry as images name it: "docker.io", "registry.example.com:5000".
	Host string
	// Mirror is a host, optionally with a path prefix, serving the same
	// repositories: "mirror.internal/dockerhub".
	Mirror   string
	Insecure bool
}

// Config is how images are reached.
type Config struct {
	Registries []Registry
	// OnlyListed asks no registry missing from Registries.
	OnlyListed bool
}

// ClassOther labels requests to registries the policy does not name.
const ClassOther = "other"

// Target is one image to look up, its mirror already applied.
type Target struct {
	Ref name.Reference
	// Class is the name of the configured registry, or ClassOther.
	Class string
	// Insecure allows plaintext HTTP: the policy lists the registry as insecure.
	Insecure bool
	Auth     authn.Authenticator
	// Identity is a hash of the credentials, never the credentials: it
	// keeps cached answers apart per credential.
	Identity string
}

// Key names the target's reference for one credential identity; an
// answer fetched over plaintext is never served where HTTPS is required.
func (t Target) Key() string { return t.Identity + " " + t.Ref.Name() + insecureSuffix(t) }

func insecureSuffix(t Target) string {
	if t.Insecure {
		return " insecure"
	}
	return ""
}

// Target parses an image as a pod names it, applies the configured mirror
// and resolves its credentials from the keychain (anonymous when nil).
func (c Config) Target(ctx context.Context, image string, keys authn.Keychain) (Target, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return Target{}, &Error{Reason: ReasonInvalid, Err: err}
	}
	t := Target{Ref: ref, Class: ClassOther}
	reg, ok := c.registry(ref.Context().RegistryStr())
	switch {
	case ok:
		t.Class, t.Insecure = reg.Name, reg.Insecure
		if t.Ref, err = reg.rewrite(ref); err != nil {
			return Target{}, &Error{Reason: ReasonInvalid, Err: err}
		}
	case c.OnlyListed:
		return Target{}, &Error{Reason: ReasonUnlisted, Err: fmt.Errorf("registry %s is not among the policy's registries", ref.Context().RegistryStr())}
	}
	if keys == nil {
		keys = authn.NewMultiKeychain()
	}
	auth, err := authn.Resolve(ctx, keys, t.Ref.Context())
	if err != nil {
		return Target{}, &Error{Reason: ReasonUnauthorized, Err: fmt.Errorf("reading credentials: %w", err)}
	}
	t.Auth = auth
	if t.Identity, err = identity(auth); err != nil {
		return Target{}, &Error{Reason: ReasonUnauthorized, Err: err}
	}
	return t, nil
}

func (c Config) registry(host string) (Registry, bool) {
	for _, r := range c.Registries {
		if strings.EqualFold(canonicalHost(r.Host), host) {
			return r, true
		}
	}
	return Registry{}, false
}

// canonicalHost is the registry name go-containerregistry uses:
// docker.io becomes index.docker.io.
func canonicalHost(host string) string {
	reg, err := name.NewRegistry(host)
	if err != nil {
		return host
	}
	return reg.RegistryStr()
}

// rewrite points ref at the mirror, keeping its repository path, tag or
// digest; plaintext only where the policy says the registry is insecure.
func (r Registry) rewrite(ref name.Reference) (name.Reference, error) {
	var opts []name.Option
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	host := r.Host
	repo := ref.Context().RepositoryStr()
	if r.Mirror != "" {
		var prefix string
		host, prefix, _ = strings.Cut(r.Mirror, "/")
		if prefix != "" {
			repo = prefix + "/" + repo
		}
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	return name.ParseReference(host+"/"+repo+sep+ref.Identifier(), opts...)
}

// identityKey keys the credential hashes: per process, so a hash says
// nothing outside it.
var identityKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}()

// identity is a keyed hash of what the authenticator would send.
// Anonymous is "".
func identity(auth authn.Authenticator) (string, error) {
	if auth == authn.Anonymous {
		return "", nil
	}
	cfg, err := auth.Authorization()
	if err != nil {
		return "", fmt.Errorf("reading credentials: %w", err)
	}
	if *cfg == (authn.AuthConfig{}) {
		return "", nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, identityKey)
	mac.Write(b)
	return hex.EncodeToString(mac.Sum(nil)), nil
}
