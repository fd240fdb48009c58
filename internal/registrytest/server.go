// Package registrytest serves go-containerregistry's in-memory registry
// over TLS on loopback, seeded with images of every shape kpoguard must
// read, behind a wrapper that speaks Docker Hub's token flow and injects
// faults. It never touches the internet.
package registrytest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Seeded images, as repository:tag.
const (
	AMD64        = "app/amd64:1.0"          // a single linux/amd64 OCI manifest
	ARM64        = "app/arm64:1.0"          // a single linux/arm64/v8 manifest: runs, then "exec format error" on amd64
	MultiArch    = "app/multi-arch:1.0"     // an OCI index: linux/amd64, linux/arm64/v8 and an attestation entry
	ARM64Only    = "app/arm64-only:1.0"     // an OCI index with linux/arm64/v8 only
	ManifestList = "app/manifest-list:1.0"  // a Docker schema-2 manifest list: linux/amd64, linux/arm64/v8
	Windows      = "app/windows:1.0"        // a single windows/amd64 manifest
	Private      = "private/app:1.0"        // linux/amd64, pulled only with User and Password
	Unauthorized = "fault/unauthorized:1.0" // every request answered 401
	RateLimited  = "fault/rate-limited:1.0" // 429 with Retry-After while RateLimit is set, then linux/amd64
	Slow         = "fault/slow:1.0"         // answered after Delay, then linux/amd64
	Missing      = "app/missing:1.0"        // never pushed: 404
	Huge         = "fault/huge:1.0"         // a 5 MiB manifest
	NoHead       = "fault/no-head:1.0"      // HEAD answered 405, as some registries do; linux/amd64
)

// seedingAgent marks the server's own pushes, which faults spare.
const seedingAgent = "registrytest-seed"

// User and Password are the credentials of the private repository.
const (
	User     = "robot"
	Password = "s3cret-pull-token"
)

// Server is the registry. Its fields that inject faults may be set at any
// time, under no lock: tests set them before the requests they shape.
type Server struct {
	// Host is host:port.
	Host string
	// CertPool trusts the server's certificate; CertPEM is the same
	// certificate for a --registry-ca-file.
	CertPool *x509.CertPool
	CertPEM  []byte

	srv    *httptest.Server
	scheme string
	inner  http.Handler

	mu          sync.Mutex
	requests    map[string]int
	rateLimit   int
	limitStatus int
	retryAfter  string
	delay       time.Duration
	inFlight    int
	maxInFlight int
}

// Start serves a registry over TLS on 127.0.0.1 and seeds it. Close stops it.
func Start() (*Server, error) { return start(true) }

// New starts a registry for a test or benchmark and stops it when that
// ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartPlaintext serves the registry over plaintext HTTP, as a registry
// inside a cluster network might.
func StartPlaintext() (*Server, error) { return start(false) }

func start(useTLS bool) (*Server, error) {
	s := &Server{inner: registry.New(registry.Logger(log.New(io.Discard, "", 0))), requests: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		s.srv.StartTLS()
		s.CertPool = x509.NewCertPool()
		s.CertPool.AddCert(s.srv.Certificate())
		s.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	} else {
		s.srv.Start()
	}
	s.scheme, s.Host, _ = strings.Cut(s.srv.URL, "://")
	if err := s.seed(); err != nil {
		s.Close()
		return nil, fmt.Errorf("seeding the registry: %w", err)
	}
	s.Reset()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Ref is the full reference of a seeded image.
func (s *Server) Ref(image string) string { return s.Host + "/" + image }

// Transport trusts the server, for clients outside kpoguard.
func (s *Server) Transport() http.RoundTripper {
	return s.srv.Client().Transport
}

// SetRateLimit makes the next n requests to RateLimited answer 429 with
// this Retry-After header ("" for none).
func (s *Server) SetRateLimit(n int, retryAfter string) {
	s.SetThrottle(n, http.StatusTooManyRequests, retryAfter)
}

// SetThrottle makes the next n requests to RateLimited answer status
// (429, 503, ...) with this Retry-After header ("" for none).
func (s *Server) SetThrottle(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.limitStatus, s.retryAfter = n, status, retryAfter
}

// SetDelay makes requests to Slow wait d before they are answered.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests counts the requests served since the last Reset by kind:
// "HEAD manifest", "GET manifest", "GET blob", "ping", "token".
func (s *Server) Requests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[kind]
}

// Reset forgets the counts and the injected faults.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = map[string]int{}
	s.rateLimit, s.retryAfter, s.delay = 0, "", 0
	s.maxInFlight = 0
}

// MaxInFlight is the most requests served at once since the last Reset.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// RefusedHost is a loopback address nothing listens on.
func RefusedHost() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	host := l.Addr().String()
	return host, l.Close()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	kind := requestKind(r)
	s.mu.Lock()
	s.requests[kind]++
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	delay, limited, retryAfter, status := time.Duration(0), false, s.retryAfter, s.limitStatus
	if strings.HasPrefix(r.URL.Path, "/v2/"+repository(Slow)+"/") {
		delay = s.delay
	}
	if strings.HasPrefix(r.URL.Path, "/v2/"+repository(RateLimited)+"/") && s.rateLimit > 0 {
		s.rateLimit--
		limited = true
	}
	s.mu.Unlock()

	switch {
	case kind == "token":
		s.token(w, r)
		return
	case kind == "ping":
		s.challenge(w, "")
		return
	}
	repo := strings.TrimPrefix(r.URL.Path, "/v2/")
	repo = repo[:max(strings.LastIndex(repo, "/manifests/"), strings.LastIndex(repo, "/blobs/"), 0)]
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case token != "public" && token != "private",
		strings.HasPrefix(repo, "private/") && token != "private":
		s.challenge(w, repo)
		return
	case repo == repository(Unauthorized):
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"access denied"}]}`, http.StatusUnauthorized)
		return
	case limited:
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"throttled"}]}`, status)
		return
	}
	if repo == repository(NoHead) && r.Method == http.MethodHead && !strings.Contains(r.UserAgent(), seedingAgent) {
		http.Error(w, "", http.StatusMethodNotAllowed)
		return
	}
	if repo == repository(Huge) && strings.Contains(r.URL.Path, "/manifests/") {
		s.huge(w, r)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("RateLimit-Limit", "100;w=21600")
	w.Header().Set("RateLimit-Remaining", "42;w=21600")
	s.inner.ServeHTTP(w, r)
}

func requestKind(r *http.Request) string {
	switch {
	case r.URL.Path == "/token":
		return "token"
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		return "ping"
	case strings.Contains(r.URL.Path, "/manifests/"):
		return r.Method + " manifest"
	case strings.Contains(r.URL.Path, "/blobs/"):
		return r.Method + " blob"
	}
	return r.Method + " other"
}

func repository(image string) string {
	repo, _, _ := strings.Cut(image, ":")
	return repo
}

// huge answers with a manifest far larger than any real one.
func (s *Server) huge(w http.ResponseWriter, r *http.Request) {
	const size = 5 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = ' '
	}
	body[0] = '{'
	body[size-1] = '}'
	sum := sha256.Sum256(body)
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	w.Header().Set("Docker-Content-Digest", "sha256:"+hex.EncodeToString(sum[:]))
	w.Header().Set("Content-Length", strconv.Itoa(size))
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// challenge asks for a bearer token, as Docker Hub does.
func (s *Server) challenge(w http.ResponseWriter, repo string) {
	c := `Bearer realm="` + s.scheme + `://` + s.Host + `/token",service="registrytest"`
	if repo != "" {
		c += `,scope="repository:` + repo + `:pull"`
	}
	w.Header().Set("WWW-Authenticate", c)
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
}

// token hands out "public" to anyone and "private" to User and Password;
// a scope on the private repository needs the latter.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	user, pass, hasBasic := r.BasicAuth()
	authed := hasBasic && user == User && pass == Password
	if hasBasic && !authed {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	token := "public"
	if authed {
		token = "private"
	}
	for _, sc := range r.URL.Query()["scope"] {
		if strings.HasPrefix(sc, "repository:private/") && !authed {
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": token, "access_token": token})
}

func (s *Server) seed() error {
	amd64, err := Image("linux", "amd64", "")
	if err != nil {
		return err
	}
	arm64, err := Image("linux", "arm64", "v8")
	if err != nil {
		return err
	}
	windows, err := Image("windows", "amd64", "")
	if err != nil {
		return err
	}
	attestation, err := Image("unknown", "unknown", "")
	if err != nil {
		return err
	}
	ociAMD64 := mutate.MediaType(mutate.ConfigMediaType(amd64, types.OCIConfigJSON), types.OCIManifestSchema1)
	images := map[string]v1.Image{AMD64: ociAMD64, ARM64: arm64, Windows: windows, Private: amd64, RateLimited: amd64, Slow: amd64, NoHead: amd64}
	entry := func(img v1.Image, os, arch, variant string) mutate.IndexAddendum {
		return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch, Variant: variant}}}
	}
	att := mutate.IndexAddendum{Add: attestation, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
	}}
	indexes := map[string]v1.ImageIndex{
		MultiArch:    mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), entry(ociAMD64, "linux", "amd64", ""), entry(arm64, "linux", "arm64", "v8"), att),
		ARM64Only:    mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), entry(arm64, "linux", "arm64", "v8")),
		ManifestList: mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), entry(amd64, "linux", "amd64", ""), entry(arm64, "linux", "arm64", "v8")),
	}
	opts := []remote.Option{
		remote.WithContext(context.Background()),
		remote.WithUserAgent(seedingAgent),
		remote.WithTransport(s.Transport()),
		remote.WithAuth(&authn.Basic{Username: User, Password: Password}),
	}
	for image, img := range images {
		ref, err := name.ParseReference(s.Ref(image))
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			return fmt.Errorf("%s: %w", image, err)
		}
	}
	for image, idx := range indexes {
		ref, err := name.ParseReference(s.Ref(image))
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			return fmt.Errorf("%s: %w", image, err)
		}
	}
	return nil
}

// Copy pushes the seeded image or index src under another name, such as
// "library/ubuntu:22.04" for a mirror of Docker Hub.
func (s *Server) Copy(src, dst string) error {
	opts := []remote.Option{remote.WithTransport(s.Transport()), remote.WithAuth(&authn.Basic{Username: User, Password: Password}), remote.WithUserAgent(seedingAgent)}
	from, err := name.ParseReference(s.Ref(src))
	if err != nil {
		return err
	}
	to, err := name.ParseReference(s.Ref(dst))
	if err != nil {
		return err
	}
	desc, err := remote.Get(from, opts...)
	if err != nil {
		return err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		return remote.WriteIndex(to, idx, opts...)
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return remote.Write(to, img, opts...)
}

// Image is a small random image whose config names its platform, the only
// place a single manifest records it.
func Image(os, arch, variant string) (v1.Image, error) {
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
