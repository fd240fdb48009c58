// Package audit reviews running task pods against the policy in force,
// through the one admission pipeline (review.Review), and publishes what
// it finds: metrics and PolicyReports (the background audit of
// `kpoguard serve`), or a table (`kpoguard audit`).
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// Result is what a finding says of a running pod; the text is the metric
// label, as in kpoguard_rule_results_total.
type Result string

const (
	// Changed: a mutating rule would change the pod if it were created
	// now (in enforce mode it would be applied).
	Changed Result = "changed"
	// Violated: a validating rule finds the pod against the policy.
	Violated Result = "violated"
)

// Finding is one rule's finding on one pod.
type Finding struct {
	Rule   policy.RuleID `json:"rule"`
	Mode   policy.Mode   `json:"mode"`
	Result Result        `json:"result"`
	// Path is the field of the pod the finding is about.
	Path string `json:"path"`
	// Message is what a DAG author reads: never a value of the pod's env.
	Message string `json:"message"`
}

// Task is the Airflow identity KPO writes in a task pod's labels.
type Task struct {
	DagID     string `json:"dagId,omitempty"`
	TaskID    string `json:"taskId,omitempty"`
	RunID     string `json:"runId,omitempty"`
	TryNumber string `json:"tryNumber,omitempty"`
	MapIndex  string `json:"mapIndex,omitempty"`
}

// PodFindings are the findings on one running task pod.
type PodFindings struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	Task      Task      `json:"task"`
	Findings  []Finding `json:"findings"`
	// ParentUnknown: the rules follow the launching worker
	// (nodePool.parent), which a running pod's review cannot know, so
	// node-pool's findings are left out rather than guessed.
	ParentUnknown bool `json:"parentUnknown,omitempty"`
}

// Denied says whether the validating webhook would refuse the pod if it
// were created now: an enforce-mode violation.
func (p PodFindings) Denied() bool {
	return slices.ContainsFunc(p.Findings, func(f Finding) bool { return f.Result == Violated && f.Mode == policy.Enforce })
}

// Review reviews a running pod as a CREATE of its current spec, with both
// stages, as `kpoguard check` does: mutate, then validate the mutated pod.
// A pod admitted under today's policy carries its mutations already, so
// it has no findings. reviewed is false for a pod out of the policy's
// scope (not a task pod, or in an exempt namespace). Exempt users cannot
// apply: a running pod does not say who created it.
func Review(ctx context.Context, p *policy.Policy, running *corev1.Pod, r review.Resolvers) (out PodFindings, reviewed bool, err error) {
	pod := asCreated(running)
	raw, err := json.Marshal(pod)
	if err != nil {
		return PodFindings{}, false, err
	}
	parents := &unknownParents{}
	r.Parents = parents
	res := review.Review(ctx, p, review.Request{
		Operation: review.Create,
		Namespace: pod.Namespace,
		Pod:       pod,
		Raw:       raw,
	}, review.Full, r)
	switch res.Decision {
	case review.Error:
		return PodFindings{}, false, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, res.Err)
	case review.Skipped:
		return PodFindings{}, false, nil
	}
	out = PodFindings{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, Task: taskOf(pod), ParentUnknown: parents.asked}
	out.Findings = findings(res.Changes, res.Violations, parents.asked)
	return out, true, nil
}

// findings turns a review's changes and violations into findings, leaving
// out node-pool's when the launching worker decides the pool.
func findings(changes []policy.Change, violations []policy.Violation, parentUnknown bool) []Finding {
	var out []Finding
	for _, c := range changes {
		if parentUnknown && c.Rule == policy.NodePool {
			continue
		}
		// A change's value is what kpoguard would set (a default, a
		// secret's name), never one read from the pod.
		out = append(out, Finding{Rule: c.Rule, Mode: c.Mode, Result: Changed, Path: c.Path, Message: "would set " + c.Path + "=" + c.Value})
	}
	for _, v := range violations {
		if parentUnknown && v.Rule == policy.NodePool {
			continue
		}
		out = append(out, Finding{Rule: v.Rule, Mode: v.Mode, Result: Violated, Path: v.Path, Message: v.Subject + ": " + v.Message + "; " + v.Fix})
	}
	return out
}

// unknownParents answers for a running pod's launching worker: it cannot
// be found (the request's pod-bound token that named it is long gone), so
// the review is told nothing and node-pool's findings are dropped. That
// the review asked says the rules follow the worker.
type unknownParents struct{ asked bool }

func (u *unknownParents) Parent(context.Context, *review.Request, policy.NodePoolConfig) *policy.Parent {
	u.asked = true
	return nil
}

// asCreated is a running pod as its creator wrote it, as far as the pod
// tells: without the node the scheduler bound it to, which node-pool would
// otherwise read as a pod naming its own node. (A pod that named its node
// at create was refused then, if node-pool was in enforce mode; the audit
// cannot tell the two apart.) The cached pod is left as it is.
func asCreated(running *corev1.Pod) *corev1.Pod {
	pod := *running
	pod.Spec.NodeName = ""
	return &pod
}

// taskOf reads the task's identity from KPO's labels.
func taskOf(pod *corev1.Pod) Task {
	l := pod.Labels
	return Task{DagID: l["dag_id"], TaskID: l["task_id"], RunID: l["run_id"], TryNumber: l["try_number"], MapIndex: l["map_index"]}
}

// Running says whether a pod is still to finish: the audit reviews pods
// that run or wait to, not those done.
func Running(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}
