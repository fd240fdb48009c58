package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Chart holds the objects of `helm template` a sandbox installs.
type Chart struct {
	Policy     *corev1.ConfigMap
	Mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
	RBAC       RBAC
}

// Webhooks are the chart's webhook configurations, pointed at a local
// kpoguard.
type Webhooks struct {
	Mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// RenderChart renders charts/kpoguard as the sandbox installs it: release
// Release with Values, and the given policy file as values.policy.
func RenderChart(opts Options, policyFile string) (*Chart, error) {
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		return nil, err
	}
	var policyDoc map[string]any
	if err := yaml.Unmarshal(policy, &policyDoc); err != nil {
		return nil, err
	}
	return renderChart(opts, Release, Values(), map[string]any{"policy": policyDoc})
}

// renderChart renders charts/kpoguard as release in KpoguardNamespace, the
// way a platform team installs it, with the values in order: helm merges
// them, a later one winning.
func renderChart(opts Options, release string, values ...map[string]any) (*Chart, error) {
	args := []string{"template", release, filepath.Join(opts.RepoRoot, "charts", "kpoguard"), "--namespace", KpoguardNamespace}
	for i, v := range values {
		data, err := yaml.Marshal(v)
		if err != nil {
			return nil, err
		}
		file := filepath.Join(opts.WorkDir, fmt.Sprintf("values-%s-%d.yaml", release, i))
		if err := os.WriteFile(file, data, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--values", file)
	}
	cmd := exec.Command(opts.Bin("helm"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	r := &Chart{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		var target any
		switch meta.Kind {
		case "ConfigMap":
			r.Policy = &corev1.ConfigMap{}
			target = r.Policy
		case "MutatingWebhookConfiguration":
			r.Mutating = &admissionregistrationv1.MutatingWebhookConfiguration{}
			target = r.Mutating
		case "ValidatingWebhookConfiguration":
			r.Validating = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			target = r.Validating
		case "ServiceAccount":
			r.RBAC.ServiceAccount = &corev1.ServiceAccount{}
			target = r.RBAC.ServiceAccount
		case "Role":
			r.RBAC.Roles = append(r.RBAC.Roles, rbacv1.Role{})
			target = &r.RBAC.Roles[len(r.RBAC.Roles)-1]
		case "RoleBinding":
			r.RBAC.RoleBindings = append(r.RBAC.RoleBindings, rbacv1.RoleBinding{})
			target = &r.RBAC.RoleBindings[len(r.RBAC.RoleBindings)-1]
		case "ClusterRole":
			r.RBAC.ClusterRoles = append(r.RBAC.ClusterRoles, rbacv1.ClusterRole{})
			target = &r.RBAC.ClusterRoles[len(r.RBAC.ClusterRoles)-1]
		case "ClusterRoleBinding":
			r.RBAC.ClusterRoleBindings = append(r.RBAC.ClusterRoleBindings, rbacv1.ClusterRoleBinding{})
			target = &r.RBAC.ClusterRoleBindings[len(r.RBAC.ClusterRoleBindings)-1]
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			return nil, fmt.Errorf("decoding the rendered %s: %w", meta.Kind, err)
		}
	}
	if r.Policy == nil || r.Mutating == nil || r.Validating == nil || r.RBAC.ServiceAccount == nil {
		return nil, fmt.Errorf("the chart rendered no policy ConfigMap, webhook configurations or ServiceAccount")
	}
	return r, nil
}

// PointedAt returns the webhook configurations with only their clientConfig
// changed: the local kpoguard's URL instead of the in-cluster Service, and
// the CA that signed its serving certificate.
func (r *Chart) PointedAt(baseURL string, caBundle []byte) Webhooks {
	rewrite := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := baseURL + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, caBundle
	}
	w := Webhooks{Mutating: r.Mutating.DeepCopy(), Validating: r.Validating.DeepCopy()}
	for i := range w.Mutating.Webhooks {
		rewrite(&w.Mutating.Webhooks[i].ClientConfig)
	}
	for i := range w.Validating.Webhooks {
		rewrite(&w.Validating.Webhooks[i].ClientConfig)
	}
	return w
}
