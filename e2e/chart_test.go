package e2e

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

// renderedChart holds the objects of `helm template` the suite installs.
type renderedChart struct {
	policy     *corev1.ConfigMap
	mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

type renderedWebhooks struct {
	mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// renderChart renders charts/kpoguard with the given policy file as
// values.policy, the way a platform team installs it.
func renderChart(work, policyFile string) (*renderedChart, error) {
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
	valuesFile := filepath.Join(work, "values.yaml")
	if err := os.WriteFile(valuesFile, values, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(binDir, "helm"), "template", release, filepath.Join(repoRoot, "charts", "kpoguard"),
		"--namespace", kpoguardNamespace, "--values", valuesFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	r := &renderedChart{}
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
			r.policy = &corev1.ConfigMap{}
			target = r.policy
		case "MutatingWebhookConfiguration":
			r.mutating = &admissionregistrationv1.MutatingWebhookConfiguration{}
			target = r.mutating
		case "ValidatingWebhookConfiguration":
			r.validating = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			target = r.validating
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			return nil, fmt.Errorf("decoding the rendered %s: %w", meta.Kind, err)
		}
	}
	if r.policy == nil || r.mutating == nil || r.validating == nil {
		return nil, fmt.Errorf("the chart rendered no policy ConfigMap or webhook configurations")
	}
	return r, nil
}

// pointedAt returns the webhook configurations with only their clientConfig
// changed: the local kpoguard's URL instead of the in-cluster Service, and
// the CA that signed its serving certificate.
func (r *renderedChart) pointedAt(baseURL string, caBundle []byte) renderedWebhooks {
	rewrite := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := baseURL + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, caBundle
	}
	w := renderedWebhooks{mutating: r.mutating.DeepCopy(), validating: r.validating.DeepCopy()}
	for i := range w.mutating.Webhooks {
		rewrite(&w.mutating.Webhooks[i].ClientConfig)
	}
	for i := range w.validating.Webhooks {
		rewrite(&w.validating.Webhooks[i].ClientConfig)
	}
	return w
}
