package webhook

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/registry"
)

// registryDeps are handler deps that look images up in s for real.
func registryDeps(t testing.TB, s *registrytest.Server, policyYAML string) *Deps {
	t.Helper()
	d := newDeps(t, policyYAML)
	m := registry.NewMetrics(d.Metrics.Registry)
	client := registry.NewClient(registry.ClientOptions{RootCAs: s.CertPool, Backoff: 10 * time.Millisecond, Metrics: m})
	d.Images = &RegistryImages{Cache: registry.NewCache(client, registry.CacheOptions{Metrics: m}), Margin: 100 * time.Millisecond, Log: logr.Discard()}
	return d
}

// kpoPod is the first KPO fixture with these images in its base
// container and, after the first, in init containers.
func kpoPod(t testing.TB, images ...string) []byte {
	t.Helper()
	var pod corev1.Pod
	if err := json.Unmarshal(fixture(t, "01-kpo-basic-no-resources.yaml"), &pod); err != nil {
		t.Fatal(err)
	}
	pod.Spec.Containers[0].Image = images[0]
	for i, image := range images[1:] {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "init-" + string(rune('a'+i)), Image: image})
	}
	b, err := json.Marshal(&pod)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const imagePolicy = basePolicy + "    imageArchitecture: {lookupTimeout: 500ms}\n"

// Decisions over a real registry, for every image shape.
func TestValidateImagesFromARegistry(t *testing.T) {
	s := registrytest.New(t)
	const fix = "build the image for linux/amd64: docker buildx build --platform linux/amd64, or FROM --platform=linux/amd64 in the Dockerfile"
	tests := []struct {
		name    string
		images  []string
		policy  string
		allowed bool
		// denial lists what the message must say, in order.
		denial  []string
		warning string
	}{
		{name: "single amd64 manifest", images: []string{s.Ref(registrytest.AMD64)}, allowed: true},
		{name: "multi-arch index with an attestation", images: []string{s.Ref(registrytest.MultiArch)}, allowed: true},
		{name: "Docker manifest list", images: []string{s.Ref(registrytest.ManifestList)}, allowed: true},
		{name: "arm64-only index", images: []string{s.Ref(registrytest.ARM64Only)},
			denial: []string{`image "` + s.Ref(registrytest.ARM64Only) + `"`, "is built only for linux/arm64/v8, but this cluster runs linux/amd64", fix}},
		{name: "single arm64 manifest: read from its config blob", images: []string{s.Ref(registrytest.ARM64)},
			denial: []string{`image "` + s.Ref(registrytest.ARM64) + `"`, "is built only for linux/arm64/v8", `"exec format error"`, fix}},
		{name: "windows-only image", images: []string{s.Ref(registrytest.Windows)},
			denial: []string{"is built only for windows/amd64"}},
		{name: "an arm64 init container among good images", images: []string{s.Ref(registrytest.AMD64), s.Ref(registrytest.MultiArch), s.Ref(registrytest.ARM64)},
			denial: []string{"spec.initContainers[1].image", "linux/arm64/v8"}},
		{name: "a trusted arm64 image is not looked up", images: []string{s.Ref(registrytest.ARM64)}, allowed: true,
			policy: "    imageArchitecture: {trustedImages: [\"" + s.Host + "/app/*\"]}\n"},
		{name: "missing image, allowed with a warning", images: []string{s.Ref(registrytest.Missing)}, allowed: true,
			warning: "its platforms could not be checked: the registry has no such image"},
		{name: "missing image, denied", images: []string{s.Ref(registrytest.Missing)},
			policy: "    imageArchitecture: {onLookupFailure: deny}\n",
			denial: []string{"its platforms could not be checked: the registry has no such image"}},
		{name: "private image without credentials, denied", images: []string{s.Ref(registrytest.Private)},
			policy: "    imageArchitecture: {onLookupFailure: deny}\n",
			denial: []string{"the registry refused access; check the pod's imagePullSecrets"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := imagePolicy
			if tt.policy != "" {
				p = basePolicy + tt.policy
			}
			d := registryDeps(t, s, p)
			resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, kpoPod(t, tt.images...)))
			wantAllowed := tt.allowed || tt.warning != ""
			if resp.Allowed != wantAllowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, wantAllowed, resp.Result)
			}
			msg := ""
			if resp.Result != nil {
				msg = resp.Result.Message
			}
			rest := msg
			for _, part := range tt.denial {
				i := strings.Index(rest, part)
				if i < 0 {
					t.Fatalf("denial %q does not say %q (in order)", msg, part)
				}
				rest = rest[i+len(part):]
			}
			if got := strings.Join(resp.Warnings, "\n"); !strings.Contains(got, tt.warning) || (tt.warning == "") != (got == "") {
				t.Errorf("warnings = %q, want %q", got, tt.warning)
			}
		})
	}
}

// A lookup failure follows onLookupFailure within the budget: a registry
// slower than lookupTimeout, rate limiting beyond it, or refusing
// connections never holds an admission past it.
func TestValidateLookupFailuresWithinBudget(t *testing.T) {
	s := registrytest.New(t)
	refused, err := registrytest.RefusedHost()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		image   string
		setup   func()
		reason  string
		timeout time.Duration // the API server's, from ?timeout=
		policy  string        // more imageArchitecture fields
	}{
		{name: "slower than lookupTimeout", image: s.Ref(registrytest.Slow), setup: func() { s.SetDelay(time.Second) },
			reason: "the registry did not answer within 300ms"},
		{name: "slower than the admission deadline", image: s.Ref(registrytest.Slow), setup: func() { s.SetDelay(time.Second) },
			timeout: 250 * time.Millisecond, reason: "the registry did not answer within 1"},
		{name: "rate limited with a Retry-After beyond the budget", image: s.Ref(registrytest.RateLimited), setup: func() { s.SetRateLimit(100, "3") },
			reason: "the registry is rate limiting lookups"},
		{name: "connection refused", image: refused + "/app/amd64:1.0", reason: "the registry could not be reached"},
		{name: "a registry the policy does not list", image: "unlisted.example.com/app:1", policy: ", onlyListedRegistries: true",
			reason: "the policy does not let kpoguard ask this image's registry"},
	}
	for _, mode := range []string{"allow", "deny"} {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				s.Reset()
				if tt.setup != nil {
					tt.setup()
				}
				d := registryDeps(t, s, basePolicy+"    imageArchitecture: {lookupTimeout: 300ms, onLookupFailure: "+mode+tt.policy+"}\n")
				ctx := t.Context()
				budget := 300 * time.Millisecond
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
					budget = tt.timeout
				}
				start := time.Now()
				resp := d.ValidatePods().Handle(ctx, newPodRequest(admissionv1.Create, kpoPod(t, tt.image)))
				if took := time.Since(start); took > budget+200*time.Millisecond {
					t.Errorf("took %v, beyond the %v budget", took, budget)
				}
				text := strings.Join(resp.Warnings, "\n")
				if resp.Result != nil {
					text += resp.Result.Message
				}
				if resp.Allowed != (mode == "allow") || !strings.Contains(text, tt.reason) {
					t.Errorf("allowed = %v, text %q; want allowed = %v saying %q", resp.Allowed, text, mode == "allow", tt.reason)
				}
			})
		}
	}
}

// Each image of a pod is looked up once, all at once; and a second pod
// with the same images is answered from the cache.
func TestValidateLooksUpEachImageOnce(t *testing.T) {
	s := registrytest.New(t)
	d := registryDeps(t, s, imagePolicy)
	raw := kpoPod(t, s.Ref(registrytest.AMD64), s.Ref(registrytest.MultiArch), s.Ref(registrytest.AMD64), s.Ref(registrytest.ManifestList))
	s.Reset()
	if resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw)); !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	if got := s.Requests("GET manifest"); got != 3 {
		t.Errorf("GET manifest requests = %d, want 3 (one per distinct image)", got)
	}
	s.Reset()
	if resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw)); !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	if got := s.Requests("GET manifest") + s.Requests("HEAD manifest"); got != 0 {
		t.Errorf("cached pod made %d manifest requests", got)
	}
	for result, want := range map[string]float64{"miss": 3, "hit": 3} {
		if got := counterValue(t, d, "kpoguard_registry_lookups_total", result); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// counterValue reads a counter with one label from the handler's registry.
func counterValue(t *testing.T, d *Deps, name, label string) float64 {
	t.Helper()
	families, err := d.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// With usePullSecrets, the pod's imagePullSecrets and its service
// account's authenticate the lookup.
func TestValidatePrivateImageWithPullSecrets(t *testing.T) {
	s := registrytest.New(t)
	dockerConfig := `{"auths":{"` + s.Host + `":{"username":"` + registrytest.User + `","password":"` + registrytest.Password + `"}}}`
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(dockerConfig)},
		}
	}
	clients := fake.NewClientset(
		secret("from-pod"),
		secret("from-sa"),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller", Namespace: testNamespace}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "from-sa"}}},
	)
	withPullSecrets := func(raw []byte, sa string, secrets ...string) []byte {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil {
			t.Fatal(err)
		}
		pod.Spec.ServiceAccountName = sa
		for _, s := range secrets {
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		b, _ := json.Marshal(&pod)
		return b
	}
	raw := kpoPod(t, s.Ref(registrytest.Private))
	tests := []struct {
		name           string
		usePullSecrets bool
		pod            []byte
		allowed        bool
	}{
		{name: "the pod's imagePullSecrets", usePullSecrets: true, pod: withPullSecrets(raw, "default", "from-pod"), allowed: true},
		{name: "the service account's imagePullSecrets", usePullSecrets: true, pod: withPullSecrets(raw, "puller"), allowed: true},
		{name: "no pull secrets", usePullSecrets: true, pod: withPullSecrets(raw, "default")},
		{name: "pull secrets not enabled by the policy", pod: withPullSecrets(raw, "default", "from-pod")},
		{name: "a pull secret that does not exist", usePullSecrets: true, pod: withPullSecrets(raw, "default", "nonexistent")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := registryDeps(t, s, basePolicy+"    serviceAccount: {mode: off}\n    imageArchitecture: {onLookupFailure: deny, usePullSecrets: "+map[bool]string{true: "true", false: "false"}[tt.usePullSecrets]+"}\n")
			d.Images.(*RegistryImages).Keychains = &PullSecretKeychains{Client: clients, TTL: time.Minute}
			resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, tt.pod))
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tt.allowed, resp.Result)
			}
			if !tt.allowed && !strings.Contains(resp.Result.Message, "refused access") {
				t.Errorf("message %q does not say access was refused", resp.Result.Message)
			}
		})
	}
}

// kubectl debug adds ephemeral containers through their subresource: their
// images are checked like any other, and only theirs: an old image whose
// registry now fails does not block debugging.
func TestValidateEphemeralContainerImages(t *testing.T) {
	s := registrytest.New(t)
	d := registryDeps(t, s, basePolicy+"    imageArchitecture: {onLookupFailure: deny}\n")
	old := kpoPod(t, s.Ref(registrytest.Missing))
	withDebug := func(image string) []byte {
		var pod corev1.Pod
		if err := json.Unmarshal(old, &pod); err != nil {
			t.Fatal(err)
		}
		pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: image}}}
		b, _ := json.Marshal(&pod)
		return b
	}
	for image, allowed := range map[string]bool{s.Ref(registrytest.MultiArch): true, s.Ref(registrytest.ARM64Only): false} {
		req := newPodRequest(admissionv1.Update, withDebug(image))
		req.SubResource = "ephemeralcontainers"
		req.OldObject.Raw = old
		resp := d.ValidatePods().Handle(t.Context(), req)
		if resp.Allowed != allowed {
			t.Fatalf("%s: allowed = %v, want %v (%v)", image, resp.Allowed, allowed, resp.Result)
		}
		if !allowed && !strings.Contains(resp.Result.Message, `image "`+image+`" (spec.ephemeralContainers[0].image): is built only for linux/arm64/v8`) {
			t.Errorf("message %q does not name the ephemeral container's image", resp.Result.Message)
		}
	}
}

// 100 concurrent admissions of one uncached image cost one manifest fetch,
// even from a slow registry; a cached image then costs none, even with no
// budget left.
func TestConcurrentAdmissionsShareOneLookup(t *testing.T) {
	s := registrytest.New(t)
	d := registryDeps(t, s, imagePolicy)
	raw := kpoPod(t, s.Ref(registrytest.Slow))
	s.Reset()
	s.SetDelay(100 * time.Millisecond)
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 100 {
		wg.Go(func() {
			resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
			if !resp.Allowed || len(resp.Warnings) > 0 {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Fatalf("%d of 100 admissions refused or warned", n)
	}
	if got := s.Requests("GET manifest"); got != 1 {
		t.Errorf("GET manifest requests = %d, want 1", got)
	}
	s.Reset()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond) // less than the margin
	defer cancel()
	if resp := d.ValidatePods().Handle(ctx, newPodRequest(admissionv1.Create, raw)); !resp.Allowed || len(resp.Warnings) > 0 {
		t.Errorf("cached image without budget: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}
	if got := s.Requests("HEAD manifest") + s.Requests("GET manifest"); got != 0 {
		t.Errorf("a cached image cost %d manifest requests", got)
	}
}

// A panic in a goroutine a lookup starts fails that lookup (a warning
// under onLookupFailure: allow), is counted, and leaves the process, here
// the test binary, running.
func TestLookupPanicsFailOnlyThatLookup(t *testing.T) {
	s := registrytest.New(t)
	good, bad := s.Ref(registrytest.AMD64), s.Ref(registrytest.MultiArch)
	secretsPanic := fake.NewClientset()
	secretsPanic.PrependReactor("get", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		panic("client bug")
	})
	tests := []struct {
		name  string
		setUp func(r *RegistryImages)
		// failed are the images whose lookup panicked.
		failed []string
		panics float64
	}{
		{name: "a keychain that panics for one image", failed: []string{bad}, panics: 1,
			setUp: func(r *RegistryImages) { r.Keychains = panickingKeychain{repository: "app/multi-arch"} }},
		{name: "a registry source that panics, in the cache's flights", failed: []string{good, bad}, panics: 2,
			setUp: func(r *RegistryImages) {
				r.Cache = registry.NewCache(panickingSource{}, registry.CacheOptions{OnPanic: r.OnPanic})
			}},
		{name: "reading pull secrets panics: anonymous lookups", failed: nil, panics: 1,
			setUp: func(r *RegistryImages) {
				r.Keychains = &PullSecretKeychains{Client: secretsPanic, TTL: time.Minute, OnPanic: r.OnPanic}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := registryDeps(t, s, basePolicy+"    imageArchitecture: {usePullSecrets: true}\n")
			r := d.Images.(*RegistryImages)
			r.OnPanic = LookupPanics(d.Metrics, logr.Discard())
			tt.setUp(r)
			resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, kpoPod(t, good, bad)))
			if !resp.Allowed {
				t.Fatalf("refused: %v", resp.Result)
			}
			for _, image := range []string{good, bad} {
				failed := slices.ContainsFunc(resp.Warnings, func(w string) bool {
					return strings.Contains(w, `image "`+image+`"`) && strings.Contains(w, "kpoguard failed internally looking it up")
				})
				if failed != slices.Contains(tt.failed, image) {
					t.Errorf("%s: failed internally = %v, want %v (warnings %q)", image, failed, !failed, resp.Warnings)
				}
			}
			if got := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(panicImageLookup)); got != tt.panics {
				t.Errorf("image-lookup panics = %v, want %v", got, tt.panics)
			}
		})
	}
}

// panickingKeychain panics when asked for one repository's credentials.
type panickingKeychain struct{ repository string }

func (k panickingKeychain) For(context.Context, *corev1.Pod) (authn.Keychain, error) { return k, nil }

func (k panickingKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if strings.Contains(r.String(), k.repository) {
		panic("keychain bug")
	}
	return authn.Anonymous, nil
}

// panickingSource panics at every request.
type panickingSource struct{}

func (panickingSource) Digest(context.Context, registry.Target) (v1.Hash, error) { panic("source bug") }

func (panickingSource) Platforms(context.Context, registry.Target, v1.Hash) ([]v1.Platform, error) {
	panic("source bug")
}
