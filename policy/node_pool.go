package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NodePool is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const NodePool RuleID = "node-pool"

// NodePoolSpec configures the node-pool rule.
type NodePoolSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// DefaultQueue is the queue of a pod whose queue no other source gives.
	DefaultQueue string `json:"defaultQueue,omitempty"`
	// QueueLabel, when set, lets a pod choose one of Queues with this label.
	QueueLabel string `json:"queueLabel,omitempty"`
	// AllowNodeName admits pods that name their node and so skip the pool.
	AllowNodeName *bool                `json:"allowNodeName,omitempty"`
	Queues        map[string]QueueSpec `json:"queues,omitempty"`
	// Parent takes the queue from the worker that launched the pod.
	Parent ParentSpec `json:"parent,omitempty"`
}

// QueueSpec is where a queue's pods run.
type QueueSpec struct {
	NodeSelector     map[string]string                `json:"nodeSelector,omitempty"`
	Tolerations      []corev1.Toleration              `json:"tolerations,omitempty"`
	MatchExpressions []corev1.NodeSelectorRequirement `json:"matchExpressions,omitempty"`
}

// NodePoolConfig is the compiled, typed nodePool section.
type NodePoolConfig struct {
	Mode          Mode
	DefaultQueue  string
	QueueLabel    string
	AllowNodeName bool
	Queues        map[string]QueueSpec
	Parent        ParentConfig
}

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
	out := queueChoiceViolations(in)
	// Following the worker, no task may name its node: that would skip
	// the worker's pool whatever allowNodeName says.
	if pod.Spec.NodeName != "" && (!in.rules.NodePool.AllowNodeName || in.queue.parent != nil) {
		out = append(out, Violation{
			Subject: fmt.Sprintf("node %q", pod.Spec.NodeName),
			Path:    field.NewPath("spec", "nodeName").String(),
			Message: "naming a node bypasses the scheduler and the queue's node pool",
			Fix:     "remove spec.nodeName and let the queue choose the node",
		})
	}
	if in.queue.pool == nil || pod.Spec.NodeName != "" {
		return out
	}
	c := poolCheck{pod: pod, in: in, pl: in.queue.pool, parent: in.queue.parent != nil}
	out = append(out, c.nodeSelector()...)
	out = append(out, c.poolTerms()...)
	out = append(out, c.requiredAffinity()...)
	return append(out, c.tolerations()...)
}

// queueChoiceViolations refuses how the queue was chosen: a worker that
// could not be determined, a queue label naming no queue, or one that
// claims another queue than the worker's.
func queueChoiceViolations(in *input) []Violation {
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
	labelPath := field.NewPath("metadata", "labels").Key(cfg.QueueLabel).String()
	if in.queue.requested != "" {
		out = append(out, Violation{
			Subject: fmt.Sprintf("label %s=%q", cfg.QueueLabel, in.queue.requested),
			Path:    labelPath,
			Message: "names no queue of this deployment",
			Fix:     fmt.Sprintf("use one of: %s", strings.Join(sortedKeys(cfg.Queues), ", ")),
		})
	}
	if c := in.queue.claimed; c != "" && cfg.Parent.OnConflict == ConflictDeny {
		out = append(out, Violation{
			Subject: fmt.Sprintf("label %s=%q", cfg.QueueLabel, c),
			Path:    labelPath,
			Message: fmt.Sprintf("asks for %s, but %s runs in %s", describePool(c, cfg.Queues[c]), in.queue.decider(), in.queue.pool.desc),
			Fix:     "remove the queue label; a task does not choose its queue",
		})
	}
	return out
}

// poolCheck checks a pod's placement against the node pool it must run
// in; parent says the launching worker decided that pool.
type poolCheck struct {
	pod    *corev1.Pod
	in     *input
	pl     *pool
	parent bool
}

// conflict is a violation for something in the pod that asks for another
// pool: asks names that pool, what the thing to remove.
func (c poolCheck) conflict(subject, path, asks, what string) Violation {
	if c.parent {
		return Violation{Subject: subject, Path: path,
			Message: fmt.Sprintf("asks for %s, but %s runs in %s", asks, c.in.queue.decider(), c.pl.desc),
			Fix:     fmt.Sprintf("remove %s from the task; a task runs where %s runs", what, c.in.queue.decider())}
	}
	return Violation{Subject: subject, Path: path,
		Message: fmt.Sprintf("asks for another node pool than %s", c.pl.desc),
		Fix:     fmt.Sprintf("remove %s from the task; the queue decides where it runs", what)}
}

// nodeSelectorConflict is a conflict for the pod's nodeSelector entry k.
func (c poolCheck) nodeSelectorConflict(k string) Violation {
	have := c.pod.Spec.NodeSelector[k]
	return c.conflict(fmt.Sprintf("nodeSelector %s=%s", k, have), field.NewPath("spec", "nodeSelector").Key(k).String(),
		otherPool(c.in.rules.NodePool.Queues, k, have), "node_selector")
}

// nodeSelector: every entry of the pool's nodeSelector is set, to the
// pool's value.
func (c poolCheck) nodeSelector() []Violation {
	var out []Violation
	for _, k := range sortedKeys(c.pl.nodeSelector) {
		switch have, set := c.pod.Spec.NodeSelector[k]; {
		case !set:
			out = append(out, Violation{Subject: "pod", Path: field.NewPath("spec", "nodeSelector").Key(k).String(),
				Message: fmt.Sprintf("is not pinned to %s", c.pl.desc),
				Fix:     "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"})
		case have != c.pl.nodeSelector[k]:
			out = append(out, c.nodeSelectorConflict(k))
		}
	}
	return out
}

// poolTerms: the pod's nodeSelector can satisfy the pool's required
// terms, and every required term of the pod carries one of them.
func (c poolCheck) poolTerms() []Violation {
	var out []Violation
	pl := c.pl
	switch len(pl.terms) {
	case 0:
	case 1:
		for i, e := range pl.terms[0].MatchExpressions {
			if have, set := c.pod.Spec.NodeSelector[e.Key]; set && !requirementFits(e, have) {
				out = append(out, c.nodeSelectorConflict(e.Key))
			}
			if !allTermsCarry(c.pod, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{e}}) {
				out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
					Message: fmt.Sprintf("is not pinned to %s: its required node affinity lacks %s", pl.desc, describeRequirement(e)),
					Fix:     fmt.Sprintf("create the pod through kpoguard's mutating webhook (queue expression %d)", i)})
			}
		}
		if f := pl.terms[0].MatchFields; len(f) > 0 && !allTermsCarry(c.pod, corev1.NodeSelectorTerm{MatchFields: f}) {
			out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("is not pinned to %s: its required node affinity lacks %s", pl.desc, describeTerms([]corev1.NodeSelectorTerm{{MatchFields: f}})),
				Fix:     "create the pod through kpoguard's mutating webhook"})
		}
	default:
		for _, k := range sortedKeys(c.pod.Spec.NodeSelector) {
			if !fitsSomeTerm(pl.terms, k, c.pod.Spec.NodeSelector[k]) {
				out = append(out, c.nodeSelectorConflict(k))
			}
		}
		if !eachTermCarriesOne(c.pod, pl.terms) {
			out = append(out, Violation{Subject: "pod", Path: requiredTermsPath.String(),
				Message: fmt.Sprintf("is not pinned to %s: a required node-affinity term carries none of %s", pl.desc, describeTerms(pl.terms)),
				Fix:     "create the pod through kpoguard's mutating webhook"})
		}
	}
	return out
}

// requiredAffinity: some required node-affinity term of the pod can match
// a node of the pool.
func (c poolCheck) requiredAffinity() []Violation {
	terms := requiredTerms(c.pod)
	if len(terms) == 0 || slices.ContainsFunc(terms, func(t corev1.NodeSelectorTerm) bool { return termFits(t, c.pl) }) {
		return nil
	}
	v := Violation{Subject: "required node affinity", Path: requiredTermsPath.String(),
		Message: fmt.Sprintf("no term can match a node of %s", c.pl.desc),
		Fix:     "remove the node affinity from the task; the queue decides where it runs"}
	if c.parent {
		v.Message += ", where " + c.in.queue.decider() + " runs"
		v.Fix = "remove the node affinity from the task; a task runs where " + c.in.queue.decider() + " runs"
	}
	return []Violation{v}
}

// tolerations: following the worker, no toleration lets the pod onto
// another queue's pool.
func (c poolCheck) tolerations() []Violation {
	if !c.parent {
		return nil
	}
	var out []Violation
	for i, t := range c.pod.Spec.Tolerations {
		if other := otherPoolToleration(c.in, t); other != "" {
			out = append(out, c.conflict(fmt.Sprintf("toleration %s", describeToleration(t)),
				field.NewPath("spec", "tolerations").Index(i).String(), other, "the toleration"))
		}
	}
	return out
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
