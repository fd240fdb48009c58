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

// pool is where a queue's pods run: a queue of the policy, or the
// placement of the worker that launched the pod.
type pool struct {
	desc         string
	nodeSelector map[string]string
	tolerations  []corev1.Toleration
	// terms are required node-affinity terms (ORed); each of the pod's
	// terms must carry one. A policy queue has one: its matchExpressions.
	terms []corev1.NodeSelectorTerm
}

func (rs *RuleSet) queuePool(name string) *pool {
	q, ok := rs.NodePool.Queues[name]
	if !ok {
		return nil
	}
	p := &pool{desc: describePool(name, q), nodeSelector: q.NodeSelector, tolerations: q.Tolerations}
	if len(q.MatchExpressions) > 0 {
		p.terms = []corev1.NodeSelectorTerm{{MatchExpressions: q.MatchExpressions}}
	}
	return p
}

func inheritedPool(worker string, pl *Placement) *pool {
	return &pool{
		desc:         describeSelector(fmt.Sprintf("worker %q's node pool", worker), pl.NodeSelector),
		nodeSelector: pl.NodeSelector,
		tolerations:  pl.Tolerations,
		terms:        pl.Terms,
	}
}

// nodePoolPlacement pins a pod to its queue's node pool: the pool's
// nodeSelector entries and tolerations are added where missing, and its
// required node-affinity terms are merged into the pod's (see mergeTerms).
//
// Writes spec.nodeSelector, spec.tolerations and spec.affinity.nodeAffinity.
// A value the pod already set differently is left for nodePool to refuse,
// unless the launching worker decided the pool and the policy overrides
// conflicts; a pod with spec.nodeName is left alone.
func nodePoolPlacement(pod *corev1.Pod, in *input) []Change {
	pl := in.queue.pool
	if pl == nil || pod.Spec.NodeName != "" {
		return nil
	}
	var changes []Change
	if in.queue.parent != nil && in.rules.NodePool.Parent.OnConflict == ConflictOverride {
		changes = overrideConflicts(pod, in)
	}
	for _, k := range sortedKeys(pl.nodeSelector) {
		if _, set := pod.Spec.NodeSelector[k]; set {
			continue
		}
		if pod.Spec.NodeSelector == nil {
			pod.Spec.NodeSelector = map[string]string{}
		}
		pod.Spec.NodeSelector[k] = pl.nodeSelector[k]
		changes = append(changes, Change{Path: field.NewPath("spec", "nodeSelector").Key(k).String(), Value: pl.nodeSelector[k]})
	}
	for _, t := range pl.tolerations {
		if hasToleration(pod.Spec.Tolerations, t) {
			continue
		}
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, *t.DeepCopy())
		changes = append(changes, Change{
			Path:  field.NewPath("spec", "tolerations").Index(len(pod.Spec.Tolerations) - 1).String(),
			Value: describeToleration(t),
		})
	}
	if len(pl.terms) == 0 {
		return changes
	}
	required := requiredNodeSelector(pod)
	before := required.NodeSelectorTerms
	if len(before) == 0 {
		before = []corev1.NodeSelectorTerm{{}}
	}
	required.NodeSelectorTerms = mergeTerms(before, pl.terms)
	if len(required.NodeSelectorTerms) != len(before) {
		// The pod's terms were multiplied out with several of the pool's.
		return append(changes, Change{Path: requiredTermsPath.String(), Value: describeTerms(required.NodeSelectorTerms)})
	}
	// One term each: report every requirement added, where it went.
	for i, term := range required.NodeSelectorTerms {
		had := before[i]
		for j := len(had.MatchExpressions); j < len(term.MatchExpressions); j++ {
			changes = append(changes, Change{Path: requiredTermsPath.Index(i).Child("matchExpressions").Index(j).String(), Value: describeRequirement(term.MatchExpressions[j])})
		}
		for j := len(had.MatchFields); j < len(term.MatchFields); j++ {
			changes = append(changes, Change{Path: requiredTermsPath.Index(i).Child("matchFields").Index(j).String(), Value: describeRequirement(term.MatchFields[j])})
		}
	}
	return changes
}

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

func hasToleration(list []corev1.Toleration, t corev1.Toleration) bool {
	return slices.ContainsFunc(list, func(have corev1.Toleration) bool { return equality.Semantic.DeepEqual(have, t) })
}

// overrideConflicts removes what in the pod asks for another pool than
// its worker's: nodeSelector values (replaced), nodeSelector keys the
// pool's terms rule out, required terms no node of the pool can match,
// and tolerations of other queues' pools.
func overrideConflicts(pod *corev1.Pod, in *input) []Change {
	pl := in.queue.pool
	var changes []Change
	for _, k := range sortedKeys(pod.Spec.NodeSelector) {
		have := pod.Spec.NodeSelector[k]
		path := field.NewPath("spec", "nodeSelector").Key(k).String()
		if want, pinned := pl.nodeSelector[k]; pinned && have != want {
			pod.Spec.NodeSelector[k] = want
			changes = append(changes, Change{Path: path, Value: want})
		} else if !pinned && !fitsSomeTerm(pl.terms, k, have) {
			delete(pod.Spec.NodeSelector, k)
			changes = append(changes, Change{Path: path, Value: "removed " + k + "=" + have})
		}
	}
	if na := pod.Spec.Affinity; na != nil && na.NodeAffinity != nil && na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		terms := na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		kept := slices.DeleteFunc(slices.Clone(terms), func(t corev1.NodeSelectorTerm) bool { return !termFits(t, pl) })
		if len(kept) != len(terms) {
			na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = kept
			if len(kept) == 0 {
				// The API server refuses an empty term list; no
				// requirement is what is left.
				na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = nil
			}
			changes = append(changes, Change{Path: requiredTermsPath.String(), Value: fmt.Sprintf("removed %d term(s) no node of %s can match", len(terms)-len(kept), pl.desc)})
		}
	}
	var kept []corev1.Toleration
	for i, t := range pod.Spec.Tolerations {
		if other := otherPoolToleration(in, t); other != "" {
			changes = append(changes, Change{Path: field.NewPath("spec", "tolerations").Index(i).String(), Value: "removed " + describeToleration(t) + " of " + other})
			continue
		}
		kept = append(kept, t)
	}
	if len(kept) != len(pod.Spec.Tolerations) {
		pod.Spec.Tolerations = kept
	}
	return changes
}

// otherPoolToleration names the queue whose pool a toleration lets the pod
// onto, when its own pool does not; "" otherwise. Each queue's tolerations
// stand for the taints of its pool's nodes, so a broader toleration than
// the queue's own (Exists, no effect, no key) reaches that pool too.
func otherPoolToleration(in *input, t corev1.Toleration) string {
	own := in.queue.pool.tolerations
	if hasToleration(own, t) {
		return ""
	}
	queues := in.rules.NodePool.Queues
	for _, name := range sortedKeys(queues) {
		for _, q := range queues[name].Tolerations {
			taint := corev1.Taint{Key: q.Key, Value: q.Value, Effect: q.Effect}
			if tolerates(t, taint) && !slices.ContainsFunc(own, func(o corev1.Toleration) bool { return tolerates(o, taint) }) {
				return describePool(name, queues[name])
			}
		}
	}
	return ""
}

// tolerates is the scheduler's toleration match, for the Equal and Exists
// operators queues use.
func tolerates(t corev1.Toleration, taint corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key == "" {
		return t.Operator == corev1.TolerationOpExists
	}
	if t.Key != taint.Key {
		return false
	}
	return t.Operator == corev1.TolerationOpExists || t.Value == taint.Value
}

// otherPool names the pool a nodeSelector entry asks for: the queue whose
// nodeSelector has it, else the entry itself.
func otherPool(queues map[string]QueueSpec, k, v string) string {
	for _, name := range sortedKeys(queues) {
		if queues[name].NodeSelector[k] == v {
			return describePool(name, queues[name])
		}
	}
	return fmt.Sprintf("the node pool %s=%s", k, v)
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

func describeToleration(t corev1.Toleration) string {
	s := t.Key
	if t.Operator == corev1.TolerationOpExists {
		s = strings.TrimSpace(s + " Exists")
		if t.Key == "" {
			s = "of every taint (Exists)"
		}
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
// When the launching worker decided the pool, it also refuses a pod whose
// worker is unknown (as the policy's fallbacks say), a queue label or
// toleration of another queue's pool (unless the policy overrides
// conflicts), and names both pools in every conflict.
//
// Reads spec.nodeName, spec.nodeSelector, spec.tolerations,
// spec.affinity.nodeAffinity and the queue label.
func nodePool(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.NodePool
	var out []Violation
	if in.queue.unknown != "" {
		out = append(out, Violation{
			Subject: "request",
			Path:    "userInfo",
			Message: "the Airflow worker that launched this pod could not be determined: " + in.queue.unknown,
			Fix:     "create task pods from an Airflow worker with its own service account (KubernetesPodOperator in_cluster=True), or ask your platform team",
		})
	}
	if in.queue.requested != "" {
		out = append(out, Violation{
			Subject: fmt.Sprintf("label %s=%q", cfg.QueueLabel, in.queue.requested),
			Path:    field.NewPath("metadata", "labels").Key(cfg.QueueLabel).String(),
			Message: "names no queue of this deployment",
			Fix:     fmt.Sprintf("use one of: %s", strings.Join(sortedKeys(cfg.Queues), ", ")),
		})
	}
	pl := in.queue.pool
	parent := in.queue.parent != nil
	if c := in.queue.claimed; c != "" && cfg.Parent.OnConflict == ConflictDeny {
		out = append(out, Violation{
			Subject: fmt.Sprintf("label %s=%q", cfg.QueueLabel, c),
			Path:    field.NewPath("metadata", "labels").Key(cfg.QueueLabel).String(),
			Message: fmt.Sprintf("asks for %s, but %s runs in %s", describePool(c, cfg.Queues[c]), in.queue.decider(), pl.desc),
			Fix:     "remove the queue label; a task does not choose its queue",
		})
	}
	// Following the worker, no task may name its node: that would skip
	// the worker's pool whatever allowNodeName says.
	if pod.Spec.NodeName != "" && (!cfg.AllowNodeName || parent) {
		out = append(out, Violation{
			Subject: fmt.Sprintf("node %q", pod.Spec.NodeName),
			Path:    field.NewPath("spec", "nodeName").String(),
			Message: "naming a node bypasses the scheduler and the queue's node pool",
			Fix:     "remove spec.nodeName and let the queue choose the node",
		})
	}
	if pl == nil || pod.Spec.NodeName != "" {
		return out
	}
	conflict := func(subject, path, asks, what string) Violation {
		if parent {
			return Violation{Subject: subject, Path: path,
				Message: fmt.Sprintf("asks for %s, but %s runs in %s", asks, in.queue.decider(), pl.desc),
				Fix:     fmt.Sprintf("remove %s from the task; a task runs where %s runs", what, in.queue.decider())}
		}
		return Violation{Subject: subject, Path: path,
			Message: fmt.Sprintf("asks for another node pool than %s", pl.desc),
			Fix:     fmt.Sprintf("remove %s from the task; the queue decides where it runs", what)}
	}
	for _, k := range sortedKeys(pl.nodeSelector) {
		want := pl.nodeSelector[k]
		path := field.NewPath("spec", "nodeSelector").Key(k).String()
		switch have, set := pod.Spec.NodeSelector[k]; {
		case !set:
			out = append(out, Violation{Subject: "pod", Path: path,
				Message: fmt.Sprintf("is not pinned to %s", pl.desc),
				Fix:     "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"})
		case have != want:
			out = append(out, conflict(fmt.Sprintf("nodeSelector %s=%s", k, have), path, otherPool(cfg.Queues, k, have), "node_selector"))
		}
	}
	// The pool's terms: the pod's nodeSelector must be able to satisfy
	// them, and every required term must carry one of them.
	switch len(pl.terms) {
	case 0:
	case 1:
		for i, e := range pl.terms[0].MatchExpressions {
			if have, set := pod.Spec.NodeSelector[e.Key]; set && !requirementFits(e, have) {
				out = append(out, conflict(fmt.Sprintf("nodeSelector %s=%s", e.Key, have),
					field.NewPath("spec", "nodeSelector").Key(e.Key).String(), otherPool(cfg.Queues, e.Key, have), "node_selector"))
			}
			if !allTermsCarry(pod, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{e}}) {
				out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
					Message: fmt.Sprintf("is not pinned to %s: its required node affinity lacks %s", pl.desc, describeRequirement(e)),
					Fix:     fmt.Sprintf("create the pod through kpoguard's mutating webhook (queue expression %d)", i)})
			}
		}
		if f := pl.terms[0].MatchFields; len(f) > 0 && !allTermsCarry(pod, corev1.NodeSelectorTerm{MatchFields: f}) {
			out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("is not pinned to %s: its required node affinity lacks %s", pl.desc, describeTerms([]corev1.NodeSelectorTerm{{MatchFields: f}})),
				Fix:     "create the pod through kpoguard's mutating webhook"})
		}
	default:
		for _, k := range sortedKeys(pod.Spec.NodeSelector) {
			if have := pod.Spec.NodeSelector[k]; !fitsSomeTerm(pl.terms, k, have) {
				out = append(out, conflict(fmt.Sprintf("nodeSelector %s=%s", k, have),
					field.NewPath("spec", "nodeSelector").Key(k).String(), otherPool(cfg.Queues, k, have), "node_selector"))
			}
		}
		if !eachTermCarriesOne(pod, pl.terms) {
			out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("is not pinned to %s: a required node-affinity term carries none of %s", pl.desc, describeTerms(pl.terms)),
				Fix:     "create the pod through kpoguard's mutating webhook"})
		}
	}
	if na := pod.Spec.Affinity; na != nil && na.NodeAffinity != nil && na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		terms := na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) > 0 && !slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool { return termFits(t, pl) }) {
			v := Violation{Subject: "required node affinity", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("no term can match a node of %s", pl.desc),
				Fix:     "remove the node affinity from the task; the queue decides where it runs"}
			if parent {
				v.Message += ", where " + in.queue.decider() + " runs"
				v.Fix = "remove the node affinity from the task; a task runs where " + in.queue.decider() + " runs"
			}
			out = append(out, v)
		}
	}
	if parent {
		for i, t := range pod.Spec.Tolerations {
			if other := otherPoolToleration(in, t); other != "" {
				out = append(out, conflict(fmt.Sprintf("toleration %s", describeToleration(t)),
					field.NewPath("spec", "tolerations").Index(i).String(), other, "the toleration"))
			}
		}
	}
	return out
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

func describePool(queue string, q QueueSpec) string {
	return describeSelector(fmt.Sprintf("queue %q's node pool", queue), q.NodeSelector)
}

func describeSelector(what string, nodeSelector map[string]string) string {
	parts := make([]string, 0, len(nodeSelector))
	for _, k := range sortedKeys(nodeSelector) {
		parts = append(parts, k+"="+nodeSelector[k])
	}
	if len(parts) == 0 {
		return what
	}
	return fmt.Sprintf("%s (%s)", what, strings.Join(parts, ","))
}

// AddedTolerations refuses tolerations an update adds to a task pod. The
// API server lets any pod gain tolerations, and one could let a pending
// task onto another pool's tainted nodes; KPO adds none after creation.
func (rs *RuleSet) AddedTolerations(pod, old *corev1.Pod) []Violation {
	mode := rs.NodePool.Mode
	if mode == Off {
		return nil
	}
	var out []Violation
	for i, t := range pod.Spec.Tolerations {
		if hasToleration(old.Spec.Tolerations, t) {
			continue
		}
		out = append(out, Violation{Rule: NodePool, Mode: mode,
			Subject: "toleration " + describeToleration(t),
			Path:    field.NewPath("spec", "tolerations").Index(i).String(),
			Message: "was added to a running task pod, whose node pool was decided when it was created",
			Fix:     "create a new task pod instead"})
	}
	return out
}
