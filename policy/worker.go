package policy

import (
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// WorkerParent decides what a worker pod says about the tasks it
// launches, as nodePool.parent asks: the queue its label names (source
// label), or its own placement (source inherit) with the labels of its
// node that parent.nodeLabels copies. nodeLabels are those of the node it
// runs on, nil when unknown. A nil Parent comes with the reason the worker
// decides nothing, for the fallbacks to take over.
func WorkerParent(worker *corev1.Pod, nodeLabels map[string]string, np NodePoolConfig) (*Parent, string) {
	cfg := np.Parent
	p := &Parent{Via: ViaIdentity, Worker: worker.Name}
	if cfg.Source == ParentLabel {
		for _, key := range cfg.QueueLabels {
			value, ok := worker.Labels[key]
			if !ok {
				continue
			}
			q, known := np.Queues[value]
			if !known {
				return nil, fmt.Sprintf("worker %q's label %s=%q names no queue of the policy", worker.Name, key, value)
			}
			// Labels can be changed on a running pod, by the worker's
			// own service account too; its nodeSelector cannot. A worker
			// must run in the pool its label names.
			for k, v := range q.NodeSelector {
				if worker.Spec.NodeSelector[k] != v {
					return nil, fmt.Sprintf("worker %q is labelled for queue %q but does not run in its pool (nodeSelector %s=%s)", worker.Name, value, k, v)
				}
			}
			p.Queue = value
			return p, ""
		}
		return nil, fmt.Sprintf("worker %q has none of the queue labels %s", worker.Name, strings.Join(cfg.QueueLabels, ", "))
	}
	p.Placement = placementOf(worker)
	for _, key := range cfg.NodeLabels {
		if v, ok := nodeLabels[key]; ok {
			if p.Placement.NodeSelector == nil {
				p.Placement.NodeSelector = map[string]string{}
			}
			p.Placement.NodeSelector[key] = v
		}
	}
	// A worker placed nowhere in particular pins nothing: its tasks would
	// run anywhere they asked.
	if len(p.Placement.NodeSelector) == 0 && len(p.Placement.Tolerations) == 0 && len(p.Placement.Terms) == 0 {
		return nil, fmt.Sprintf("worker %q has no placement to inherit (no nodeSelector, tolerations or required node affinity)", worker.Name)
	}
	return p, ""
}

func placementOf(worker *corev1.Pod) *Placement {
	pl := &Placement{Tolerations: worker.Spec.Tolerations, NodeSelector: maps.Clone(worker.Spec.NodeSelector)}
	if a := worker.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		pl.Terms = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	}
	return pl
}
