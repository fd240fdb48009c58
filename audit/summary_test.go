package audit

import (
	"fmt"
	"maps"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kpoguard/kpoguard/policy"
)

var (
	cpuEnforce = Key{policy.MaxResources, policy.Enforce, Violated}
	saAudit    = Key{policy.ServiceAccount, policy.Audit, Violated}
	defaults   = Key{policy.DefaultResources, policy.Enforce, Changed}
)

func finding(k Key) Finding {
	return Finding{Rule: k.Rule, Mode: k.Mode, Result: k.Result, Path: "spec", Message: "m"}
}

func podWith(ns, name string, keys ...Key) PodFindings {
	p := PodFindings{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)}
	for _, k := range keys {
		p.Findings = append(p.Findings, finding(k))
	}
	return p
}

func TestSummarize(t *testing.T) {
	got := Summarize([]PodFindings{
		// Two containers over the maximum count the pod once.
		podWith("a", "p1", cpuEnforce, cpuEnforce, defaults),
		podWith("a", "p2", saAudit),
		podWith("b", "p3", cpuEnforce),
	}, 5)
	want := Summary{
		Reviewed:   5,
		Pods:       Counts{cpuEnforce: 2, defaults: 1, saAudit: 1},
		Namespaces: map[string]Counts{"a": {cpuEnforce: 1, defaults: 1, saAudit: 1}, "b": {cpuEnforce: 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestCapNamespaces(t *testing.T) {
	namespaces := map[string]Counts{
		"busy":   {cpuEnforce: 5, saAudit: 1},
		"middle": {cpuEnforce: 3},
		"tie-b":  {defaults: 2},
		"tie-a":  {saAudit: 2},
		"quiet":  {cpuEnforce: 1},
	}
	for _, c := range []struct {
		limit int
		want  map[string]Counts
	}{
		{5, namespaces},
		{10, namespaces},
		{3, map[string]Counts{
			"busy": {cpuEnforce: 5, saAudit: 1}, "middle": {cpuEnforce: 3}, "tie-a": {saAudit: 2},
			OtherNamespaces: {defaults: 2, cpuEnforce: 1},
		}},
		{1, map[string]Counts{
			"busy":          {cpuEnforce: 5, saAudit: 1},
			OtherNamespaces: {cpuEnforce: 4, defaults: 2, saAudit: 2},
		}},
	} {
		t.Run(fmt.Sprint(c.limit), func(t *testing.T) {
			in := maps.Clone(namespaces)
			got := CapNamespaces(in, c.limit)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v\nwant %v", got, c.want)
			}
			if len(got) > c.limit+1 {
				t.Errorf("%d namespaces, more than the cap %d and _other", len(got), c.limit)
			}
		})
	}
}
