package webhook

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
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
	for _, dir := range []string{"../../shared/fixtures/kpo", "../testdata/pods"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
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
