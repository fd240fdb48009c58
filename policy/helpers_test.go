package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Helpers shared by the policy tests.

const docHeader = "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nmetadata:\n  name: test\n"

// doc builds a policy document whose spec.rules is the given YAML, which is
// indented by the caller as if it were at the top level.
func doc(rules string) string {
	return docHeader + "spec:\n  rules:\n" + indent(rules, "    ")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func mustLoad(t testing.TB, text string) *Policy {
	t.Helper()
	p, err := Load([]byte(text))
	if err != nil {
		t.Fatalf("Load: %v\ndocument:\n%s", err, text)
	}
	return p
}

// rulesFor loads a document with the given rules and returns the rule set of
// a namespace no override matches.
func rulesFor(t testing.TB, rules string) *RuleSet {
	t.Helper()
	rs, err := mustLoad(t, doc(rules)).RulesFor(Namespace{Name: "team-a"})
	if err != nil {
		t.Fatalf("RulesFor: %v", err)
	}
	return rs
}

// only returns a copy of rs in which every rule but id is off.
func only(rs *RuleSet, id RuleID) *RuleSet {
	c := *rs
	for _, r := range ruleTable {
		if r.id != id {
			*r.mode(&c) = Off
		}
	}
	return &c
}

// ruleOnly loads the rules and switches off every rule but id.
func ruleOnly(t testing.TB, id RuleID, rules string) *RuleSet {
	t.Helper()
	return only(rulesFor(t, rules), id)
}

// list parses "cpu=1,memory=2Gi" into a ResourceList; "" is nil.
func list(s string) corev1.ResourceList {
	if s == "" {
		return nil
	}
	out := corev1.ResourceList{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	return out
}

// rr builds resource requirements from requests and limits in list form.
func rr(requests, limits string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: list(requests), Limits: list(limits)}
}

func ctr(name string, res corev1.ResourceRequirements) corev1.Container {
	return corev1.Container{Name: name, Image: "ubuntu:22.04", Resources: res}
}

func sidecarInit(name string, res corev1.ResourceRequirements) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	c := ctr(name, res)
	c.RestartPolicy = &always
	return c
}

// taskPod is a minimal KPO task pod with the given containers.
func taskPod(containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "task-abc",
			Namespace: "team-a",
			Labels:    map[string]string{TaskPodLabel: "True", "dag_id": "d", "task_id": "t"},
		},
		Spec: corev1.PodSpec{Containers: containers, RestartPolicy: corev1.RestartPolicyNever},
	}
}

// basePod is a task pod with one "base" container without resources.
func basePod() *corev1.Pod { return taskPod(ctr("base", corev1.ResourceRequirements{})) }

func loadFixture(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "kpo", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		t.Fatalf("decode fixture %s: %v", name, err)
	}
	return &pod
}

func assertChanges(t testing.TB, got, want []Change) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changes:\n got: %s\nwant: %s", fmtChanges(got), fmtChanges(want))
	}
}

func fmtChanges(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString("\n  {" + string(c.Rule) + " " + string(c.Mode) + " " + c.Path + " = " + c.Value + "}")
	}
	return b.String()
}

func assertViolations(t testing.TB, got, want []Violation) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("violations:\n got: %s\nwant: %s", fmtViolations(got), fmtViolations(want))
	}
}

func fmtViolations(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString("\n  {" + string(v.Mode) + "} " + v.String())
	}
	return b.String()
}

// assertSemantic compares two values with Kubernetes semantic equality
// (quantities compare by value).
func assertSemantic(t testing.TB, what string, got, want any) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s:\n got: %#v\nwant: %#v", what, got, want)
	}
}

// assertResources compares resources by value and also by canonical text,
// so that a missing map and an empty one differ only when one has entries.
func assertResources(t testing.TB, what string, got, want corev1.ResourceRequirements) {
	t.Helper()
	if fmtList(got.Requests) != fmtList(want.Requests) || fmtList(got.Limits) != fmtList(want.Limits) {
		t.Errorf("%s:\n got: requests{%s} limits{%s}\nwant: requests{%s} limits{%s}", what,
			fmtList(got.Requests), fmtList(got.Limits), fmtList(want.Requests), fmtList(want.Limits))
	}
}

func fmtList(l corev1.ResourceList) string {
	parts := make([]string, 0, len(l))
	for _, name := range sortedKeys(l) {
		q := l[name]
		parts = append(parts, string(name)+"="+q.String())
	}
	return strings.Join(parts, ",")
}

func ptr[T any](v T) *T { return &v }

// podWithImages is a task pod with one container per image.
func podWithImages(images ...string) *corev1.Pod {
	p := taskPod()
	for i, img := range images {
		c := ctr("c"+string(rune('0'+i)), corev1.ResourceRequirements{})
		c.Image = img
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	return p
}

// fromWorker is the fact that the launching worker runs in queue.
func fromWorker(queue string) Facts {
	return Facts{Parent: &Parent{Via: ViaIdentity, Worker: "worker-0", Queue: queue}}
}
