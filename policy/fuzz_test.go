package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzLoad feeds any bytes to Load. It must never panic, and a policy it
// returns must give rule sets for namespaces and run over a pod.
//
// The seed corpus runs under plain `go test`; fuzz with
// `go test -run '^$' -fuzz FuzzLoad ./policy/`.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		// valid
		"apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\n",
		doc(richRules),
		overridesDoc,
		conflictDoc,
		doc("defaultResources:\n  requests: {cpu: 0.5, memory: 1073741824}\n  limits: {cpu: 1.5, memory: 2Gi}\n" +
			"imageArchitecture: {architectures: [amd64, arm64], onLookupFailure: deny}\n" +
			"noPersistentVolumes: {allowHostPath: true, mode: audit}\n"),
		`{"apiVersion":"kpoguard.io/v1alpha1","kind":"PodPolicy","spec":{"scope":{"taskPodSelector":{}},"overrides":[{"namespaces":["a"],"rules":{"serviceAccount":null}}]}}`,
		// invalid
		"",
		"null",
		"- a\n",
		"apiVersion: [\n",
		"apiVersion: kpoguard.io/v1\nkind: Policy\n",
		doc("defaultResource: {}\n"),
		doc("defaultResources: {requests: {cpu: true}}\n"),
		doc("defaultResources: {mode: strict, requests: {cpu: -1}}\nmaxResources: {container: {cpu: 10m}}\n"),
		doc("nodePool: {defaultQueue: x, queues: {y: {}}}\nephemeralStorage: {allowedQueues: [z]}\n"),
		docHeader + "spec:\n  overrides:\n  - rules: {}\n  - namespaceSelector: {matchExpressions: [{key: a, operator: Bad}]}\n",
		docHeader + "spec:\n  overrides:\n  - namespaces: [a]\n    rules: {maxResources: {container: {cpu: 1m}}}\n",
	} {
		f.Add([]byte(seed))
	}
	namespaces := []Namespace{
		{Name: "default"},
		{Name: "a", Labels: map[string]string{"team": "a"}},
		{Name: "ns-a", Labels: map[string]string{"team": "a", "tier": "gold"}},
		{Name: "ns-both", Labels: map[string]string{"both": "true", "small": "true"}},
		{Name: "ns-x", Labels: map[string]string{"small": "true", "tiny": "true"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load(data)
		if err != nil {
			if p != nil {
				t.Fatalf("Load returned a policy and an error: %v", err)
			}
			return
		}
		if p == nil {
			t.Fatal("Load returned neither a policy nor an error")
		}
		if len(p.Hash()) != 16 {
			t.Fatalf("Hash() = %q", p.Hash())
		}
		p.Skips("kube-system", nil, Requester{})
		for _, ns := range namespaces {
			rs, err := p.RulesFor(ns)
			if err != nil {
				if rs != nil {
					t.Fatalf("RulesFor(%s) returned rules and an error: %v", ns.Name, err)
				}
				continue
			}
			if rs == nil {
				t.Fatalf("RulesFor(%s) returned neither rules nor an error", ns.Name)
			}
			for _, id := range RuleIDs() {
				switch rs.Mode(id) {
				case Off, Audit, Warn, Enforce:
				default:
					t.Fatalf("RulesFor(%s): rule %s has mode %q", ns.Name, id, rs.Mode(id))
				}
			}
			pod := taskPod(ctr("base", corev1.ResourceRequirements{}), ctr(XComSidecar, rr("cpu=1m,memory=10Mi", "")))
			pod.Spec.Volumes = []corev1.Volume{emptyDir(XComVolume, "")}
			rs.Mutate(pod, Facts{})
			rs.Validate(pod, Facts{Images: map[string]ImageFacts{}})
			if again := rs.Mutate(pod, Facts{}); len(Applied(again)) != 0 {
				t.Fatalf("RulesFor(%s): second Mutate applied %v", ns.Name, again)
			}
		}
	})
}
