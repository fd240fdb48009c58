package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Helpers for required node affinity: merging a pool's terms into a pod's,
// and judging whether a term, a requirement or a label can match a node
// of a pool, the way the scheduler would.

// mergeTerms ANDs the pool's required terms into the pod's. Terms are
// ORed, so (P1 or P2) and (W1 or W2) is every Pi+Wj. A pod term that
// already carries one of the pool's terms is kept as it is, which makes a
// second merge change nothing.
func mergeTerms(podTerms, poolTerms []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	var out []corev1.NodeSelectorTerm
	for _, p := range podTerms {
		if slices.ContainsFunc(poolTerms, func(w corev1.NodeSelectorTerm) bool { return carries(p, w) }) {
			out = append(out, p)
			continue
		}
		for _, w := range poolTerms {
			t := *p.DeepCopy()
			t.MatchExpressions = appendMissing(t.MatchExpressions, w.MatchExpressions)
			t.MatchFields = appendMissing(t.MatchFields, w.MatchFields)
			out = append(out, t)
		}
	}
	return out
}

func appendMissing(have, add []corev1.NodeSelectorRequirement) []corev1.NodeSelectorRequirement {
	for _, r := range add {
		if !hasRequirement(have, r) {
			have = append(have, *r.DeepCopy())
		}
	}
	return have
}

// carries reports whether term t holds every requirement of w.
func carries(t, w corev1.NodeSelectorTerm) bool {
	for _, r := range w.MatchExpressions {
		if !hasRequirement(t.MatchExpressions, r) {
			return false
		}
	}
	for _, r := range w.MatchFields {
		if !hasRequirement(t.MatchFields, r) {
			return false
		}
	}
	return true
}

func hasRequirement(list []corev1.NodeSelectorRequirement, r corev1.NodeSelectorRequirement) bool {
	return slices.ContainsFunc(list, func(have corev1.NodeSelectorRequirement) bool { return equality.Semantic.DeepEqual(have, r) })
}

// fitsSomeTerm reports whether a node labelled k=v can satisfy at least
// one of the terms; with no terms, any node can.
func fitsSomeTerm(terms []corev1.NodeSelectorTerm, k, v string) bool {
	return len(terms) == 0 || slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool {
		return !slices.ContainsFunc(t.MatchExpressions, func(e corev1.NodeSelectorRequirement) bool {
			return e.Key == k && !requirementFits(e, v)
		})
	})
}

func describeRequirement(e corev1.NodeSelectorRequirement) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Key, e.Operator, strings.Join(e.Values, ",")))
}

func describeTerms(terms []corev1.NodeSelectorTerm) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		reqs := make([]string, 0, len(t.MatchExpressions)+len(t.MatchFields))
		for _, r := range append(slices.Clone(t.MatchExpressions), t.MatchFields...) {
			reqs = append(reqs, describeRequirement(r))
		}
		parts[i] = "(" + strings.Join(reqs, " and ") + ")"
	}
	return strings.Join(parts, " or ")
}

// requiredNodeSelector returns the pod's required node selector, creating
// the path to it.
func requiredNodeSelector(pod *corev1.Pod) *corev1.NodeSelector {
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	if pod.Spec.Affinity.NodeAffinity == nil {
		pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	return na.RequiredDuringSchedulingIgnoredDuringExecution
}

// allTermsCarry reports whether every required node-affinity term holds
// every requirement of w, as nodePoolPlacement leaves them.
func allTermsCarry(pod *corev1.Pod, w corev1.NodeSelectorTerm) bool {
	terms := requiredTerms(pod)
	return len(terms) > 0 && !slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool { return !carries(t, w) })
}

// eachTermCarriesOne reports whether every required node-affinity term
// holds one of the pool's terms, as mergeTerms leaves them.
func eachTermCarriesOne(pod *corev1.Pod, poolTerms []corev1.NodeSelectorTerm) bool {
	terms := requiredTerms(pod)
	return len(terms) > 0 && !slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool {
		return !slices.ContainsFunc(poolTerms, func(w corev1.NodeSelectorTerm) bool { return carries(t, w) })
	})
}

func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	na := pod.Spec.Affinity
	if na == nil || na.NodeAffinity == nil || na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

// requirementFits reports whether a node labelled value satisfies e.
func requirementFits(e corev1.NodeSelectorRequirement, value string) bool {
	switch e.Operator {
	case corev1.NodeSelectorOpIn:
		return slices.Contains(e.Values, value)
	case corev1.NodeSelectorOpNotIn:
		return !slices.Contains(e.Values, value)
	case corev1.NodeSelectorOpDoesNotExist:
		return false
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		return compareInt(value, e.Operator, e.Values)
	}
	return true // Exists
}

// termFits reports whether a node of the pool could satisfy the term,
// judging the keys the pool pins with its nodeSelector, and In
// expressions of the term against the In expressions of the pool's terms
// on the same key (disjoint values can match no node): it must fit with
// at least one of the pool's terms.
func termFits(t corev1.NodeSelectorTerm, pl *pool) bool {
	for _, e := range t.MatchExpressions {
		if v, pinned := pl.nodeSelector[e.Key]; pinned && !requirementFits(e, v) {
			return false
		}
	}
	if len(pl.terms) == 0 {
		return true
	}
	return slices.ContainsFunc(pl.terms, func(w corev1.NodeSelectorTerm) bool {
		for _, e := range t.MatchExpressions {
			if e.Operator != corev1.NodeSelectorOpIn {
				continue
			}
			for _, we := range w.MatchExpressions {
				if we.Key == e.Key && we.Operator == corev1.NodeSelectorOpIn &&
					!slices.ContainsFunc(we.Values, func(v string) bool { return slices.Contains(e.Values, v) }) {
					return false
				}
			}
		}
		return true
	})
}

// compareInt applies Gt or Lt the way the scheduler does: both sides must
// be integers.
func compareInt(label string, op corev1.NodeSelectorOperator, values []string) bool {
	have, err1 := strconv.ParseInt(label, 10, 64)
	if len(values) != 1 || err1 != nil {
		return false
	}
	want, err2 := strconv.ParseInt(values[0], 10, 64)
	if err2 != nil {
		return false
	}
	if op == corev1.NodeSelectorOpGt {
		return have > want
	}
	return have < want
}
