package policy

import (
	corev1 "k8s.io/api/core/v1"
)

type queueChoice struct {
	name string
	// requested is a queue label value that names no queue.
	requested string
}

// queueOf picks the pod's queue: a trusted fact first, then the queue label
// when the policy lets pods choose, then the namespace's default queue.
func (rs *RuleSet) queueOf(pod *corev1.Pod, facts Facts) queueChoice {
	np := rs.NodePool
	if facts.Queue != "" {
		return queueChoice{name: facts.Queue}
	}
	if np.QueueLabel != "" {
		if want, ok := pod.Labels[np.QueueLabel]; ok {
			if _, known := np.Queues[want]; known {
				return queueChoice{name: want}
			}
			return queueChoice{name: np.DefaultQueue, requested: want}
		}
	}
	return queueChoice{name: np.DefaultQueue}
}
