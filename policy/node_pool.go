package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var requiredTermsPath = field.NewPath("spec", "affinity", "nodeAffinity",
	"requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")

// nodePoolPlacement pins a pod to its queue's node pool: the pool's
// nodeSelector entries and tolerations are added where missing, and its
// matchExpressions are ANDed into every required node-affinity term (terms
// are ORed, so each must carry them).
//
// Writes spec.nodeSelector, spec.tolerations and spec.affinity.nodeAffinity.
// A value the pod already set differently is left for nodePool to refuse,
// and a pod with spec.nodeName is left alone.
func nodePoolPlacement(pod *corev1.Pod, in *input) []Change {
	q, ok := in.rules.NodePool.Queues[in.queue.name]
	if !ok || pod.Spec.NodeName != "" {
		return nil
	}
	var changes []Change
	for _, k := range sortedKeys(q.NodeSelector) {
		if _, set := pod.Spec.NodeSelector[k]; set {
			continue
		}
		if pod.Spec.NodeSelector == nil {
			pod.Spec.NodeSelector = map[string]string{}
		}
		pod.Spec.NodeSelector[k] = q.NodeSelector[k]
		changes = append(changes, Change{Path: field.NewPath("spec", "nodeSelector").Key(k).String(), Value: q.NodeSelector[k]})
	}
	for _, t := range q.Tolerations {
		if slices.ContainsFunc(pod.Spec.Tolerations, func(have corev1.Toleration) bool { return equality.Semantic.DeepEqual(have, t) }) {
			continue
		}
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, *t.DeepCopy())
		changes = append(changes, Change{
			Path:  field.NewPath("spec", "tolerations").Index(len(pod.Spec.Tolerations) - 1).String(),
			Value: describeToleration(t),
		})
	}
	if len(q.MatchExpressions) == 0 {
		return changes
	}
	required := requiredNodeSelector(pod)
	if len(required.NodeSelectorTerms) == 0 {
		required.NodeSelectorTerms = []corev1.NodeSelectorTerm{{}}
	}
	for i := range required.NodeSelectorTerms {
		term := &required.NodeSelectorTerms[i]
		for _, e := range q.MatchExpressions {
			if slices.ContainsFunc(term.MatchExpressions, func(have corev1.NodeSelectorRequirement) bool { return equality.Semantic.DeepEqual(have, e) }) {
				continue
			}
			term.MatchExpressions = append(term.MatchExpressions, *e.DeepCopy())
			changes = append(changes, Change{
				Path:  requiredTermsPath.Index(i).Child("matchExpressions").Index(len(term.MatchExpressions) - 1).String(),
				Value: strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Key, e.Operator, strings.Join(e.Values, ","))),
			})
		}
	}
	return changes
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

func describeToleration(t corev1.Toleration) string {
	s := t.Key
	if t.Operator == corev1.TolerationOpExists {
		s += " Exists"
	} else if t.Value != "" {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	return s
}

// nodePool refuses pods that would run outside their queue's node pool: a
// queue label naming no queue, spec.nodeName (unless allowed), a
// nodeSelector or required node affinity that contradicts the pool, or a
// pod that is not pinned at all because the mutating webhook was skipped.
//
// Reads spec.nodeName, spec.nodeSelector, spec.affinity.nodeAffinity and
// the queue label.
func nodePool(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.NodePool
	var out []Violation
	if in.queue.requested != "" {
		out = append(out, Violation{
			Subject: fmt.Sprintf("label %s=%q", cfg.QueueLabel, in.queue.requested),
			Path:    field.NewPath("metadata", "labels").Key(cfg.QueueLabel).String(),
			Message: "names no queue of this deployment",
			Fix:     fmt.Sprintf("use one of: %s", strings.Join(sortedKeys(cfg.Queues), ", ")),
		})
	}
	if pod.Spec.NodeName != "" && !cfg.AllowNodeName {
		out = append(out, Violation{
			Subject: fmt.Sprintf("node %q", pod.Spec.NodeName),
			Path:    field.NewPath("spec", "nodeName").String(),
			Message: "naming a node bypasses the scheduler and the queue's node pool",
			Fix:     "remove spec.nodeName and let the queue choose the node",
		})
	}
	q, ok := cfg.Queues[in.queue.name]
	if !ok || pod.Spec.NodeName != "" {
		return out
	}
	pool := describePool(in.queue.name, q)
	for _, k := range sortedKeys(q.NodeSelector) {
		want := q.NodeSelector[k]
		path := field.NewPath("spec", "nodeSelector").Key(k).String()
		switch have, set := pod.Spec.NodeSelector[k]; {
		case !set:
			out = append(out, Violation{Subject: "pod", Path: path,
				Message: fmt.Sprintf("is not pinned to %s", pool),
				Fix:     "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"})
		case have != want:
			out = append(out, Violation{Subject: fmt.Sprintf("nodeSelector %s=%s", k, have), Path: path,
				Message: fmt.Sprintf("asks for another node pool than %s", pool),
				Fix:     "remove node_selector from the task; the queue decides where it runs"})
		}
	}
	// The queue's expressions: the pod's nodeSelector must satisfy them,
	// and every required term must carry them.
	for i, e := range q.MatchExpressions {
		if have, set := pod.Spec.NodeSelector[e.Key]; set && !requirementFits(e, have) {
			out = append(out, Violation{Subject: fmt.Sprintf("nodeSelector %s=%s", e.Key, have),
				Path:    field.NewPath("spec", "nodeSelector").Key(e.Key).String(),
				Message: fmt.Sprintf("asks for another node pool than %s", pool),
				Fix:     "remove node_selector from the task; the queue decides where it runs"})
		}
		if !allTermsCarry(pod, e) {
			out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("is not pinned to %s: its required node affinity lacks %s %s %s", pool, e.Key, e.Operator, strings.Join(e.Values, ",")),
				Fix:     fmt.Sprintf("create the pod through kpoguard's mutating webhook (queue expression %d)", i)})
		}
	}
	if na := pod.Spec.Affinity; na != nil && na.NodeAffinity != nil && na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		terms := na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) > 0 && !slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool { return termFits(t, q) }) {
			out = append(out, Violation{Subject: "required node affinity", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("no term can match a node of %s", pool),
				Fix:     "remove the node affinity from the task; the queue decides where it runs"})
		}
	}
	return out
}

// allTermsCarry reports whether every required node-affinity term holds
// the requirement, as nodePoolPlacement leaves them.
func allTermsCarry(pod *corev1.Pod, e corev1.NodeSelectorRequirement) bool {
	na := pod.Spec.Affinity
	if na == nil || na.NodeAffinity == nil || na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	terms := na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	return len(terms) > 0 && !slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool {
		return !slices.ContainsFunc(t.MatchExpressions, func(have corev1.NodeSelectorRequirement) bool { return equality.Semantic.DeepEqual(have, e) })
	})
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
// expressions of the term against the pool's In expressions on the same
// key (disjoint values can match no node).
func termFits(t corev1.NodeSelectorTerm, q QueueSpec) bool {
	for _, e := range t.MatchExpressions {
		if v, pinned := q.NodeSelector[e.Key]; pinned && !requirementFits(e, v) {
			return false
		}
		if e.Operator != corev1.NodeSelectorOpIn {
			continue
		}
		for _, qe := range q.MatchExpressions {
			if qe.Key == e.Key && qe.Operator == corev1.NodeSelectorOpIn &&
				!slices.ContainsFunc(qe.Values, func(v string) bool { return slices.Contains(e.Values, v) }) {
				return false
			}
		}
	}
	return true
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

func describePool(queue string, q QueueSpec) string {
	parts := make([]string, 0, len(q.NodeSelector))
	for _, k := range sortedKeys(q.NodeSelector) {
		parts = append(parts, k+"="+q.NodeSelector[k])
	}
	if len(parts) == 0 {
		return fmt.Sprintf("queue %q's node pool", queue)
	}
	return fmt.Sprintf("queue %q's node pool (%s)", queue, strings.Join(parts, ","))
}
