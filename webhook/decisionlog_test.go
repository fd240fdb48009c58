package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// decisionLines runs requests through a webhook with the decision log at
// a level, logging as serve does (slog's JSON), and returns the decision
// lines and everything logged.
func decisionLines(t *testing.T, d *Deps, h func() admission.Handler, reqs ...admission.Request) ([]map[string]any, string) {
	t.Helper()
	var buf bytes.Buffer
	d.Log = logr.FromSlogHandler(slog.NewJSONHandler(&buf, nil))
	handler := h()
	for _, r := range reqs {
		handler.Handle(t.Context(), r)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == "admission decision" {
			lines = append(lines, m)
		}
	}
	return lines, buf.String()
}

func TestDecisionLog(t *testing.T) {
	kpo := newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml"))
	pvc := newPodRequest(admissionv1.Create, fixture(t, "../testdata/pods/10-pvc-task.yaml"))
	notTask := newPodRequest(admissionv1.Create, fixture(t, "../testdata/pods/14-not-a-task-pod.yaml"))
	const warnPVC = "    noPersistentVolumes: {mode: warn}\n"
	tests := []struct {
		name     string
		policy   string
		level    DecisionLogLevel
		sample   int
		validate bool // the validating webhook, else the mutating one
		reqs     []admission.Request
		// want are the decisions logged, in order.
		want []string
	}{
		{name: "mutated at the default level", reqs: []admission.Request{kpo}, want: []string{"mutated"}},
		{name: "denied", validate: true, reqs: []admission.Request{pvc}, want: []string{"denied"}},
		{name: "warned", policy: warnPVC, validate: true, reqs: []admission.Request{pvc}, want: []string{"warned"}},
		{name: "skipped not logged by default", reqs: []admission.Request{notTask}},
		{name: "allowed not logged by default", validate: true, reqs: []admission.Request{kpo}},
		{name: "skipped at all", level: DecisionLogAll, reqs: []admission.Request{notTask}, want: []string{"skipped"}},
		{name: "denials leave out mutations", level: DecisionLogDenials, reqs: []admission.Request{kpo}},
		{name: "denials leave out warnings", level: DecisionLogDenials, policy: warnPVC, validate: true, reqs: []admission.Request{pvc}},
		{name: "denials", level: DecisionLogDenials, validate: true, reqs: []admission.Request{kpo, pvc}, want: []string{"denied"}},
		{name: "off", level: DecisionLogOff, validate: true, reqs: []admission.Request{pvc, kpo}},
		{
			name: "sampled: 1 in 3 routine decisions, every denial", level: DecisionLogAll, sample: 3, validate: true,
			reqs: []admission.Request{kpo, kpo, pvc, kpo, kpo, kpo, pvc, kpo, kpo}, // routine: 1st, 4th and 7th logged
			want: []string{"allowed", "denied", "allowed", "denied", "allowed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeps(t, basePolicy+tt.policy)
			if tt.level != "" {
				d.Decisions = &DecisionLog{Level: tt.level, Sample: tt.sample}
			}
			h := d.MutatePods
			if tt.validate {
				h = d.ValidatePods
			}
			lines, _ := decisionLines(t, d, h, tt.reqs...)
			var got []string
			for _, l := range lines {
				got = append(got, fmt.Sprint(l["decision"]))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("decisions logged = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDecisionLogLine checks what one line says: who, which task, what
// each rule did, and under which policy.
func TestDecisionLogLine(t *testing.T) {
	d := newDeps(t, basePolicy)
	lines, _ := decisionLines(t, d, d.MutatePods, newPodRequest(admissionv1.Create, fixture(t, "01-kpo-basic-no-resources.yaml")))
	if len(lines) != 1 {
		t.Fatalf("%d decision lines, want 1", len(lines))
	}
	l := lines[0]
	for k, want := range map[string]any{
		"webhook": hookMutate, "decision": "mutated", "uid": "test-uid", "namespace": testNamespace,
		"pod": "extract-orders-k3x9p2qa", "operation": "CREATE",
		"dag_id": "etl_orders_daily", "task_id": "extract_orders", "try_number": "1",
		"run_id":     "scheduled__2025-06-01T0000000000-62a051894",
		"policyHash": d.Policies.Current().Hash(),
	} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v", k, l[k], want)
		}
	}
	for _, k := range []string{"team", "airflow_version", "map_index", "findingsOmitted"} {
		if v, ok := l[k]; ok {
			t.Errorf("%s = %v logged; only the Airflow identity labels present belong in the line", k, v)
		}
	}
	if s, ok := l["durationSeconds"].(float64); !ok || s <= 0 {
		t.Errorf("durationSeconds = %v, want a positive number", l["durationSeconds"])
	}
	findings, _ := l["findings"].([]any)
	want := map[string]any{"rule": "default-resources", "mode": "enforce",
		"path": "spec.containers[0].resources.requests[cpu]", "what": "set spec.containers[0].resources.requests[cpu]=500m"}
	found := false
	for _, f := range findings {
		if fmt.Sprint(f) == fmt.Sprint(want) {
			found = true
		}
	}
	if !found {
		t.Errorf("findings %v lack %v", findings, want)
	}
}

// A denial's line names the violation without the fix, which the DAG
// author reads in the denial; the log is for the operator.
func TestDecisionLogViolation(t *testing.T) {
	d := newDeps(t, basePolicy)
	lines, _ := decisionLines(t, d, d.ValidatePods, newPodRequest(admissionv1.Create, fixture(t, "../testdata/pods/10-pvc-task.yaml")))
	if len(lines) != 1 {
		t.Fatalf("%d decision lines, want 1", len(lines))
	}
	findings, _ := lines[0]["findings"].([]any)
	want := "map[mode:enforce path:spec.volumes[0].persistentVolumeClaim rule:no-persistent-volumes what:PersistentVolumes are not supported for task pods]"
	if len(findings) != 2 || fmt.Sprint(findings[0]) != want {
		t.Errorf("findings = %v, want 2, the first %s", findings, want)
	}
}

// A pod with many findings gets a bounded line that says how many are
// left out.
func TestDecisionLogBounded(t *testing.T) {
	var containers []string
	for i := range 30 {
		containers = append(containers, fmt.Sprintf(`{"name":"c%d","image":"ubuntu:22.04"}`, i))
	}
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"wide","namespace":"` + testNamespace +
		`","labels":{"kubernetes_pod_operator":"True","dag_id":"wide_dag","map_index":"7"}},"spec":{"containers":[` + strings.Join(containers, ",") + `]}}`)
	d := newDeps(t, basePolicy)
	lines, _ := decisionLines(t, d, d.MutatePods, newPodRequest(admissionv1.Create, raw))
	if len(lines) != 1 {
		t.Fatalf("%d decision lines, want 1", len(lines))
	}
	l := lines[0]
	findings, _ := l["findings"].([]any)
	omitted, _ := l["findingsOmitted"].(float64)
	if len(findings) != maxLoggedFindings || omitted < 30*4-maxLoggedFindings {
		t.Errorf("%d findings and %v omitted, want %d and at least %d", len(findings), omitted, maxLoggedFindings, 30*4-maxLoggedFindings)
	}
	if l["map_index"] != "7" || l["dag_id"] != "wide_dag" {
		t.Errorf("map_index %v, dag_id %v, want 7 and wide_dag", l["map_index"], l["dag_id"])
	}
}

// No value of an env var, nor anything of a Secret, reaches the log:
// env-secrets logs the Secret's name it refers to, nothing else.
func TestDecisionLogHasNoSecretValues(t *testing.T) {
	const secret = "hunter2-FAKE-SECRET-7f3a9c"
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"leaky","namespace":"` + testNamespace + `",
		"labels":{"kubernetes_pod_operator":"True","dag_id":"leaky_dag"},
		"annotations":{"note":"` + secret + `"}},
		"spec":{"containers":[{"name":"base","image":"ubuntu:22.04",
			"env":[{"name":"AWS_SECRET_ACCESS_KEY","value":"` + secret + `"}],
			"volumeMounts":[{"name":"data","mountPath":"/data"}]}],
		"volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data"}}]}}`)
	for _, hook := range []string{hookMutate, hookValidate} {
		d := newDeps(t, basePolicy)
		d.Decisions = &DecisionLog{Level: DecisionLogAll, Sample: 1}
		h := d.MutatePods
		if hook == hookValidate {
			h = d.ValidatePods
		}
		lines, all := decisionLines(t, d, h, newPodRequest(admissionv1.Create, raw))
		if len(lines) != 1 {
			t.Fatalf("%s: %d decision lines, want 1", hook, len(lines))
		}
		if strings.Contains(all, secret) || strings.Contains(all, "hunter2") {
			t.Errorf("%s logged the env var's value:\n%s", hook, all)
		}
		if hook == hookMutate && !strings.Contains(all, `"rule":"env-secrets"`) {
			t.Errorf("%s: the env-secrets change is not logged, so this test proves nothing about it:\n%s", hook, all)
		}
	}
}

func TestParseDecisionLogLevel(t *testing.T) {
	for _, s := range []string{"all", "changes", "denials", "off"} {
		if l, err := ParseDecisionLogLevel(s); err != nil || string(l) != s {
			t.Errorf("ParseDecisionLogLevel(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "debug", "ALL"} {
		if _, err := ParseDecisionLogLevel(s); err == nil {
			t.Errorf("ParseDecisionLogLevel(%q) accepted", s)
		}
	}
}
