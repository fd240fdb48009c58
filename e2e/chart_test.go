package e2e

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func helmTemplate(t *testing.T, release, namespace string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "bin", "helm"), append([]string{"template", release,
		filepath.Join(repoRoot, "charts", "kpoguard"), "--namespace", namespace}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// Every object the chart renders, with the default values and with every
// toggle turned, is accepted by the API server under server-side apply.
// The webhook configurations are applied as a server dry run, so that a
// kpoguard that does not run here cannot block the suite's cluster.
func TestChartObjectsAcceptedByTheAPIServer(t *testing.T) {
	for _, c := range []struct {
		name, namespace string
		args            []string
	}{
		{"default values", "chart-default", nil},
		{"every toggle", "chart-full", []string{"--values", filepath.Join(repoRoot, "charts", "kpoguard", "ci", "full-values.yaml")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := cluster.CreateNamespace(t.Context(), c.namespace, nil); err != nil {
				t.Fatal(err)
			}
			// Another release name than the suite's own: webhook
			// configurations are cluster-scoped.
			rendered, stderr, err := helmTemplate(t, "chart", c.namespace, c.args...)
			if err != nil {
				t.Fatalf("helm template: %v: %s", err, stderr)
			}
			var objects, webhooks []string
			for _, doc := range strings.Split(rendered, "\n---\n") {
				if strings.Contains(doc, "kind: MutatingWebhookConfiguration") || strings.Contains(doc, "kind: ValidatingWebhookConfiguration") {
					webhooks = append(webhooks, doc)
				} else if strings.TrimSpace(doc) != "" {
					objects = append(objects, doc)
				}
			}
			if r := kubectl(t, strings.Join(objects, "\n---\n"), "apply", "--server-side", "--field-manager=e2e", "-f", "-"); r.code != 0 {
				t.Fatalf("server-side apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r := kubectl(t, strings.Join(webhooks, "\n---\n"), "apply", "--server-side", "--dry-run=server", "--field-manager=e2e", "-f", "-"); r.code != 0 || strings.Count(r.stdout, "(server dry run)") != 2 {
				t.Fatalf("webhook configurations, server dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
	// The Deployment as stored: hardened as the chart promises.
	r := kubectl(t, "", "get", "deployment", "-n", "chart-default", "chart-kpoguard", "-o", "yaml")
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	expectFields(t, []field{
		{"replicas", strconv.Itoa(int(*d.Spec.Replicas)), "2"},
		{"runAsNonRoot", boolText(spec.SecurityContext.RunAsNonRoot), "true"},
		{"seccomp", string(spec.SecurityContext.SeccompProfile.Type), string(corev1.SeccompProfileTypeRuntimeDefault)},
		{"readOnlyRootFilesystem", boolText(c.SecurityContext.ReadOnlyRootFilesystem), "true"},
		{"allowPrivilegeEscalation", boolText(c.SecurityContext.AllowPrivilegeEscalation), "false"},
		{"dropped capabilities", strings.Join(capabilityNames(c.SecurityContext.Capabilities.Drop), ","), "ALL"},
		{"policy source", c.Args[1], "--policy-configmap=chart-default/chart-kpoguard-policy"},
		{"readiness probe", c.ReadinessProbe.HTTPGet.Path, "/readyz"},
	})
}

func boolText(b *bool) string {
	if b == nil {
		return "unset"
	}
	if *b {
		return "true"
	}
	return "false"
}

func capabilityNames(cs []corev1.Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

// Values the schema forbids are refused by helm, naming the value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ set, want string }{
		{"webhook.validating.failurePolicy=Maybe", "/webhook/validating/failurePolicy"},
		{"webhook.mutating.timeoutSeconds=31", "/webhook/mutating/timeoutSeconds"},
		{"replicaCount=0", "/replicaCount"},
		{"policy.kind=Policy", "/policy/kind"},
		{"unknownValue=1", "unknownValue"},
	} {
		_, stderr, err := helmTemplate(t, "kpoguard", "kpoguard", "--set", c.set)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("--set %s: err %v, stderr %q, want a schema error naming %s", c.set, err, stderr, c.want)
		}
	}
}
