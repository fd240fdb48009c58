package policy

import (
	corev1 "k8s.io/api/core/v1"
)

type queueChoice struct {
	// name is the policy queue the pod is in; empty for an inherited
	// placement or no queue.
	name string
	// requested is a queue label value that names no queue.
	requested string
	// pool is where the pod must run; nil leaves it unpinned.
	pool *pool
	// parent is set when the launching worker decided: conflicting
	// placement is then handled as nodePool.parent.onConflict says.
	parent *Parent
	// claimed is a queue label naming another queue than the parent's.
	claimed string
	// unknown says why no parent decided, when the pod must be refused.
	unknown string
}

// queueOf picks the pod's queue: the launching worker when the caller
// looked it up, else the queue label when the policy lets pods choose,
// else the namespace's default queue. A label never overrides the worker.
func (rs *RuleSet) queueOf(pod *corev1.Pod, facts Facts) queueChoice {
	np := rs.NodePool
	if p := facts.Parent; p != nil {
		c := queueChoice{parent: p}
		switch {
		case p.Via == ViaUnknown:
			c.unknown = p.Reason
			return c
		case p.Placement != nil:
			c.pool = inheritedPool(p.Worker, p.Placement)
		default:
			c.name = p.Queue
			c.pool = rs.queuePool(p.Queue)
		}
		// An inherited pool has no queue name to compare a label with;
		// the placement it pins is checked instead.
		if want, ok := pod.Labels[np.QueueLabel]; np.QueueLabel != "" && ok && want != c.name && p.Placement == nil {
			if _, known := np.Queues[want]; known {
				c.claimed = want
			}
		}
		return c
	}
	c := queueChoice{name: np.DefaultQueue}
	if np.QueueLabel != "" {
		if want, ok := pod.Labels[np.QueueLabel]; ok {
			if _, known := np.Queues[want]; known {
				c.name = want
			} else {
				c.requested = want
			}
		}
	}
	c.pool = rs.queuePool(c.name)
	return c
}

// decider names, for messages, what decided a parent-derived pool.
func (c queueChoice) decider() string {
	if c.parent.Via == ViaDefaultQueue {
		// No worker was found; the policy's fallback chose.
		return "the namespace's default queue"
	}
	return "the worker that launched it"
}
