package audit

import (
	"cmp"
	"slices"

	"github.com/kpoguard/kpoguard/policy"
)

// Key is one series of the audit's pod counts: a rule, its mode and the
// result, as in kpoguard_rule_results_total.
type Key struct {
	Rule   policy.RuleID
	Mode   policy.Mode
	Result Result
}

// Counts are pods by key: a pod counts once per key, however many
// containers or fields the rule found.
type Counts map[Key]int

// Summary is what one audit found, as the metrics publish it.
type Summary struct {
	// Reviewed counts the task pods reviewed.
	Reviewed int
	Pods     Counts
	// Namespaces are the same counts by namespace.
	Namespaces map[string]Counts
}

// OtherNamespaces is the namespace label the namespaces past the cap are
// summed under. No namespace can be named so: names start with a letter
// or digit.
const OtherNamespaces = "_other"

// Summarize counts the pods with each finding.
func Summarize(pods []PodFindings, reviewed int) Summary {
	s := Summary{Reviewed: reviewed, Pods: Counts{}, Namespaces: map[string]Counts{}}
	for _, p := range pods {
		seen := map[Key]bool{}
		for _, f := range p.Findings {
			k := Key{f.Rule, f.Mode, f.Result}
			if seen[k] {
				continue
			}
			seen[k] = true
			s.Pods[k]++
			if s.Namespaces[p.Namespace] == nil {
				s.Namespaces[p.Namespace] = Counts{}
			}
			s.Namespaces[p.Namespace][k]++
		}
	}
	return s
}

// CapNamespaces keeps the limit namespaces with the most findings (ties
// by name) and sums the others under OtherNamespaces, so a per-namespace
// metric has at most limit+1 namespace label values however many
// namespaces run tasks.
func CapNamespaces(namespaces map[string]Counts, limit int) map[string]Counts {
	if len(namespaces) <= limit {
		return namespaces
	}
	names := make([]string, 0, len(namespaces))
	totals := map[string]int{}
	for ns, c := range namespaces {
		names = append(names, ns)
		for _, n := range c {
			totals[ns] += n
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(totals[b], totals[a]), cmp.Compare(a, b))
	})
	out := make(map[string]Counts, limit+1)
	for _, ns := range names[:limit] {
		out[ns] = namespaces[ns]
	}
	other := Counts{}
	for _, ns := range names[limit:] {
		for k, n := range namespaces[ns] {
			other[k] += n
		}
	}
	out[OtherNamespaces] = other
	return out
}
