package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"encoding/json"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/webhook"
)

// BenchmarkWebhookOverhead times pod creations through the real API server
// with no webhook, with a no-op mutating + validating pair
// (controller-runtime handlers that allow everything unchanged, with the
// chart's selectors), and with kpoguard and the example policy (every rule
// on), and, for scale, with the no-op pair returning kpoguard's patch. They run in interleaved rounds so that drift on a shared
// machine hits them alike; each reports the median over rounds of its mean
// time per create, and kpoguard's difference to the no-op pair.
func BenchmarkWebhookOverhead(b *testing.B) {
	const rounds, perRound = 5, 150
	noop := startNoopWebhooks(b)
	setups := []struct {
		name    string
		install func(context.Context) error
	}{
		{"no-webhooks", func(context.Context) error { return nil }},
		{"noop-pair", noop.install(false)},
		// The API server's cost of applying kpoguard's changes, for scale:
		// the no-op pair returning the very patch kpoguard returns.
		{"noop-pair-same-patch", noop.install(true)},
		{"kpoguard", installKpoguardWebhooks},
	}
	ctx := context.Background()
	pods := cluster.Client.CoreV1().Pods(taskNamespace)
	means := make([][]float64, len(setups))
	handlerSeconds := func() float64 {
		return metric(b, `kpoguard_admission_duration_seconds_sum{webhook="mutate-pods"}`) +
			metric(b, `kpoguard_admission_duration_seconds_sum{webhook="validate-pods"}`)
	}
	var handlerTotal float64
	handlerCreates := 0
	for r := 0; r < rounds; r++ {
		for i, s := range setups {
			removeWebhooks(b)
			if err := s.install(ctx); err != nil {
				b.Fatal(err)
			}
			names := make([]string, perRound)
			handlerBefore := handlerSeconds()
			start := time.Now()
			for j := range names {
				pod := sandbox.TaskPod(fmt.Sprintf("bench-%s-%d-%d", s.name, r, j))
				if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				names[j] = pod.Name
			}
			means[i] = append(means[i], float64(time.Since(start).Microseconds())/1000/perRound)
			if s.name == "kpoguard" {
				handlerTotal += handlerSeconds() - handlerBefore
				handlerCreates += perRound
			}
			for _, n := range names {
				_ = pods.Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			}
		}
	}
	removeWebhooks(b)
	if err := installKpoguardWebhooks(ctx); err != nil {
		b.Fatal(err)
	}
	medians := make([]float64, len(setups))
	for i, s := range setups {
		medians[i] = median(means[i])
		b.ReportMetric(medians[i], s.name+"-ms/create")
	}
	b.ReportMetric(medians[3]-medians[1], "kpoguard-over-noop-ms/create")
	// kpoguard's own time in both handlers, from its histogram.
	b.ReportMetric(handlerTotal*1000/float64(handlerCreates), "kpoguard-handlers-ms/create")
	b.ReportMetric(0, "ns/op")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func installKpoguardWebhooks(ctx context.Context) error {
	return cluster.InstallWebhooks(ctx)
}

func removeWebhooks(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	reg := cluster.Client.AdmissionregistrationV1()
	for _, name := range []string{cluster.Webhooks.Mutating.Name, "noop"} {
		if err := reg.MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatal(err)
		}
		if err := reg.ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatal(err)
		}
	}
	// Wait until the API server stops calling them: a dry-run task pod is
	// no longer stamped by kpoguard nor by the no-op pair.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(ctx, sandbox.TaskPod("unhooked-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(pod.Annotations) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("webhooks still called 30s after their removal: %v %v", err, pod.Annotations)
		}
	}
}

type noopWebhooks struct {
	url   string
	calls atomic.Int64
}

// startNoopWebhooks serves controller-runtime admission handlers that
// allow everything unchanged, counting calls so the benchmark knows when
// the API server calls them.
func startNoopWebhooks(b *testing.B) *noopWebhooks {
	n := &noopWebhooks{}
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		n.calls.Add(1)
		return admission.Allowed("")
	})
	kpoguardPatch := kpoguardPatchFor(b, sandbox.TaskPod("bench"))
	n.url = serveTestWebhooks(b, map[string]admission.Handler{
		"/mutate": allow,
		"/mutate-patch": admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			n.calls.Add(1)
			return admission.Patched("", kpoguardPatch...)
		}),
		"/validate": allow,
	})
	return n
}

// install returns an installer of the no-op pair; a patching one returns
// kpoguard's patch for the benchmark's pods.
func (n *noopWebhooks) install(patching bool) func(context.Context) error {
	return func(ctx context.Context) error { return n.installPair(ctx, patching) }
}

func (n *noopWebhooks) installPair(ctx context.Context, patching bool) error {
	reg := cluster.Client.AdmissionregistrationV1()
	ca := cluster.Env.WebhookInstallOptions.LocalServingCAData
	m := cluster.Webhooks.Mutating.DeepCopy()
	m.ObjectMeta = metav1.ObjectMeta{Name: "noop"}
	mutateURL, validateURL := n.url+"/mutate", n.url+"/validate"
	if patching {
		mutateURL = n.url + "/mutate-patch"
	}
	m.Webhooks[0].Name, m.Webhooks[0].ClientConfig = "mutate.noop.test", admissionregistrationv1.WebhookClientConfig{URL: &mutateURL, CABundle: ca}
	v := cluster.Webhooks.Validating.DeepCopy()
	v.ObjectMeta = metav1.ObjectMeta{Name: "noop"}
	v.Webhooks = v.Webhooks[:1]
	v.Webhooks[0].Name, v.Webhooks[0].ClientConfig = "validate.noop.test", admissionregistrationv1.WebhookClientConfig{URL: &validateURL, CABundle: ca}
	if _, err := reg.MutatingWebhookConfigurations().Create(ctx, m, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, v, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Both must be called: two calls for one probe.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		before := n.calls.Load()
		_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(ctx, sandbox.TaskPod("noop-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && n.calls.Load()-before == 2 {
			return nil
		}
	}
	return fmt.Errorf("no-op webhooks not called within 30s")
}

// kpoguardPatchFor is the patch kpoguard's mutating webhook returns for a
// pod under the example policy, computed in process.
func kpoguardPatchFor(b *testing.B, pod *corev1.Pod) []jsonpatch.JsonPatchOperation {
	deps := &webhook.Deps{Metrics: webhook.NewMetrics(), Log: logr.Discard()}
	deps.Policies = webhook.NewPolicyStore(deps.Metrics, logr.Discard())
	if err := deps.Policies.Offer([]byte(readFile(b, filepath.Join(repoRoot, "examples", "policy.yaml"))), "example"); err != nil {
		b.Fatal(err)
	}
	deps.Namespaces = nsLabels{}
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	resp := deps.MutatePods().Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: taskNamespace,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}})
	if len(resp.Patches) == 0 {
		b.Fatalf("kpoguard made no patch: %+v", resp.Result)
	}
	return resp.Patches
}

type nsLabels struct{}

func (nsLabels) Labels(context.Context, string) (map[string]string, error) { return nil, nil }
