package monitoring

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Rule is an alerting rule of a Prometheus rule file.
type Rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// LoadRules reads the alerting rules of a rule file, every group's.
func LoadRules(path string) ([]Rule, error) {
	var file struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := readYAML(path, &file); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// AlertCases says, per alert, whether a promtool test file expects it to
// fire at some evaluation and to stay silent at another.
type AlertCases map[string]struct{ Fires, Silent bool }

// LoadAlertCases reads a promtool test file's alert_rule_test cases.
func LoadAlertCases(path string) (AlertCases, error) {
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := readYAML(path, &file); err != nil {
		return nil, err
	}
	cases := AlertCases{}
	for _, t := range file.Tests {
		for _, c := range t.AlertRuleTest {
			got := cases[c.Alertname]
			if len(c.ExpAlerts) > 0 {
				got.Fires = true
			} else {
				got.Silent = true
			}
			cases[c.Alertname] = got
		}
	}
	return cases, nil
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
