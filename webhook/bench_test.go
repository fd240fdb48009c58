package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/registry"
)

// controller-runtime's handlers log through its root logger; without one
// they print a warning into the benchmark output, which benchstat cannot
// parse.
func init() { ctrllog.SetLogger(logr.Discard()) }

// benchHandler times one webhook path end to end in process: the
// AdmissionReview decoded from JSON, the handler, the response encoded.
// The mutating webhook gets the KPO pod as KPO sends it, the validating
// one the pod as the mutating webhook left it.
func benchHandler(b *testing.B, handler func(*Deps) admission.Handler, fixtureName string, mutated bool) {
	policyDoc, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	d := newDeps(b, string(policyDoc))
	d.Namespaces = namespaceLabels{testNamespace: {"kpoguard.io/tier": "large"}}
	raw := fixture(b, fixtureName)
	if mutated {
		raw = applyPatch(b, raw, d.MutatePods().Handle(b.Context(), newPodRequest(admissionv1.Create, raw)))
	}
	req := newPodRequest(admissionv1.Create, raw)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	h := Bounded(4<<20, newWebhook(handler(d)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest(http.MethodPost, "/?timeout=10s", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if i == 0 {
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &review); err != nil || review.Response.Result.Code != http.StatusOK {
				b.Fatalf("response %s", w.Body.String())
			}
		}
	}
}

func BenchmarkMutatePods(b *testing.B) {
	for _, f := range []string{"01-kpo-basic-no-resources.yaml", "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml"} {
		b.Run(f[:2], func(b *testing.B) { benchHandler(b, (*Deps).MutatePods, f, false) })
	}
}

func BenchmarkValidatePods(b *testing.B) {
	for _, f := range []string{"01-kpo-basic-no-resources.yaml", "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml"} {
		b.Run(f[:2], func(b *testing.B) { benchHandler(b, (*Deps).ValidatePods, f, true) })
	}
}

// BenchmarkValidateTenImages is the validating handler for a pod of ten
// distinct images looked up in a local registry: warm (every lookup
// cached) and cold (an empty cache for every admission, so ten lookups in
// parallel). It reports the median and 99th percentile of one admission.
func BenchmarkValidateTenImages(b *testing.B) {
	s := registrytest.New(b)
	var images []string
	for i := range 10 {
		image := fmt.Sprintf("bench/image-%d:1.0", i)
		if err := s.Copy(registrytest.MultiArch, image); err != nil {
			b.Fatal(err)
		}
		images = append(images, s.Ref(image))
	}
	raw := kpoPod(b, images...)
	for _, mode := range []string{"warm", "cold"} {
		b.Run(mode, func(b *testing.B) {
			d := registryDeps(b, s, imagePolicy)
			ri := d.Images.(*RegistryImages)
			client := registry.NewClient(registry.ClientOptions{RootCAs: s.CertPool})
			ri.Cache = registry.NewCache(client, registry.CacheOptions{})
			h := d.ValidatePods()
			req := newPodRequest(admissionv1.Create, raw)
			if resp := h.Handle(b.Context(), req); !resp.Allowed {
				b.Fatalf("denied: %v", resp.Result)
			}
			durations := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				if mode == "cold" {
					ri.Cache = registry.NewCache(client, registry.CacheOptions{})
				}
				start := time.Now()
				resp := h.Handle(b.Context(), req)
				durations = append(durations, time.Since(start))
				if !resp.Allowed || len(resp.Warnings) > 0 {
					b.Fatalf("allowed %v, warnings %q", resp.Allowed, resp.Warnings)
				}
			}
			slices.Sort(durations)
			ms := func(q float64) float64 {
				return float64(durations[int(q*float64(len(durations)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
		})
	}
}
