package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

// softPolicy is the example policy with its rules in warn and audit mode,
// in turn, so that warnings and audit annotations are compared too.
func softPolicy(t *testing.T) string {
	t.Helper()
	parts := strings.Split(readFile(t, examplePolicy), "mode: enforce")
	if len(parts) < 3 {
		t.Fatal("examples/policy.yaml has changed: update softPolicy")
	}
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(p)
		if i < len(parts)-1 {
			b.WriteString([]string{"mode: warn", "mode: audit"}[i%2])
		}
	}
	return writeFile(t, "soft.yaml", b.String())
}

// What the two webhooks answer for a pod, put together as the API server
// applies them: the mutating webhook's patch, then the validating
// webhook's verdict on the patched pod.
type webhookReview struct {
	decision review.Decision
	patch    string
	message  string
	warnings []string
	audit    map[string]string
}

// decisions reads, from a fresh set of metrics, the one decision each
// webhook counted.
func decisions(t *testing.T, m *webhook.Metrics) map[string]review.Decision {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]review.Decision{}
	for _, f := range families {
		if f.GetName() != "kpoguard_admission_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			if metric.GetCounter().GetValue() == 0 {
				continue
			}
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["webhook"]] = review.Decision(labels["decision"])
		}
	}
	return out
}

// anyNamespace gives every namespace the same labels.
type anyNamespace map[string]string

func (l anyNamespace) Labels(context.Context, string) (map[string]string, error) { return l, nil }

func reviewByWebhooks(t *testing.T, policyFile, namespace string, raw []byte) webhookReview {
	t.Helper()
	m := webhook.NewMetrics()
	d := &webhook.Deps{Policies: webhook.NewPolicyStore(m, logr.Discard()), Metrics: m, Log: logr.Discard(), Namespaces: anyNamespace{}}
	if err := d.Policies.Offer([]byte(readFile(t, policyFile)), "test"); err != nil {
		t.Fatal(err)
	}
	request := func(raw []byte) admission.Request {
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "compare", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: namespace,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		}}
	}
	mutated := d.MutatePods().Handle(t.Context(), request(raw))
	if !mutated.Allowed {
		t.Fatalf("mutating webhook refused: %+v", mutated.Result)
	}
	ops, err := json.Marshal(mutated.Patches)
	if err != nil {
		t.Fatal(err)
	}
	if len(mutated.Patches) > 0 {
		patch, err := jsonpatch.DecodePatch(ops)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = patch.Apply(raw); err != nil {
			t.Fatal(err)
		}
	}
	validated := d.ValidatePods().Handle(t.Context(), request(raw))
	out := webhookReview{patch: string(ops), warnings: append(mutated.Warnings, validated.Warnings...), audit: map[string]string{}}
	maps.Copy(out.audit, mutated.AuditAnnotations)
	for k, v := range validated.AuditAnnotations {
		if prev, ok := out.audit[k]; ok {
			v = prev + "; " + v
		}
		out.audit[k] = v
	}
	// The decisions as each webhook counted them.
	hooks := decisions(t, m)
	switch {
	case hooks["validate-pods"] == review.Denied:
		out.decision, out.message = review.Denied, validated.Result.Message
	case hooks["mutate-pods"] == review.Mutated:
		out.decision = review.Mutated
	case hooks["mutate-pods"] == review.Warned || hooks["validate-pods"] == review.Warned:
		out.decision = review.Warned
	default:
		out.decision = review.Allowed
	}
	return out
}

// kpoguard check and the two webhooks give every fixture the same review:
// decision, patch, denial message, warnings and audit annotations.
func TestCheckReviewsAsTheWebhooks(t *testing.T) {
	fixtures := podFixtures(t)
	// What the fixtures exercised, so that the comparison cannot pass on
	// empty reviews.
	seen := map[string]bool{}
	t.Cleanup(func() {
		for _, what := range []string{"denied", "mutated", "warnings", "audit"} {
			if !seen[what] {
				t.Errorf("no fixture's review had %s: the comparison misses them", what)
			}
		}
	})
	for _, policyFile := range []string{examplePolicy, softPolicy(t)} {
		for _, f := range fixtures {
			t.Run(filepath.Base(policyFile)+"/"+filepath.Base(f), func(t *testing.T) {
				_, out, stderr := runCLI(t, "", "check", "--offline", "-p", policyFile, "-f", f, "-o", "json")
				var reports []podReport
				if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 1 {
					t.Fatalf("check -o json: %v %s\n%s", err, stderr, out)
				}
				r := reports[0]
				if r.Decision == review.Skipped {
					if r.Namespace != "kube-system" {
						t.Fatalf("skipped outside an exempt namespace: %+v", r)
					}
					return
				}
				seen[string(r.Decision)] = true
				seen["warnings"] = seen["warnings"] || len(r.Warnings) > 0
				seen["audit"] = seen["audit"] || len(r.AuditAnnotations) > 0
				raw := webhookRaw(t, f)
				got := reviewByWebhooks(t, policyFile, r.Namespace, raw)
				patch, want := compactJSON(t, string(r.Patch)), compactJSON(t, got.patch)
				for _, c := range []struct{ what, check, webhooks string }{
					{"decision", string(r.Decision), string(got.decision)},
					{"patch", patch, want},
					{"message", r.Message, got.message},
					{"warnings", strings.Join(r.Warnings, "\n"), strings.Join(got.warnings, "\n")},
					{"audit annotations", mustJSON(t, orEmpty(r.AuditAnnotations)), mustJSON(t, got.audit)},
				} {
					if c.check != c.webhooks {
						t.Errorf("%s differs:\ncheck:    %s\nwebhooks: %s", c.what, c.check, c.webhooks)
					}
				}
			})
		}
	}
}

// webhookRaw is a fixture as the API server would send it: JSON, with
// the task label KPO adds at run time (check assumes it; dry_run() output
// lacks it).
func webhookRaw(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, pod, err := decodePod(mustYAMLToJSON(t, data))
	if err != nil {
		t.Fatal(err)
	}
	if pod.Labels[policy.TaskPodLabel] == "True" {
		return raw
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	meta, _ := doc["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if labels == nil {
		labels = map[string]any{}
	}
	labels[policy.TaskPodLabel] = "True"
	meta["labels"] = labels
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compactJSON is a JSON patch without white space, "[]" when empty.
func compactJSON(t *testing.T, s string) string {
	t.Helper()
	if s == "" || s == "null" {
		return "[]"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustYAMLToJSON(t *testing.T, data []byte) []byte {
	t.Helper()
	docs, err := splitDocuments("fixture", strings.NewReader(string(data)))
	if err != nil || len(docs) != 1 {
		t.Fatalf("fixture: %v (%d documents)", err, len(docs))
	}
	return docs[0].json
}
