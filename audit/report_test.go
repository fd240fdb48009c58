package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
)

var auditTime = time.Unix(1_800_000_000, 0)

func TestBuildReports(t *testing.T) {
	pods := []PodFindings{
		podWith("a", "p2", saAudit),
		podWith("a", "p1", cpuEnforce, defaults),
		podWith("b", "p3", cpuEnforce),
	}
	pods[1].Task = Task{DagID: "etl", TaskID: "extract", RunID: "r1", TryNumber: "2", MapIndex: "0"}
	reports := BuildReports("kpoguard-a", pods, []string{"a", "b", "clean"}, auditTime, 2)
	if len(reports) != 3 {
		t.Fatalf("%d reports, want one per namespace with task pods (3)", len(reports))
	}
	a := reports["a"]
	if a.GetName() != "kpoguard-a" || a.GetNamespace() != "a" || a.GetLabels()[ManagedByLabel] != ManagedBy || a.GetLabels()[ReportLabel] != "kpoguard-a" || a.GetKind() != "PolicyReport" || a.GetAPIVersion() != "wgpolicyk8s.io/v1alpha2" {
		t.Errorf("report identity: %s %s %s/%s %v", a.GetAPIVersion(), a.GetKind(), a.GetNamespace(), a.GetName(), a.GetLabels())
	}
	summary, _, _ := unstructured.NestedMap(a.Object, "summary")
	if summary["fail"] != int64(1) || summary["warn"] != int64(2) || summary["pass"] != int64(0) {
		t.Errorf("summary %v: want every finding counted, 1 fail and 2 warn, those past the cap too", summary)
	}
	if a.GetAnnotations()[droppedResults] != "1" || a.GetAnnotations()[reportedResults] != "3" {
		t.Errorf("annotations %v: want 3 results, 1 dropped", a.GetAnnotations())
	}
	results, _, _ := unstructured.NestedSlice(a.Object, "results")
	if len(results) != 2 {
		t.Fatalf("%d results, want the cap (2)", len(results))
	}
	first := results[0].(map[string]any)
	// The enforce-mode violation sorts first, so the cap keeps it.
	want := map[string]any{
		"policy": "kpoguard", "rule": "max-resources", "result": "fail", "message": "m", "source": "kpoguard",
		"timestamp": map[string]any{"seconds": auditTime.Unix(), "nanos": int64(0)},
		"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "p1", "namespace": "a", "uid": "uid-a-p1"}},
		"properties": map[string]any{"mode": "enforce", "finding": "violated", "path": "spec",
			"dag_id": "etl", "task_id": "extract", "run_id": "r1", "try_number": "2", "map_index": "0"},
	}
	if !equalJSON(first, want) {
		t.Errorf("first result\n%v\nwant\n%v", first, want)
	}
	if second := results[1].(map[string]any); second["result"] != "warn" || second["rule"] != "default-resources" {
		t.Errorf("second result %v: want p1's change, a warning", second)
	}
	clean, _, _ := unstructured.NestedSlice(reports["clean"].Object, "results")
	cleanSummary, _, _ := unstructured.NestedMap(reports["clean"].Object, "summary")
	if len(clean) != 0 || cleanSummary["fail"] != int64(0) || cleanSummary["warn"] != int64(0) {
		t.Errorf("a namespace without findings: %v %v, want an empty report", clean, cleanSummary)
	}
}

func TestReportWriterWritesOnlyChanges(t *testing.T) {
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"})
	w := &ReportWriter{Client: client, Name: DefaultReportName, Limit: 100}
	ctx := context.Background()
	writes := func() map[string]int {
		out := map[string]int{}
		for _, a := range client.Actions() {
			if a.GetVerb() != "list" {
				out[a.GetVerb()+" "+a.GetNamespace()]++
			}
		}
		client.ClearActions()
		return out
	}
	expect := func(what string, want map[string]int) {
		t.Helper()
		got := writes()
		if !equalJSON(got, want) {
			t.Errorf("%s: writes %v, want %v", what, got, want)
		}
	}
	step := func(pods []PodFindings, namespaces []string, at time.Time) {
		t.Helper()
		if err := w.Write(ctx, pods, namespaces, at); err != nil {
			t.Fatal(err)
		}
	}
	step([]PodFindings{podWith("a", "p1", cpuEnforce)}, []string{"a", "b"}, auditTime)
	expect("first audit", map[string]int{"create a": 1, "create b": 1})
	step([]PodFindings{podWith("a", "p1", cpuEnforce)}, []string{"a", "b"}, auditTime.Add(time.Minute))
	expect("the same findings a minute later", map[string]int{})
	step([]PodFindings{podWith("a", "p1", cpuEnforce, saAudit)}, []string{"a", "b"}, auditTime.Add(2*time.Minute))
	expect("a new finding", map[string]int{"update a": 1})
	step(nil, []string{"a"}, auditTime.Add(3*time.Minute))
	expect("b's task pods gone, a's findings gone", map[string]int{"update a": 1, "delete b": 1})
	got, err := client.Resource(PolicyReports).Namespace("a").Get(ctx, DefaultReportName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if results, _, _ := unstructured.NestedSlice(got.Object, "results"); len(results) != 0 {
		t.Errorf("a's report still has %d results", len(results))
	}
}

func TestReportWriterFailures(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"})
	client.PrependReactor("create", "policyreports", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errForbidden
	})
	w := &ReportWriter{Client: client, Name: DefaultReportName, Limit: 100}
	if err := w.Write(context.Background(), nil, []string{"a"}, auditTime); err == nil {
		t.Error("a refused create: no error")
	}
	client.PrependReactor("list", "policyreports", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errForbidden
	})
	if err := w.Write(context.Background(), nil, []string{"a"}, auditTime); err == nil {
		t.Error("a refused list: no error")
	}
}

// Two kpoguard releases in one cluster, their reports named apart: each
// writes, updates and deletes its own, and never the other's.
func TestReportWritersOfTwoReleases(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"})
	ctx := context.Background()
	a := &ReportWriter{Client: client, Name: "kpoguard-a", Limit: 100}
	b := &ReportWriter{Client: client, Name: "kpoguard-b", Limit: 100}
	if err := a.Write(ctx, []PodFindings{podWith("shared", "p1", cpuEnforce)}, []string{"shared", "only-a"}, auditTime); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	// b audits other task pods: none in only-a, none with findings in
	// shared.
	if err := b.Write(ctx, nil, []string{"shared"}, auditTime); err != nil {
		t.Fatal(err)
	}
	for _, act := range client.Actions() {
		if act.GetVerb() == "list" {
			if sel := act.(clienttesting.ListActionImpl).GetListRestrictions().Labels.String(); !strings.Contains(sel, ReportLabel+"=kpoguard-b") {
				t.Errorf("b lists with selector %q, want its own reports only", sel)
			}
			continue
		}
		var name string
		switch a := act.(type) {
		case clienttesting.DeleteAction:
			name = a.GetName()
		case interface{ GetObject() runtime.Object }: // create, update
			name = a.GetObject().(metav1.Object).GetName()
		}
		if name != "kpoguard-b" {
			t.Errorf("b %s %s/%s", act.GetVerb(), act.GetNamespace(), name)
		}
	}
	list, err := client.Resource(PolicyReports).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range list.Items {
		results, _, _ := unstructured.NestedSlice(r.Object, "results")
		got = append(got, fmt.Sprintf("%s/%s:%d", r.GetNamespace(), r.GetName(), len(results)))
	}
	slices.Sort(got)
	want := []string{"only-a/kpoguard-a:0", "shared/kpoguard-a:1", "shared/kpoguard-b:0"}
	if !slices.Equal(got, want) {
		t.Errorf("reports %q, want %q: a's untouched by b", got, want)
	}
}

// A report kpoguard wrote before its reports carried ReportLabel is not
// listed, so its create collides: the writer takes it over rather than
// failing every audit; another tool's report of that name stays its own.
func TestReportWriterTakesOverItsUnlabelledReport(t *testing.T) {
	old := func(ns string, labels map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
			"metadata": map[string]any{"name": DefaultReportName, "namespace": ns, "labels": labels},
			"results":  []any{},
		}}
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"},
		old("ours", map[string]any{ManagedByLabel: ManagedBy}), old("theirs", map[string]any{ManagedByLabel: "someone-else"}))
	w := &ReportWriter{Client: client, Name: DefaultReportName, Limit: 100}
	ctx := context.Background()
	err := w.Write(ctx, []PodFindings{podWith("ours", "p1", cpuEnforce), podWith("theirs", "p2", cpuEnforce)}, []string{"ours", "theirs"}, auditTime)
	if err == nil || !strings.Contains(err.Error(), "theirs") || strings.Contains(err.Error(), "ours/") {
		t.Errorf("err %v, want only theirs/%s refused", err, DefaultReportName)
	}
	for ns, wantLabel := range map[string]string{"ours": DefaultReportName, "theirs": ""} {
		got, err := client.Resource(PolicyReports).Namespace(ns).Get(ctx, DefaultReportName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetLabels()[ReportLabel] != wantLabel {
			t.Errorf("%s's report labels %v, want %s=%q", ns, got.GetLabels(), ReportLabel, wantLabel)
		}
	}
}
