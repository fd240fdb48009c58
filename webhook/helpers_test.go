package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

const testNamespace = "astronomer-example-deployment-1234"

// basePolicy keeps every rule's defaults but a small, known default size.
const basePolicy = `
apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
metadata: {name: test}
spec:
  rules:
    defaultResources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {cpu: "1", memory: 2Gi}
`

func newDeps(t testing.TB, policyYAML string) *Deps {
	t.Helper()
	m := NewMetrics()
	d := &Deps{Policies: NewPolicyStore(m, logr.Discard()), Metrics: m, Log: logr.Discard()}
	if err := d.Policies.Offer([]byte(policyYAML), "test"); err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return d
}

// fixture reads a pod fixture as JSON: a KPO fixture of testdata/kpo by bare
// name, or a path relative to the package.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	path := name
	if filepath.Dir(name) == "." {
		path = filepath.Join("..", "testdata", "kpo", name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func newPodRequest(op admissionv1.Operation, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "test-uid",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: testNamespace,
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:" + testNamespace + ":airflow-worker"},
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyPatch applies a response's patch to the raw pod, as the API server
// would.
func applyPatch(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return raw
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", ops, err)
	}
	return out
}

// namespaceLabels is a fixed set of namespace labels.
type namespaceLabels map[string]map[string]string

func (n namespaceLabels) Labels(_ context.Context, name string) (map[string]string, error) {
	labels, ok := n[name]
	if !ok {
		return nil, fmt.Errorf("namespace %q not found", name)
	}
	return labels, nil
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
