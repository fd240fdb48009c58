package audit

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kpoguard/kpoguard/policy"
)

// PolicyReports are the wgpolicyk8s.io/v1alpha2 reports Kyverno,
// Kubewarden and Trivy write and Policy Reporter displays.
var PolicyReports = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// Names and labels of kpoguard's reports. A report is named after the
// kpoguard release that writes it (the chart passes its full name), and
// carries that name in ReportLabel: two releases in one cluster each
// list, write and delete only their own.
const (
	DefaultReportName = "kpoguard"
	ReportLabel       = "kpoguard.io/report"
	ManagedByLabel    = "app.kubernetes.io/managed-by"
	ManagedBy         = "kpoguard"
	reportPolicy      = "kpoguard"
	reportSource      = "kpoguard"
	droppedResults    = "kpoguard.io/results-dropped"
	reportedResults   = "kpoguard.io/results"
)

// Report result values kpoguard writes: an enforce-mode violation (the
// pod would be refused now) fails; any other finding (a violation in
// warn or audit mode, or a change the mutating rules would make now)
// warns. Pods without findings get no result: they would make most of a
// report's size for no news.
const (
	reportFail = "fail"
	reportWarn = "warn"
)

// reportResult says how a finding shows in a PolicyReport.
func reportResult(f Finding) string {
	if f.Result == Violated && f.Mode == policy.Enforce {
		return reportFail
	}
	return reportWarn
}

// BuildReports returns one PolicyReport named name per namespace in
// namespaces (the namespaces with running task pods): a report with no results says the
// namespace's task pods were audited and found in line. Each report holds
// at most limit results, enforce-mode ones first; its summary counts them
// all, and the annotation kpoguard.io/results-dropped says how many did
// not fit.
func BuildReports(name string, pods []PodFindings, namespaces []string, now time.Time, limit int) map[string]*unstructured.Unstructured {
	type row struct {
		pod PodFindings
		f   Finding
	}
	rows := map[string][]row{}
	for _, p := range pods {
		for _, f := range p.Findings {
			rows[p.Namespace] = append(rows[p.Namespace], row{p, f})
		}
	}
	out := make(map[string]*unstructured.Unstructured, len(namespaces))
	for _, ns := range namespaces {
		list := rows[ns]
		slices.SortFunc(list, func(a, b row) int {
			return cmp.Or(
				cmp.Compare(rank(reportResult(a.f)), rank(reportResult(b.f))),
				cmp.Compare(a.pod.Name, b.pod.Name),
				cmp.Compare(a.f.Rule, b.f.Rule),
				cmp.Compare(a.f.Path, b.f.Path))
		})
		summary := map[string]any{"pass": int64(0), "fail": int64(0), "warn": int64(0), "error": int64(0), "skip": int64(0)}
		results := []any{}
		for i, r := range list {
			res := reportResult(r.f)
			summary[res] = summary[res].(int64) + 1
			if i < limit {
				results = append(results, resultOf(r.pod, r.f, now))
			}
		}
		report := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": PolicyReports.GroupVersion().String(),
			"kind":       "PolicyReport",
			"metadata": map[string]any{
				"name":        name,
				"namespace":   ns,
				"labels":      map[string]any{ManagedByLabel: ManagedBy, ReportLabel: name},
				"annotations": map[string]any{reportedResults: strconv.Itoa(len(list)), droppedResults: strconv.Itoa(max(0, len(list)-limit))},
			},
			"summary": summary,
			"results": results,
		}}
		out[ns] = report
	}
	return out
}

// rank orders failures before warnings, so a capped report keeps them.
func rank(result string) int {
	if result == reportFail {
		return 0
	}
	return 1
}

func resultOf(p PodFindings, f Finding, now time.Time) map[string]any {
	props := map[string]any{"mode": string(f.Mode), "finding": string(f.Result), "path": f.Path}
	for k, v := range map[string]string{"dag_id": p.Task.DagID, "task_id": p.Task.TaskID, "run_id": p.Task.RunID, "try_number": p.Task.TryNumber, "map_index": p.Task.MapIndex} {
		if v != "" {
			props[k] = v
		}
	}
	return map[string]any{
		"policy":     reportPolicy,
		"rule":       string(f.Rule),
		"result":     reportResult(f),
		"message":    f.Message,
		"source":     reportSource,
		"timestamp":  map[string]any{"seconds": now.Unix(), "nanos": int64(0)},
		"resources":  []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": p.Name, "namespace": p.Namespace, "uid": string(p.UID)}},
		"properties": props,
	}
}

// sameReport says whether two reports say the same, their results'
// timestamps aside: an audit that finds what the last one found writes
// nothing.
func sameReport(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) []any {
		results, _, _ := unstructured.NestedSlice(u.Object, "results")
		for _, r := range results {
			if m, ok := r.(map[string]any); ok {
				delete(m, "timestamp")
			}
		}
		return results
	}
	summary := func(u *unstructured.Unstructured) map[string]any {
		s, _, _ := unstructured.NestedMap(u.Object, "summary")
		return s
	}
	return equalJSON(strip(a), strip(b)) && equalJSON(summary(a), summary(b)) &&
		a.GetAnnotations()[droppedResults] == b.GetAnnotations()[droppedResults] &&
		a.GetAnnotations()[reportedResults] == b.GetAnnotations()[reportedResults]
}
