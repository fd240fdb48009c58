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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Chart holds the objects of `helm template` a sandbox installs.
type Chart struct {
	Policy     *corev1.ConfigMap
	Mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// Webhooks are the chart's webhook configurations, pointed at a local
// kpoguard.
type Webhooks struct {
	Mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// RenderChart renders charts/kpoguard with the given policy file as
// values.policy, the way a platform team installs it.
func RenderChart(opts Options, policyFile string) (*Chart, error) {
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		return nil, err
	}
	var policyDoc map[string]any
	if err := yaml.Unmarshal(policy, &policyDoc); err != nil {
		return nil, err
	}
	values, err := yaml.Marshal(map[string]any{"policy": policyDoc})
	if err != nil {
		return nil, err
	}
	valuesFile := filepath.Join(opts.WorkDir, "values.yaml")
	if err := os.WriteFile(valuesFile, values, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(opts.Bin("helm"), "template", Release, filepath.Join(opts.RepoRoot, "charts", "kpoguard"),
		"--namespace", KpoguardNamespace, "--values", valuesFile)
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
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			return nil, fmt.Errorf("decoding the rendered %s: %w", meta.Kind, err)
		}
	}
	if r.Policy == nil || r.Mutating == nil || r.Validating == nil {
		return nil, fmt.Errorf("the chart rendered no policy ConfigMap or webhook configurations")
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
