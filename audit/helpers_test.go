package audit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// examplePolicy is examples/policy.yaml, with edits (old, new) applied.
func examplePolicy(t testing.TB, edits ...string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(doc, edits[i]) {
			t.Fatalf("examples/policy.yaml has no %q: update this test", edits[i])
		}
		doc = strings.Replace(doc, edits[i], edits[i+1], 1)
	}
	p, err := policy.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// kpoPod is a fixture of testdata/kpo as KPO sends it.
func kpoPod(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "kpo", name))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

// admitted is the pod as the webhooks leave it under p, running.
func admitted(t testing.TB, p *policy.Policy, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	res := review.Review(context.Background(), p, review.Request{Operation: review.Create, Namespace: pod.Namespace, Pod: pod, Raw: raw}, review.Full, resolvers())
	if res.Decision == review.Error || res.Decision == review.Denied {
		t.Fatalf("admitting %s: %s %v %s", pod.Name, res.Decision, res.Err, res.Message)
	}
	out := res.Pod.DeepCopy()
	out.UID = "uid-" + "1234"
	out.Status.Phase = corev1.PodRunning
	return out
}

// noLabels: every namespace has no labels.
type noLabels struct{}

func (noLabels) Labels(context.Context, string) (map[string]string, error) { return nil, nil }

// brokenLabels: no namespace can be read.
type brokenLabels struct{}

func (brokenLabels) Labels(context.Context, string) (map[string]string, error) {
	return nil, errors.New("namespaces is forbidden")
}

func resolvers() review.Resolvers { return review.Resolvers{Namespaces: noLabels{}} }

var errForbidden = errors.New("policyreports is forbidden")
