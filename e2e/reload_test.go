package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/webhook"
)

// smallPolicy is the example policy with another default pod size.
func smallPolicy(t *testing.T) string {
	t.Helper()
	doc := readFile(t, repoRoot+"/examples/policy.yaml")
	out := strings.Replace(doc, "requests: {cpu: 500m, memory: 1Gi}\n      limits: {cpu: \"1\", memory: 2Gi, ephemeral-storage: 2Gi}",
		"requests: {cpu: 250m, memory: 512Mi}\n      limits: {cpu: 250m, memory: 512Mi, ephemeral-storage: 1Gi}", 1)
	if out == doc {
		t.Fatal("examples/policy.yaml changed: update smallPolicy")
	}
	return out
}

func TestHotReloadWithinTwoSeconds(t *testing.T) {
	doc := mirrored(t, smallPolicy(t))
	p, err := policy.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	cm, err := cms.Get(t.Context(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	previous := cm.Data[webhook.PolicyKey]
	t.Cleanup(func() { writePolicy(t, previous) })
	cm.Data[webhook.PolicyKey] = doc
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := waitForPolicy(t, p.Hash(), 2*time.Second)
	t.Logf("new policy in force %v after the ConfigMap update", took)

	pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(t.Context(), sandbox.TaskPod("after-reload"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, taskNamespace, pod.Name) })
	if got := pod.Spec.Containers[0].Resources.Limits.Cpu().String(); got != "250m" {
		t.Errorf("cpu limit %s after the reload, want the new default 250m", got)
	}
}

func TestInvalidPolicyRefusedAtApply(t *testing.T) {
	cases := []struct {
		name, policy string
		want         []string
	}{
		{"invalid fields", `apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
spec:
  rules:
    maxResources: {mode: block, contianer: {cpu: "4"}}
    defaultResources: {requests: {cpu: lots}}
`, []string{
			`admission webhook "validate-policy.kpoguard.io" denied the request`,
			`unknown field "spec.rules.maxResources.contianer"`,
			`spec.rules.maxResources.mode: Unsupported value: "block"`,
			`spec.rules.defaultResources.requests[cpu]: Invalid value: "lots": not a quantity`,
		}},
		{"bad YAML", "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: {rules: [\n", []string{
			`admission webhook "validate-policy.kpoguard.io" denied the request`, "policy is not valid YAML",
		}},
	}
	before := exampleHash(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := kubectl(t, policyConfigMapYAML(tc.policy), "apply", "-f", "-")
			if r.code != 1 {
				t.Fatalf("kubectl apply: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("kubectl stderr lacks %q:\n%s", want, r.stderr)
				}
			}
		})
	}
	waitForPolicy(t, before, time.Second)
}

// An invalid policy that gets past the policy webhook (here: its
// configuration is removed, as when kpoguard was down and the webhook's
// failurePolicy is Ignore) does not replace the last good policy.
func TestInvalidPolicyKeepsLastGood(t *testing.T) {
	before := exampleHash(t)
	failures := metric(t, `kpoguard_policy_reloads_total{result="failure"}`)
	reg := cluster.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if err := reg.Delete(t.Context(), cluster.Webhooks.Validating.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := reg.Create(context.Background(), cluster.Webhooks.Validating.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitForWebhooks(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	// The configuration's removal reaches the API server's informer a
	// moment later; retry the apply until it is accepted.
	bad := policyConfigMapYAML("apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: {rules: {maxResources: {mode: block}}}\n")
	var r kubectlResult
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = kubectl(t, bad, "apply", "-f", "-"); r.code == 0 {
			break
		}
	}
	if r.code != 0 {
		t.Fatalf("kubectl apply of the bad policy: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { writePolicy(t, readFile(t, repoRoot+"/examples/policy.yaml")) })

	deadline := time.Now().Add(5 * time.Second)
	for metric(t, `kpoguard_policy_reloads_total{result="failure"}`) == failures {
		if time.Now().After(deadline) {
			t.Fatal("the refused reload was not counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(t, "kpoguard_policy_last_reload_successful"); got != 0 {
		t.Errorf("kpoguard_policy_last_reload_successful = %v, want 0", got)
	}
	waitForPolicy(t, before, time.Second)
	if !strings.Contains(cluster.Kpoguard.Logs(), `spec.rules.maxResources.mode: Unsupported value: \"block\"`) {
		t.Errorf("the refusal's reason is not logged")
	}
}

func policyConfigMapYAML(doc string) string {
	return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ` + sandbox.PolicyConfigMap + `
  namespace: ` + sandbox.KpoguardNamespace + `
  labels:
    kpoguard.io/policy: "true"
data:
  policy.yaml: |
    ` + strings.ReplaceAll(strings.TrimRight(doc, "\n"), "\n", "\n    ") + "\n"
}
