package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ServiceAccount is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const ServiceAccount RuleID = "service-account"

// ServiceAccountSpec configures the service-account rule.
type ServiceAccountSpec struct {
	Mode    Mode     `json:"mode,omitempty"`
	Allowed []string `json:"allowed,omitempty"`
}

// ServiceAccountConfig is the compiled, typed serviceAccount section.
type ServiceAccountConfig struct {
	Mode    Mode
	Allowed []string
}

// serviceAccount admits only the service accounts the namespace allows, so
// a task cannot borrow another team's or the platform's identity.
//
// Reads spec.serviceAccountName and the deprecated spec.serviceAccount; an
// empty name means "default", as the API server reads it.
func serviceAccount(pod *corev1.Pod, in *input) []Violation {
	allowed := in.rules.ServiceAccount.Allowed
	var out []Violation
	check := func(name string, path *field.Path) {
		if name == "" {
			name = "default"
		}
		if slices.Contains(allowed, name) {
			return
		}
		out = append(out, Violation{
			Subject: fmt.Sprintf("service account %q", name),
			Path:    path.String(),
			Message: "cross-account service accounts are not supported for task pods",
			Fix:     fmt.Sprintf("remove service_account_name or use one of: %s", strings.Join(allowed, ", ")),
		})
	}
	check(pod.Spec.ServiceAccountName, field.NewPath("spec", "serviceAccountName"))
	if dep := pod.Spec.DeprecatedServiceAccount; dep != "" && dep != pod.Spec.ServiceAccountName {
		check(dep, field.NewPath("spec", "serviceAccount"))
	}
	return out
}

func compileServiceAccount(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("serviceAccount")
	rs.ServiceAccount = ServiceAccountConfig{
		Mode:    c.mode(spec.ServiceAccount.Mode, p.Child("mode")),
		Allowed: spec.ServiceAccount.Allowed,
	}
	if len(spec.ServiceAccount.Allowed) == 0 {
		c.add(field.Required(p.Child("allowed"), "name at least one service account, such as default"))
	}
	for i, name := range spec.ServiceAccount.Allowed {
		c.dnsSubdomain(name, p.Child("allowed").Index(i))
	}
}
