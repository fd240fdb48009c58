package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// WorkerNode is what the caller could learn of the node a worker runs on.
type WorkerNode struct {
	// Name is "" for a worker on no node yet.
	Name string
	// Labels are the node's labels; nil when they could not be read.
	Labels map[string]string
	// Err says why they could not be read.
	Err string
}

// NeedsWorkerNode reports whether deciding from a worker reads its node:
// to verify a queue label (source label), or to copy node labels (source
// inherit with nodeLabels).
func (np NodePoolConfig) NeedsWorkerNode() bool {
	return np.Parent.Source == ParentLabel || len(np.Parent.NodeLabels) > 0
}

// WorkerParent decides what a worker pod says about the tasks it
// launches, as nodePool.parent asks: the queue its label names (source
// label), or its own placement (source inherit) with the labels of its
// node that parent.nodeLabels copies.
//
// Only what pins the worker to nodes counts as evidence of its pool: its
// nodeSelector and required node affinity, which cannot change on a
// running pod, and its node's labels. Labels and tolerations can be
// changed on a running pod by the worker's own service account, and the
// API server gives every pod tolerations, so neither is evidence.
//
// It returns a nil Parent, with the reason, when the worker decides
// nothing and the fallbacks take over, and a Parent with Via ViaUnknown
// when the task must be refused: a claim that cannot be verified, or a
// node that must be read and cannot be.
func WorkerParent(worker *corev1.Pod, node WorkerNode, np NodePoolConfig) (*Parent, string) {
	if np.Parent.Source == ParentLabel {
		return labelledParent(worker, node, np)
	}
	return inheritedParent(worker, node, np)
}

func labelledParent(worker *corev1.Pod, node WorkerNode, np NodePoolConfig) (*Parent, string) {
	for _, key := range np.Parent.QueueLabels {
		value, ok := worker.Labels[key]
		if !ok {
			continue
		}
		q, known := np.Queues[value]
		if !known {
			return nil, fmt.Sprintf("worker %q's label %s=%q names no queue of the policy", worker.Name, key, value)
		}
		if why := verifyQueue(worker, node, value, q); why != "" {
			return &Parent{Via: ViaUnknown, Worker: worker.Name, Reason: why}, why
		}
		return &Parent{Via: ViaIdentity, Worker: worker.Name, Queue: value}, ""
	}
	return nil, fmt.Sprintf("worker %q has none of the queue labels %s", worker.Name, strings.Join(np.Parent.QueueLabels, ", "))
}

// verifyQueue says why a worker labelled for queue q is not believed to
// run in its pool, or "" when it is: its node's labels hold the queue's
// nodeSelector and matchExpressions, or, when the node cannot be read, its
// own immutable nodeSelector and required node affinity hold them.
func verifyQueue(worker *corev1.Pod, node WorkerNode, name string, q QueueSpec) string {
	claim := fmt.Sprintf("worker %q is labelled for queue %q", worker.Name, name)
	if len(q.NodeSelector) == 0 && len(q.MatchExpressions) == 0 {
		return claim + ", whose pool is told apart only by tolerations: where the worker runs cannot confirm it"
	}
	if node.Labels != nil {
		for _, k := range slices.Sorted(maps.Keys(q.NodeSelector)) {
			if v, ok := node.Labels[k]; !ok || v != q.NodeSelector[k] {
				return fmt.Sprintf("%s but runs on node %q, which lacks %s=%s", claim, node.Name, k, q.NodeSelector[k])
			}
		}
		for _, e := range q.MatchExpressions {
			if !requirementMatches(e, node.Labels) {
				return fmt.Sprintf("%s but runs on node %q, which does not match %s", claim, node.Name, describeRequirement(e))
			}
		}
		return ""
	}
	unread := "it runs on no node yet"
	if node.Name != "" {
		unread = fmt.Sprintf("node %q cannot be read: %s", node.Name, node.Err)
	}
	for _, k := range slices.Sorted(maps.Keys(q.NodeSelector)) {
		if worker.Spec.NodeSelector[k] != q.NodeSelector[k] {
			return fmt.Sprintf("%s but is not pinned to its pool (nodeSelector %s=%s), and %s", claim, k, q.NodeSelector[k], unread)
		}
	}
	for _, e := range q.MatchExpressions {
		if !allTermsCarry(worker, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{e}}) {
			return fmt.Sprintf("%s but is not pinned to its pool (required node affinity %s), and %s", claim, describeRequirement(e), unread)
		}
	}
	return ""
}

// requirementMatches reports whether a node with these labels satisfies e.
func requirementMatches(e corev1.NodeSelectorRequirement, labels map[string]string) bool {
	v, ok := labels[e.Key]
	switch e.Operator {
	case corev1.NodeSelectorOpDoesNotExist:
		return !ok
	case corev1.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(e.Values, v)
	}
	return ok && requirementFits(e, v)
}

func inheritedParent(worker *corev1.Pod, node WorkerNode, np NodePoolConfig) (*Parent, string) {
	pl := &Placement{NodeSelector: maps.Clone(worker.Spec.NodeSelector)}
	if a := worker.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		pl.Terms = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	}
	if len(np.Parent.NodeLabels) > 0 && node.Name != "" {
		if node.Labels == nil {
			why := fmt.Sprintf("the labels of node %q, where worker %q runs, could not be read: %s", node.Name, worker.Name, node.Err)
			return &Parent{Via: ViaUnknown, Worker: worker.Name, Reason: why}, why
		}
		for _, key := range np.Parent.NodeLabels {
			if v, ok := node.Labels[key]; ok {
				if pl.NodeSelector == nil {
					pl.NodeSelector = map[string]string{}
				}
				pl.NodeSelector[key] = v
			}
		}
	}
	if len(pl.NodeSelector) == 0 && len(pl.Terms) == 0 {
		return nil, fmt.Sprintf("worker %q is pinned to no node pool (no nodeSelector, required node affinity or node labels to inherit)", worker.Name)
	}
	// A pinned worker's tolerations let its tasks onto its pool's tainted
	// nodes; they cannot take them out of the pool the pins decide.
	pl.Tolerations = worker.Spec.Tolerations
	return &Parent{Via: ViaIdentity, Worker: worker.Name, Placement: pl}, ""
}
