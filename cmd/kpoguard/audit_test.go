package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/audit"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

func TestAuditCommandBadInput(t *testing.T) {
	noServer := writeFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\n")
	for _, c := range []struct {
		name      string
		args      []string
		stderrHas string
	}{
		{"unknown output", []string{"audit", "-o", "yaml"}, "usage: kpoguard audit"},
		{"an argument", []string{"audit", "pods"}, "usage: kpoguard audit"},
		{"unknown flag", []string{"audit", "--nope"}, "flag provided but not defined"},
		{"bad selector", []string{"audit", "--pod-selector", "a b c"}, "--pod-selector"},
		{"a kubeconfig without a server", []string{"audit", "--kubeconfig", noServer}, "Kubernetes API configuration"},
		{"missing kubeconfig", []string{"audit", "--kubeconfig", noServer + ".missing"}, "Kubernetes API configuration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", c.args...)
			if code != exitBadInput || !strings.Contains(stderr, c.stderrHas) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, exitBadInput, c.stderrHas)
			}
		})
	}
}

// policyWith is examples/policy.yaml with the service-account rule in
// mode, allowing only an account the fixtures do not use.
func policyWith(t *testing.T, mode string) string {
	t.Helper()
	doc := readFile(t, examplePolicy)
	old := "    serviceAccount:\n      mode: enforce\n      allowed: [default]"
	if !strings.Contains(doc, old) {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	return strings.Replace(doc, old, "    serviceAccount:\n      mode: "+mode+"\n      allowed: [tasks]", 1)
}

// runningPod is a KPO fixture as the webhooks admitted it under the
// example policy, running.
func runningPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := yaml.Unmarshal([]byte(readFile(t, kpoFixtures+"/01-kpo-basic-no-resources.yaml")), &pod); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load([]byte(readFile(t, examplePolicy)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(&pod)
	res := review.Review(context.Background(), p, review.Request{Operation: review.Create, Namespace: pod.Namespace, Pod: &pod, Raw: raw},
		review.Full, review.Resolvers{Namespaces: fixedLabels(nil)})
	if res.Decision != review.Mutated {
		t.Fatalf("admitting the fixture: %s %v", res.Decision, res.Err)
	}
	out := res.Pod
	out.Name, out.UID, out.Status.Phase = name, "uid-"+"x", corev1.PodRunning
	return out
}

func TestAuditCluster(t *testing.T) {
	ns := "astronomer-example-deployment-1234"
	finished := runningPod(t, "finished")
	finished.Status.Phase = corev1.PodSucceeded
	notTask := runningPod(t, "not-a-task")
	delete(notTask.Labels, policy.TaskPodLabel)
	objects := func(doc string, namespaceGone bool) []runtime.Object {
		out := []runtime.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kpoguard", Name: "kpoguard-policy"}, Data: map[string]string{webhook.PolicyKey: doc}},
			runningPod(t, "task-1"), runningPod(t, "task-2"), finished, notTask,
		}
		if !namespaceGone {
			out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
		return out
	}
	selector := labels.SelectorFromSet(labels.Set{policy.TaskPodLabel: "True"})
	flags := auditCLIFlags{output: "text", policyConfigMap: "kpoguard/kpoguard-policy", lookups: lookupFlags{offline: true}}
	for _, c := range []struct {
		name          string
		doc           string
		namespaceGone bool
		flags         func(*auditCLIFlags)
		code          int
		stdoutHas     []string
		stderrHas     string
	}{
		{name: "admitted under the policy in force", doc: readFile(t, examplePolicy), code: exitOK,
			stdoutHas: []string{"NAMESPACE  POD", "2 running task pods reviewed against policy platform", "0 with findings"}},
		{name: "tightened in audit mode", doc: policyWith(t, "audit"), code: exitOK,
			stdoutHas: []string{ns + "  task-1  etl_orders_daily  extract_orders  service-account  audit  violated", ns + "  task-2", "2 with findings"}},
		{name: "tightened in enforce mode: as check, 1", doc: policyWith(t, "enforce"), code: exitDenied,
			stdoutHas: []string{"service-account  enforce  violated"}},
		{name: "another namespace", doc: policyWith(t, "enforce"), flags: func(f *auditCLIFlags) { f.namespace = "elsewhere" }, code: exitOK,
			stdoutHas: []string{"0 running task pods reviewed"}},
		{name: "a policy file instead", doc: "not read", flags: func(f *auditCLIFlags) { f.policyFile = writeFile(t, "p.yaml", policyWith(t, "warn")) }, code: exitOK,
			stdoutHas: []string{"service-account  warn  violated"}},
		{name: "no such ConfigMap", doc: readFile(t, examplePolicy), flags: func(f *auditCLIFlags) { f.policyConfigMap = "kpoguard/other" }, code: exitBadInput,
			stderrHas: "reading the policy"},
		{name: "a ConfigMap that is no NAMESPACE/NAME", doc: readFile(t, examplePolicy), flags: func(f *auditCLIFlags) { f.policyConfigMap = "other" }, code: exitBadInput,
			stderrHas: "is not NAMESPACE/NAME"},
		{name: "an invalid policy", doc: "kind: PodPolicy\n", code: exitBadInput, stderrHas: "configmap kpoguard/kpoguard-policy"},
		{name: "a namespace whose labels cannot be read", doc: readFile(t, examplePolicy), namespaceGone: true, code: exitBadInput,
			stderrHas: "reading namespace"},
		{name: "a missing policy file", doc: "", flags: func(f *auditCLIFlags) { f.policyFile = "missing.yaml" }, code: exitBadInput, stderrHas: "missing.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := flags
			if c.flags != nil {
				c.flags(&f)
			}
			var stdout, stderr bytes.Buffer
			code := auditCluster(context.Background(), fake.NewClientset(objects(c.doc, c.namespaceGone)...), f, selector, &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.stderrHas) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), c.code, c.stderrHas)
			}
			for _, want := range c.stdoutHas {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}

func TestAuditJSON(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "astronomer-example-deployment-1234"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kpoguard", Name: "kpoguard-policy"}, Data: map[string]string{webhook.PolicyKey: policyWith(t, "enforce")}},
		runningPod(t, "task-1"))
	var stdout, stderr bytes.Buffer
	f := auditCLIFlags{output: "json", policyConfigMap: "kpoguard/kpoguard-policy", lookups: lookupFlags{offline: true}}
	if code := auditCluster(context.Background(), client, f, labels.Everything(), &stdout, &stderr); code != exitDenied {
		t.Fatalf("exit %d, want %d: %s", code, exitDenied, stderr.String())
	}
	var rep struct {
		Policy   struct{ Name, Hash string }
		Reviewed int
		Pods     []audit.PodFindings
	}
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Policy.Name != "platform" || rep.Policy.Hash == "" || rep.Reviewed != 1 || len(rep.Pods) != 1 {
		t.Fatalf("report %+v", rep)
	}
	got := rep.Pods[0]
	want := audit.Finding{Rule: policy.ServiceAccount, Mode: policy.Enforce, Result: audit.Violated, Path: "spec.serviceAccountName"}
	if got.Name != "task-1" || got.Task.DagID != "etl_orders_daily" || got.Task.TaskID != "extract_orders" || len(got.Findings) != 1 ||
		got.Findings[0].Rule != want.Rule || got.Findings[0].Mode != want.Mode || got.Findings[0].Result != want.Result || got.Findings[0].Path != want.Path {
		t.Errorf("pod %+v, want one finding like %+v", got, want)
	}
}
