package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// EnvSecrets is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const EnvSecrets RuleID = "env-secrets"

// EnvSecretsSpec configures the env-secrets rule.
type EnvSecretsSpec struct {
	Mode       Mode     `json:"mode,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
	Containers []string `json:"containers,omitempty"`
}

// EnvSecretsConfig is the compiled, typed envSecrets section.
type EnvSecretsConfig struct {
	Mode       Mode
	SecretName string
	Containers []string
}

// envSecrets makes the deployment's secret environment variables available
// to the task: it puts envFrom secretRef (optional, so a namespace without
// the Secret still runs) first in each configured container's envFrom.
// Being first, any envFrom the DAG author wrote wins over it for the same
// key, and explicit env entries always win over envFrom.
//
// Reads and writes spec.containers[*].envFrom. Skips a container that
// already references the Secret.
func envSecrets(pod *corev1.Pod, in *input) []Change {
	cfg := in.rules.EnvSecrets
	var changes []Change
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if !slices.Contains(cfg.Containers, c.Name) || referencesSecret(c.EnvFrom, cfg.SecretName) {
			continue
		}
		optional := true
		source := corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.SecretName},
			Optional:             &optional,
		}}
		c.EnvFrom = append([]corev1.EnvFromSource{source}, c.EnvFrom...)
		changes = append(changes, Change{
			Path:  field.NewPath("spec", "containers").Index(i).Child("envFrom").Index(0).String(),
			Value: "secretRef " + cfg.SecretName + " (optional)",
		})
	}
	return changes
}

func referencesSecret(sources []corev1.EnvFromSource, name string) bool {
	return slices.ContainsFunc(sources, func(s corev1.EnvFromSource) bool {
		return s.SecretRef != nil && s.SecretRef.Name == name
	})
}

func compileEnvSecrets(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("envSecrets")
	rs.EnvSecrets = EnvSecretsConfig{
		Mode:       c.mode(spec.EnvSecrets.Mode, p.Child("mode")),
		SecretName: spec.EnvSecrets.SecretName,
		Containers: spec.EnvSecrets.Containers,
	}
	c.dnsSubdomain(spec.EnvSecrets.SecretName, p.Child("secretName"))
}
