package monitoring

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRulesKeepsAlertsOfEveryGroup(t *testing.T) {
	path := writeTemp(t, `groups:
  - name: a
    rules:
      - record: job:up:sum
        expr: sum(up)
      - alert: One
        expr: up == 0
        for: 5m
        labels: {severity: critical}
  - name: b
    rules:
      - alert: Two
        expr: absent(up)
`)
	rules, err := LoadRules(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{{Alert: "One", Expr: "up == 0", For: "5m", Labels: map[string]string{"severity": "critical"}}, {Alert: "Two", Expr: "absent(up)"}}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("LoadRules = %+v, want %+v", rules, want)
	}
	if _, err := LoadRules(writeTemp(t, "groups: {")); err == nil {
		t.Error("a malformed rule file loaded")
	}
}

func TestLoadAlertCases(t *testing.T) {
	path := writeTemp(t, `tests:
  - alert_rule_test:
      - {eval_time: 5m, alertname: Both, exp_alerts: []}
      - {eval_time: 9m, alertname: Both, exp_alerts: [{exp_labels: {severity: warning}}]}
      - {eval_time: 9m, alertname: FiresOnly, exp_alerts: [{exp_labels: {severity: warning}}]}
  - alert_rule_test:
      - {eval_time: 1m, alertname: SilentOnly}
`)
	cases, err := LoadAlertCases(path)
	if err != nil {
		t.Fatal(err)
	}
	want := AlertCases{"Both": {Fires: true, Silent: true}, "FiresOnly": {Fires: true}, "SilentOnly": {Silent: true}}
	if !reflect.DeepEqual(cases, want) {
		t.Errorf("LoadAlertCases = %+v, want %+v", cases, want)
	}
	if _, err := LoadAlertCases(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing test file loaded")
	}
}
