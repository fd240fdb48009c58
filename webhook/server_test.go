package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

func post(t *testing.T, h http.Handler, url string, body []byte, contentLength int64) (int, admissionv1.AdmissionReview, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if contentLength != 0 { // -1: unknown, as with chunked encoding
		req.ContentLength = contentLength
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var review admissionv1.AdmissionReview
	_ = json.Unmarshal(rec.Body.Bytes(), &review)
	return rec.Code, review, rec.Body.String()
}

func TestHTTPBadInput(t *testing.T) {
	d := newDeps(t, basePolicy)
	h := Bounded(1024, &admission.Webhook{Handler: d.ValidatePods()})

	t.Run("malformed AdmissionReview", func(t *testing.T) {
		_, review, body := post(t, h, "/validate-pods", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`), 0)
		if review.Response == nil || review.Response.Result.Code != 400 || review.Response.Allowed {
			t.Fatalf("response %s, want a 400 refusal", body)
		}
	})
	t.Run("oversized body refused before reading", func(t *testing.T) {
		code, _, body := post(t, h, "/validate-pods", []byte(`{}`), 1<<20)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "over the limit of 1024 bytes") {
			t.Fatalf("got %d %q, want 413", code, body)
		}
	})
	t.Run("oversized body without a length", func(t *testing.T) {
		big := append([]byte(`{"request":{"uid":"x","object":{"pad":"`), bytes.Repeat([]byte("a"), 4096)...)
		_, review, body := post(t, h, "/validate-pods", append(big, []byte(`"}}}`)...), -1)
		if review.Response == nil || review.Response.Allowed || review.Response.Result.Code != 400 {
			t.Fatalf("response %s, want a refusal", body)
		}
	})
}

// The deadline the API server asks for reaches the fact lookups.
func TestHTTPDeadlineFromTimeoutParameter(t *testing.T) {
	d := newDeps(t, basePolicy)
	var remaining time.Duration
	d.Images = review.ImageResolverFunc(func(ctx context.Context, _ *corev1.Pod, _ policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts {
		if deadline, ok := ctx.Deadline(); ok {
			remaining = time.Until(deadline)
		}
		out := map[string]policy.ImageFacts{}
		for _, i := range images {
			out[i] = policy.ImageFacts{Platforms: []policy.Platform{{OS: "linux", Architecture: "amd64"}}}
		}
		return out
	})
	req := newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml"))
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	}
	body, _ := json.Marshal(review)
	h := Bounded(1<<20, &admission.Webhook{Handler: d.ValidatePods()})
	_, resp, raw := post(t, h, "/validate-pods?timeout=7s", body, 0)
	if resp.Response == nil || !resp.Response.Allowed {
		t.Fatalf("response %s, want allowed", raw)
	}
	if remaining <= 6*time.Second || remaining > 7*time.Second {
		t.Errorf("lookup deadline %v away, want just under 7s", remaining)
	}
}

func TestValidatePolicyConfigMap(t *testing.T) {
	d := newDeps(t, basePolicy)
	cm := func(data map[string]string) []byte {
		b, _ := json.Marshal(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kpoguard-policy"}, Data: data})
		return b
	}
	tests := []struct {
		name    string
		raw     []byte
		allowed bool
		message string
	}{
		{"valid", cm(map[string]string{PolicyKey: basePolicy}), true, ""},
		{"missing key", cm(map[string]string{"other": "x"}), false, `kpoguard policy ConfigMap "kpoguard-policy" has no key "policy.yaml"`},
		{"bad YAML", cm(map[string]string{PolicyKey: "spec: [\n"}), false, `kpoguard policy in ConfigMap "kpoguard-policy" key "policy.yaml": policy is not valid YAML`},
		{"invalid fields", cm(map[string]string{PolicyKey: "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  rules:\n    maxResources: {mode: block, contianer: {}}\n"}), false,
			`kpoguard policy in ConfigMap "kpoguard-policy" key "policy.yaml": invalid policy: 2 error(s):`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newPodRequest(admissionv1.Create, tt.raw)
			req.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
			resp := d.ValidatePolicy().Handle(t.Context(), req)
			if resp.Allowed != tt.allowed || !strings.HasPrefix(resp.Result.Message, tt.message) {
				t.Errorf("allowed=%v message=%q, want allowed=%v message starting %q", resp.Allowed, resp.Result.Message, tt.allowed, tt.message)
			}
		})
	}
	// Every error is named with its path.
	req := newPodRequest(admissionv1.Create, tests[3].raw)
	req.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	msg := d.ValidatePolicy().Handle(t.Context(), req).Result.Message
	for _, want := range []string{`unknown field "spec.rules.maxResources.contianer"`, `spec.rules.maxResources.mode: Unsupported value: "block"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestWatchFileHotReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(basePolicy)
	m := NewMetrics()
	store := NewPolicyStore(m, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := WatchFile(ctx, path, 5*time.Millisecond, store); err != nil {
		t.Fatal(err)
	}
	first := store.Current().Hash()

	bigger := strings.Replace(basePolicy, "cpu: 500m", "cpu: 750m", 1)
	write(bigger)
	waitFor(t, func() bool { return store.Current().Hash() != first })
	second := store.Current().Hash()

	write("apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: {rules: {maxResources: {mode: nope}}}\n")
	waitFor(t, func() bool { return testutil.ToFloat64(m.reloads.WithLabelValues(reloadFailure)) == 1 })
	if got := store.Current().Hash(); got != second {
		t.Errorf("policy in force %s after a bad reload, want the last good %s", got, second)
	}
	if got := testutil.ToFloat64(m.reloadHealthy); got != 0 {
		t.Errorf("last reload successful = %v, want 0", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.reloads.WithLabelValues(reloadFailure)) == 2 })
	if got := store.Current().Hash(); got != second {
		t.Errorf("policy in force %s after the file vanished, want %s", got, second)
	}
}

func TestWatchFileRefusesBadFirstPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("kind: PodPolicy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := NewPolicyStore(NewMetrics(), logr.Discard())
	err := WatchFile(t.Context(), path, time.Second, store)
	if err == nil || !strings.Contains(err.Error(), "apiVersion") || store.Current() != nil {
		t.Fatalf("err = %v, current = %v; want the apiVersion error and no policy", err, store.Current())
	}
	if err := WatchFile(t.Context(), filepath.Join(t.TempDir(), "missing.yaml"), time.Second, store); err == nil {
		t.Fatal("missing policy file accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The background audit re-runs when another policy comes in force: not at
// the first load, not for the same policy again, not for a refused one,
// and once for a burst.
func TestPolicyStoreSignalsChanges(t *testing.T) {
	store := NewPolicyStore(NewMetrics(), logr.Discard())
	signalled := func() bool {
		select {
		case <-store.Changed():
			return true
		default:
			return false
		}
	}
	bigger := strings.Replace(basePolicy, "cpu: 500m", "cpu: 750m", 1)
	biggest := strings.Replace(basePolicy, "cpu: 500m", "cpu: 900m", 1)
	for _, c := range []struct {
		name   string
		offers []string
		want   bool
	}{
		{"the first policy", []string{basePolicy}, false},
		{"the same policy again", []string{basePolicy}, false},
		{"a refused policy", []string{"kind: PodPolicy\n"}, false},
		{"another policy", []string{bigger}, true},
		{"a burst of two", []string{biggest, basePolicy}, true},
	} {
		for _, doc := range c.offers {
			_ = store.Offer([]byte(doc), "test")
		}
		if got := signalled(); got != c.want {
			t.Errorf("%s: signalled %v, want %v", c.name, got, c.want)
		}
	}
	if signalled() {
		t.Error("a burst signalled more than once")
	}
}
