package webhook

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// fuzzPolicy turns on every mutating rule so the fuzzer reaches them all.
const fuzzPolicy = basePolicy + `
    requestsEqualLimits: {mode: enforce}
    imagePullSecrets:
      registries: [{prefix: registry.example.com, secrets: [pull]}]
    nodePool:
      defaultQueue: default
      queues:
        default:
          nodeSelector: {pool: default}
          tolerations: [{key: pool, operator: Equal, value: default, effect: NoSchedule}]
          matchExpressions: [{key: zone, operator: In, values: [a, b]}]
`

func addPodSeeds(f *testing.F) {
	for _, dir := range []string{"../testdata/kpo", "../testdata/pods"} {
		// A seed directory that moved must fail, not shrink the corpus.
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil || len(files) == 0 {
			f.Fatalf("no fuzz seeds in %s: %v", dir, err)
		}
		for _, file := range files {
			f.Add(fixture(f, file))
		}
	}
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"containers":[{"name":"base","resources":{"limits":{"cpu":"1e3"}}}]}}`))
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"initContainers":[{"name":"s","restartPolicy":"Always"}],"containers":null}}`))
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"containers":[{"name":"base","resources":{"requests":{"cpu":"1E1000000000"}}}]}}`))
	f.Add([]byte(`null`))
}

// Any pod: no panic, and a patch that applies and leaves nothing to do on
// reinvocation.
func FuzzMutatePods(f *testing.F) {
	addPodSeeds(f)
	d := newDeps(f, fuzzPolicy)
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
		if n := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(hookMutate)); n != 0 {
			t.Fatalf("handler panicked on %s", raw)
		}
		if !resp.Allowed || len(resp.Patches) == 0 {
			return
		}
		patched := applyPatch(t, raw, resp)
		if !json.Valid(patched) {
			t.Fatalf("patch produced invalid JSON")
		}
		again := d.MutatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, patched))
		if len(again.Patches) != 0 {
			t.Fatalf("not idempotent:\npod %s\nfirst %s\nsecond %s", raw, mustJSON(t, resp.Patches), mustJSON(t, again.Patches))
		}
	})
}

func FuzzValidatePods(f *testing.F) {
	addPodSeeds(f)
	d := newDeps(f, fuzzPolicy)
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := d.ValidatePods().Handle(t.Context(), newPodRequest(admissionv1.Create, raw))
		if n := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(hookValidate)); n != 0 {
			t.Fatalf("handler panicked on %s", raw)
		}
		if !resp.Allowed && resp.Result.Message == "" {
			t.Fatalf("refusal without a message")
		}
	})
}

// Any pod launched by a worker placed on two ORed node-affinity terms,
// with conflicts overridden: the patch applies, a second pass changes
// nothing, and the validating webhook finds nothing left to refuse in the
// node pool (unless the pod names its node).
func FuzzMutatePodsFollowingWorker(f *testing.F) {
	addPodSeeds(f)
	d := newDeps(f, fuzzPolicy+"      parent: {source: inherit, onConflict: override}\n")
	d.Workers = &fakeWorkers{cached: []*corev1.Pod{workerPod("w", "big", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "big", Effect: corev1.TaintEffectNoSchedule}}
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "size", Operator: corev1.NodeSelectorOpIn, Values: []string{"4xl"}}}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "size", Operator: corev1.NodeSelectorOpIn, Values: []string{"8xl"}}}},
			}}}}
	})}}
	// Conflicts of every kind: a pinned key elsewhere, a key the worker's
	// terms rule out, a term no node of the pool matches, another queue's
	// toleration; and a term that already carries one of the worker's.
	f.Add([]byte(`{"metadata":{"labels":{"kubernetes_pod_operator":"True"}},"spec":{"containers":[{"name":"base"}],` +
		`"nodeSelector":{"pool":"default","size":"2xl"},"tolerations":[{"key":"pool","operator":"Equal","value":"default","effect":"NoSchedule"}],` +
		`"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[` +
		`{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]},{"matchExpressions":[{"key":"size","operator":"In","values":["8xl"]}]},` +
		`{"matchExpressions":[{"key":"size","operator":"In","values":["1xl"]}]}]}}}}}`))
	as := func(raw []byte) admission.Request {
		r := newPodRequest(admissionv1.Create, raw)
		r.UserInfo = boundTo("w")
		return r
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := d.MutatePods().Handle(t.Context(), as(raw))
		if n := testutil.ToFloat64(d.Metrics.panics.WithLabelValues(hookMutate)); n != 0 {
			t.Fatalf("handler panicked on %s", raw)
		}
		if !resp.Allowed || len(resp.Patches) == 0 {
			return
		}
		patched := applyPatch(t, raw, resp)
		again := d.MutatePods().Handle(t.Context(), as(patched))
		if len(again.Patches) != 0 {
			t.Fatalf("not idempotent:\npod %s\nfirst %s\nsecond %s", raw, mustJSON(t, resp.Patches), mustJSON(t, again.Patches))
		}
		var pod corev1.Pod
		if err := json.Unmarshal(patched, &pod); err != nil || pod.Spec.NodeName != "" {
			return
		}
		v := d.ValidatePods().Handle(t.Context(), as(patched))
		if !v.Allowed && strings.Contains(v.Result.Message, "[node-pool]") {
			t.Fatalf("placed pod refused by node-pool:\npod %s\npatched %s\n%s", raw, patched, v.Result.Message)
		}
	})
}
