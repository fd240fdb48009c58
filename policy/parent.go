package policy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ParentSpec says how a task pod's queue follows the Airflow worker that
// launched it, found from the identity of the request that creates the pod.
type ParentSpec struct {
	// Source is where the queue comes from: off (the worker is not
	// consulted), label (a label of the worker names the queue) or inherit
	// (the task gets the worker's own placement).
	Source ParentSource `json:"source,omitempty"`
	// QueueLabels are the worker's label keys that name its queue, tried
	// in order; with source label.
	QueueLabels []string `json:"queueLabels,omitempty"`
	// NodeLabels are labels of the worker's node copied into the task's
	// nodeSelector, such as node.kubernetes.io/instance-type; with source
	// inherit.
	NodeLabels []string `json:"nodeLabels,omitempty"`
	// Fallbacks are tried in order when the worker cannot be found.
	Fallbacks []Fallback `json:"fallbacks,omitempty"`
	// OutOfClusterFallbacks replace Fallbacks for pods that KPO created
	// from a kubeconfig (label airflow_kpo_in_cluster: "False").
	OutOfClusterFallbacks []Fallback `json:"outOfClusterFallbacks,omitempty"`
	// OnConflict says what happens to a pod that asks for another node
	// pool than its worker's: deny or override.
	OnConflict OnConflict `json:"onConflict,omitempty"`
}

// ParentSource is where a task pod's queue comes from when the policy
// follows the worker that launched it.
type ParentSource string

const (
	// ParentOff: the worker is not consulted; the queue label or the
	// default queue decides.
	ParentOff ParentSource = "off"
	// ParentLabel: one of the worker's labels names its queue.
	ParentLabel ParentSource = "label"
	// ParentInherit: the task gets the worker's own nodeSelector,
	// tolerations and required node affinity.
	ParentInherit ParentSource = "inherit"
)

var parentSources = []ParentSource{ParentOff, ParentLabel, ParentInherit}

// UnmarshalJSON reads YAML 1.1's bare `off` (decoded as false) as
// ParentOff, as for modes; any other non-string is kept as written, for
// validation to refuse with its field path.
func (s *ParentSource) UnmarshalJSON(b []byte) error {
	if string(b) == "false" {
		*s = ParentOff
		return nil
	}
	*s = ParentSource(jsonText(b))
	return nil
}

// Fallback is what decides the queue when the launching worker cannot be
// found from the request's identity.
type Fallback string

const (
	// FallbackKubernetesExecutor: the KubernetesExecutor pod running the
	// same task (labels kubernetes_executor=True, dag_id, task_id, run_id).
	FallbackKubernetesExecutor Fallback = "kubernetes-executor"
	// FallbackDefaultQueue: the namespace's defaultQueue.
	FallbackDefaultQueue Fallback = "default-queue"
	// FallbackDeny refuses the pod.
	FallbackDeny Fallback = "deny"
)

var fallbacks = []Fallback{FallbackKubernetesExecutor, FallbackDefaultQueue, FallbackDeny}

// OnConflict is what happens to a pod whose own placement asks for another
// node pool than its worker's.
type OnConflict string

const (
	ConflictDeny     OnConflict = "deny"
	ConflictOverride OnConflict = "override"
)

// InClusterLabel is the label KPO sets to "False" when it created the pod
// from a kubeconfig rather than the worker's own service account.
const InClusterLabel = "airflow_kpo_in_cluster"

// ParentVia says how a pod's parent was decided.
type ParentVia string

const (
	// ViaIdentity: the worker pod the request's pod-bound token names.
	ViaIdentity ParentVia = "identity"
	// ViaKubernetesExecutor: the KubernetesExecutor pod of the same task.
	ViaKubernetesExecutor ParentVia = "kubernetes-executor"
	// ViaDefaultQueue: no worker; the namespace's default queue.
	ViaDefaultQueue ParentVia = "default-queue"
	// ViaUnknown: nothing decided it; the pod is refused.
	ViaUnknown ParentVia = "unknown"
)

// Parent is what the caller found out about the worker that launched a
// pod, when the policy follows workers (nodePool.parent.source).
type Parent struct {
	Via ParentVia
	// Worker names the pod the queue came from, for messages.
	Worker string
	// Queue is the worker's queue (source label, and the default queue).
	Queue string
	// Placement is the worker's own placement (source inherit).
	Placement *Placement
	// Reason says, with ViaUnknown, why no worker was found.
	Reason string
}

// Placement is where a worker runs: the part of its spec a task inherits.
type Placement struct {
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// Terms are the worker's required node-affinity terms (ORed).
	Terms []corev1.NodeSelectorTerm
}

// ParentConfig is the compiled nodePool.parent section: the ParentSpec,
// once validated, converted (so the two keep the same fields).
type ParentConfig struct {
	Source                ParentSource
	QueueLabels           []string
	NodeLabels            []string
	Fallbacks             []Fallback
	OutOfClusterFallbacks []Fallback
	OnConflict            OnConflict
}

// FallbacksFor returns the fallbacks that apply to a pod: those for pods
// KPO created from a kubeconfig when its labels say so and the request
// carried no pod-bound token. The label is the DAG's to set, so it only
// chooses between the policy's lists, and never for a request whose token
// names a pod (a worker whose lookup failed is not "out of cluster").
//
// A request whose token is bound to a pod takes only the fallbacks that
// labels cannot steer: default-queue and deny. Its worker could have shed
// what identifies it (the worker selector's label, its queue label: its
// service account may patch pods), and the kubernetes-executor fallback
// goes by labels the DAG writes on the task and on a look-alike pod.
func (c ParentConfig) FallbacksFor(podLabels map[string]string, podBoundToken bool) []Fallback {
	if podBoundToken {
		return slices.DeleteFunc(slices.Clone(c.Fallbacks), func(f Fallback) bool { return !podBoundFallback(f) })
	}
	if podLabels[InClusterLabel] == "False" && c.OutOfClusterFallbacks != nil {
		return c.OutOfClusterFallbacks
	}
	return c.Fallbacks
}

// podBoundFallback reports whether a request with a pod-bound token may
// take a fallback: only those that labels cannot steer.
func podBoundFallback(f Fallback) bool { return f == FallbackDefaultQueue || f == FallbackDeny }

func (c *compiler) parent(np NodePoolSpec, npPath *field.Path) ParentConfig {
	ps, p := np.Parent, npPath.Child("parent")
	if !slices.Contains(parentSources, ps.Source) {
		c.add(field.NotSupported(p.Child("source"), ps.Source, parentSources))
	}
	if ps.OnConflict != ConflictDeny && ps.OnConflict != ConflictOverride {
		c.add(field.NotSupported(p.Child("onConflict"), ps.OnConflict, []OnConflict{ConflictDeny, ConflictOverride}))
	}
	if ps.Source == ParentLabel && len(ps.QueueLabels) == 0 {
		c.add(field.Required(p.Child("queueLabels"), "source label needs the worker label that names its queue"))
	}
	if ps.Source != ParentLabel && len(ps.QueueLabels) > 0 {
		c.add(field.Invalid(p.Child("queueLabels"), ps.QueueLabels, "only used with source label"))
	}
	if ps.Source != ParentInherit && len(ps.NodeLabels) > 0 {
		c.add(field.Invalid(p.Child("nodeLabels"), ps.NodeLabels, "only used with source inherit"))
	}
	for i, k := range ps.QueueLabels {
		c.labelKey(k, p.Child("queueLabels").Index(i))
	}
	for i, k := range ps.NodeLabels {
		c.labelKey(k, p.Child("nodeLabels").Index(i))
	}
	noDefault := np.DefaultQueue == ""
	c.fallbacks(ps.Fallbacks, noDefault, p.Child("fallbacks"))
	c.fallbacks(ps.OutOfClusterFallbacks, noDefault, p.Child("outOfClusterFallbacks"))
	return ParentConfig(ps)
}

func (c *compiler) labelKey(k string, p *field.Path) {
	for _, msg := range validation.IsQualifiedName(k) {
		c.add(field.Invalid(p, k, msg))
	}
}

// fallbacks checks one fallback order: known names, each once, nothing
// after one that always decides, and a default queue to fall back to.
func (c *compiler) fallbacks(list []Fallback, noDefaultQueue bool, p *field.Path) {
	for i, f := range list {
		fp := p.Index(i)
		decided := slices.IndexFunc(list[:i], func(f Fallback) bool { return f == FallbackDeny || f == FallbackDefaultQueue })
		switch {
		case !slices.Contains(fallbacks, f):
			c.add(field.NotSupported(fp, f, fallbacks))
		case slices.Contains(list[:i], f):
			c.add(field.Duplicate(fp, f))
		case decided >= 0:
			c.add(field.Invalid(fp, f, fmt.Sprintf("never tried: %s before it always decides", list[decided])))
		case f == FallbackDefaultQueue && noDefaultQueue:
			c.add(field.Invalid(fp, f, "needs nodePool.defaultQueue"))
		}
	}
}

// ParentConflict reports whether a pod asks for another node pool than
// the one its launching worker decided: a queue label, nodeSelector,
// required node affinity or toleration of another pool. It is what
// kpoguard counts; nodePool denies or overrides it as the policy says.
func (rs *RuleSet) ParentConflict(pod *corev1.Pod, facts Facts) bool {
	if facts.Parent == nil {
		return false
	}
	in := rs.input(pod, facts)
	if in.queue.parent == nil || in.queue.pool == nil || pod.Spec.NodeName != "" {
		return false
	}
	return in.queue.claimed != "" || len(overrideConflicts(pod.DeepCopy(), in)) > 0
}

// warnings says which queues a worker's queue label cannot be verified
// for (source label): a queue with neither nodeSelector nor
// matchExpressions, and queues that differ only by tolerations. Tasks of a
// worker labelled for them are refused.
func (rs *RuleSet) warnings(rules *field.Path) []string {
	np := rs.NodePool
	if np.Mode == Off || np.Parent.Source != ParentLabel {
		return nil
	}
	p := rules.Child("nodePool", "queues")
	names := sortedKeys(np.Queues)
	var out []string
	for i, a := range names {
		qa := np.Queues[a]
		if len(qa.NodeSelector) == 0 && len(qa.MatchExpressions) == 0 {
			out = append(out, fmt.Sprintf("%s: has no nodeSelector or matchExpressions, so a worker labelled for it cannot be verified to run in its pool: its tasks are refused", p.Key(a)))
			continue
		}
		for _, b := range names[i+1:] {
			qb := np.Queues[b]
			if equality.Semantic.DeepEqual(qa.NodeSelector, qb.NodeSelector) && equality.Semantic.DeepEqual(qa.MatchExpressions, qb.MatchExpressions) {
				out = append(out, fmt.Sprintf("%s and %s: differ only by tolerations, so a worker's label cannot be verified between them", p.Key(a), p.Key(b)))
			}
		}
	}
	return out
}
