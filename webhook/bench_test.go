package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

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

func BenchmarkPodPatch(b *testing.B) {
	raw := fixture(b, "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml")
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		b.Fatal(err)
	}
	mutated := pod.DeepCopy()
	mutated.Spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PodPatch(raw, &pod, mutated); err != nil {
			b.Fatal(err)
		}
	}
}
