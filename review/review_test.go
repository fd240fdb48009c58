package review

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/policy"
)

const testPolicy = `
apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
metadata: {name: test}
spec:
  rules:
    defaultResources: {requests: {cpu: 500m}, limits: {cpu: "1"}}
`

func taskPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "team-a", Labels: map[string]string{policy.TaskPodLabel: "True"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Image: "ubuntu:22.04"}}},
	}
}

type failingLabels struct{}

func (failingLabels) Labels(context.Context, string) (map[string]string, error) {
	return nil, errors.New("the API server is down")
}

// Which requests each stage reviews, and how a review ends when it cannot
// be made.
func TestReviewGates(t *testing.T) {
	p, err := policy.Load([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	byLabel, err := policy.Load([]byte(testPolicy + `
  overrides:
  - namespaceSelector: {matchLabels: {tier: large}}
    rules: {maxResources: {container: {cpu: "8"}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	exempt, err := policy.Load([]byte(testPolicy + "  scope: {exemptGroups: [\"system:masters\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	admin := authenticationv1.UserInfo{Username: "admin", Groups: []string{"system:masters"}}
	notTask := taskPod()
	notTask.Labels = nil
	huge := taskPod()
	huge.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1e30")}
	withImage := taskPod()
	withImage.Spec.Containers[0].Image = "ubuntu:24.04"
	for _, c := range []struct {
		name     string
		policy   *policy.Policy
		req      Request
		stage    Stage
		r        Resolvers
		decision Decision
		reason   string
		err      error
		note     bool
	}{
		{name: "create, mutate", policy: p, req: Request{Operation: Create, Pod: taskPod()}, stage: Mutate, decision: Mutated},
		{name: "update, mutate", policy: p, req: Request{Operation: Update, Pod: taskPod(), OldPod: taskPod()}, stage: Mutate,
			decision: Allowed, reason: "kpoguard mutates pods only on create"},
		{name: "update keeping images, validate", policy: p, req: Request{Operation: Update, Pod: taskPod(), OldPod: taskPod()}, stage: Validate,
			decision: Allowed, reason: "no new images, tolerations or placement"},
		{name: "update bringing an image, validate", policy: p, req: Request{Operation: Update, Pod: withImage, OldPod: taskPod()}, stage: Validate,
			decision: Allowed},
		{name: "task label dropped, validate", policy: p, req: Request{Operation: Update, Pod: notTask, OldPod: taskPod()}, stage: Validate,
			decision: Denied},
		{name: "task label dropped by an exempt user", policy: exempt, req: Request{Operation: Update, Pod: notTask, OldPod: taskPod(), User: admin}, stage: Validate,
			decision: Skipped, reason: policy.SkipExemptUser},
		{name: "status subresource, validate", policy: p, req: Request{Operation: Update, SubResource: "status", Pod: taskPod(), OldPod: taskPod()}, stage: Validate,
			decision: Allowed, reason: "kpoguard validates pods on create, image and placement changes and resizes"},
		{name: "not a task pod", policy: p, req: Request{Operation: Create, Pod: notTask}, stage: Full,
			decision: Skipped, reason: policy.SkipNotTaskPod},
		{name: "not a task pod, assumed one", policy: p, req: Request{Operation: Create, Pod: notTask, AssumeTaskPod: true}, stage: Full,
			decision: Mutated, note: true},
		{name: "exempt namespace", policy: p, req: Request{Operation: Create, Namespace: "kube-system", Pod: taskPod()}, stage: Full,
			decision: Skipped, reason: policy.SkipExemptNamespace},
		{name: "a quantity too large", policy: p, req: Request{Operation: Create, Pod: huge}, stage: Validate, decision: Error, err: ErrInvalidPod},
		{name: "no policy yet", req: Request{Operation: Create, Pod: taskPod()}, stage: Validate, decision: Error, err: ErrNoPolicy},
		{name: "namespace labels without a reader", policy: byLabel, req: Request{Operation: Create, Pod: taskPod()}, stage: Validate,
			decision: Error, err: errNoNamespaceLabels},
		{name: "namespace labels unreadable", policy: byLabel, req: Request{Operation: Create, Pod: taskPod()}, stage: Validate,
			r: Resolvers{Namespaces: failingLabels{}}, decision: Error},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.req.Raw = mustJSON(t, c.req.Pod)
			if c.req.Namespace == "" {
				c.req.Namespace = "team-a"
			}
			res := Review(t.Context(), c.policy, c.req, c.stage, c.r)
			if res.Decision != c.decision || res.Reason != c.reason || (res.Note != "") != c.note {
				t.Errorf("decision %q, reason %q, note %q; want %q, %q, a note: %v", res.Decision, res.Reason, res.Note, c.decision, c.reason, c.note)
			}
			if c.decision == Error && (res.Err == nil || (c.err != nil && !errors.Is(res.Err, c.err))) {
				t.Errorf("error %v, want %v", res.Err, c.err)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
