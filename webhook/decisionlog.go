package webhook

import (
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// DecisionLogLevel says which pod admission decisions get a log line.
type DecisionLogLevel string

const (
	// DecisionLogAll adds allowed and skipped pods, sampled.
	DecisionLogAll DecisionLogLevel = "all"
	// DecisionLogChanges: pods changed, refused or warned, or with an
	// audit finding, and errors. The default: what an operator asks
	// about ("why was my task changed or refused?").
	DecisionLogChanges DecisionLogLevel = "changes"
	// DecisionLogDenials: refused pods and errors only.
	DecisionLogDenials DecisionLogLevel = "denials"
	DecisionLogOff     DecisionLogLevel = "off"
)

// ParseDecisionLogLevel checks a --decision-log value.
func ParseDecisionLogLevel(s string) (DecisionLogLevel, error) {
	switch l := DecisionLogLevel(s); l {
	case DecisionLogAll, DecisionLogChanges, DecisionLogDenials, DecisionLogOff:
		return l, nil
	}
	return "", fmt.Errorf("%q is not one of all, changes, denials, off", s)
}

// DecisionLog is the configuration of the decision log. A nil one logs at
// DecisionLogChanges.
type DecisionLog struct {
	Level DecisionLogLevel
	// Sample logs 1 in Sample of the allowed and skipped decisions at
	// DecisionLogAll; at most a few a second then, however busy the
	// cluster. Changes, warnings and refusals are never sampled out.
	Sample int

	routine atomic.Uint64
}

// airflowLabels are the labels KPO writes with a task's identity: enough
// to find a DAG run's decisions. They are identifiers Airflow chose, not
// data the DAG handles.
var airflowLabels = []string{"dag_id", "task_id", "run_id", "try_number", "map_index"}

// maxLoggedFindings bounds a line: a pod with hundreds of containers
// must not make a log line of megabytes.
const maxLoggedFindings = 20

// loggedFinding is one rule's change or violation in a decision line.
// It carries no value from the pod: a change's value is what kpoguard
// set (a default, a secret's name), and a violation's message names
// fields, not their contents.
type loggedFinding struct {
	Rule string `json:"rule"`
	Mode string `json:"mode"`
	Path string `json:"path"`
	What string `json:"what"`
}

// wants says whether a decision gets a line; for routine ones it also
// counts them for sampling.
func (l *DecisionLog) wants(decision review.Decision, findings int) bool {
	level, sample := DecisionLogChanges, 1
	if l != nil {
		level, sample = l.Level, l.Sample
	}
	notable := findings > 0 || (decision != review.Allowed && decision != review.Skipped)
	switch level {
	case DecisionLogOff:
		return false
	case DecisionLogDenials:
		return decision == review.Denied || decision == review.Error
	case DecisionLogChanges:
		return notable
	}
	if notable || sample <= 1 {
		return true
	}
	return (l.routine.Add(1)-1)%uint64(sample) == 0
}

// logDecision writes the decision log's line for one pod webhook's
// answer. pod is the pod as sent (nil when it could not be decoded).
// Only names, identifiers, rule findings and timing are written: never
// the pod's env, its Secrets or their values.
func (d *Deps) logDecision(hook string, req admission.Request, pod *corev1.Pod, res review.Result, hash string, took time.Duration) {
	decision := res.Decision
	if !d.Decisions.wants(decision, len(res.Changes)+len(res.Violations)) {
		return
	}
	kv := []any{
		"webhook", hook,
		"decision", string(decision),
		"uid", string(req.UID),
		"namespace", req.Namespace,
		"operation", string(req.Operation),
	}
	if req.SubResource != "" {
		kv = append(kv, "subResource", req.SubResource)
	}
	if pod != nil {
		kv = append(kv, "pod", review.PodName(pod))
		for _, k := range airflowLabels {
			if v, ok := pod.Labels[k]; ok {
				kv = append(kv, k, v)
			}
		}
	}
	var findings []loggedFinding
	for _, c := range res.Changes {
		findings = append(findings, changeFinding(c))
	}
	for _, v := range res.Violations {
		findings = append(findings, loggedFinding{Rule: string(v.Rule), Mode: string(v.Mode), Path: v.Path, What: v.Message})
	}
	if len(findings) > maxLoggedFindings {
		kv = append(kv, "findingsOmitted", len(findings)-maxLoggedFindings)
		findings = findings[:maxLoggedFindings]
	}
	if len(findings) > 0 {
		kv = append(kv, "findings", findings)
	}
	if res.Reason != "" && (decision == review.Skipped || decision == review.Allowed) {
		kv = append(kv, "reason", res.Reason)
	}
	if res.Err != nil {
		kv = append(kv, "error", res.Err.Error())
	}
	if hash != "" {
		kv = append(kv, "policyHash", hash)
	}
	kv = append(kv, "durationSeconds", took.Seconds())
	d.Log.Info("admission decision", kv...)
}

// changeFinding says what a mutating rule did, or in warn and audit mode
// would have done.
func changeFinding(c policy.Change) loggedFinding {
	what := "set " + c.Path + "=" + c.Value
	if c.Mode != policy.Enforce {
		what = "would " + what
	}
	return loggedFinding{Rule: string(c.Rule), Mode: string(c.Mode), Path: c.Path, What: what}
}
