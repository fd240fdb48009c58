package policy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRuleTable(t *testing.T) {
	want := []RuleID{DefaultResources, RequestsEqualLimits, MaxResources, NoPersistentVolumes, EphemeralStorage,
		EnvSecrets, ServiceAccount, ImagePullSecrets, NodePool, ImageArchitecture}
	if got := RuleIDs(); !reflect.DeepEqual(got, want) {
		t.Errorf("RuleIDs() = %v, want %v", got, want)
	}
	mutates := map[RuleID]bool{DefaultResources: true, RequestsEqualLimits: true, EphemeralStorage: true,
		EnvSecrets: true, ImagePullSecrets: true, NodePool: true}
	validates := map[RuleID]bool{MaxResources: true, NoPersistentVolumes: true, EphemeralStorage: true,
		ServiceAccount: true, NodePool: true, ImageArchitecture: true}
	for _, id := range want {
		if Mutates(id) != mutates[id] {
			t.Errorf("Mutates(%s) = %v", id, Mutates(id))
		}
		if Validates(id) != validates[id] {
			t.Errorf("Validates(%s) = %v", id, Validates(id))
		}
	}
	if Mutates("no-such-rule") || Validates("no-such-rule") {
		t.Error("an unknown rule mutates or validates")
	}
	rs := rulesFor(t, "requestsEqualLimits: {mode: audit}\nnodePool: {mode: warn}\nenvSecrets: {mode: \"off\"}\n")
	for id, mode := range map[RuleID]Mode{
		DefaultResources: Enforce, RequestsEqualLimits: Audit, NodePool: Warn, EnvSecrets: Off, "no-such-rule": Off,
	} {
		if got := rs.Mode(id); got != mode {
			t.Errorf("Mode(%s) = %s, want %s", id, got, mode)
		}
	}
}

// off does nothing; audit and warn report changes and leave the pod alone;
// enforce applies them.
func TestMutateModes(t *testing.T) {
	for _, mode := range []Mode{Off, Audit, Warn, Enforce} {
		t.Run(string(mode), func(t *testing.T) {
			rs := ruleOnly(t, DefaultResources, "defaultResources: {mode: \""+string(mode)+"\"}\n")
			pod := basePod()
			orig := pod.DeepCopy()
			changes := rs.Mutate(pod, Facts{})
			var want []Change
			if mode != Off {
				c := "spec.containers[0].resources."
				for _, x := range [][2]string{{"limits[cpu]", "1"}, {"requests[cpu]", "1"}, {"limits[memory]", "2Gi"}, {"requests[memory]", "2Gi"}} {
					want = append(want, Change{Rule: DefaultResources, Mode: mode, Path: c + x[0], Value: x[1]})
				}
			}
			assertChanges(t, changes, want)
			if mode == Enforce {
				assertResources(t, "resources", pod.Spec.Containers[0].Resources, rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"))
				if got := Applied(changes); !reflect.DeepEqual(got, changes) {
					t.Errorf("Applied dropped enforced changes: %v", got)
				}
			} else {
				if !reflect.DeepEqual(pod, orig) {
					t.Errorf("%s mode changed the pod: %+v", mode, pod.Spec.Containers[0].Resources)
				}
				if got := Applied(changes); len(got) != 0 {
					t.Errorf("Applied kept %s changes: %v", mode, got)
				}
			}
			// Again: an enforced pass has nothing left to do; the others
			// report the same changes, since the pod is unchanged.
			again := want
			if mode == Enforce {
				again = nil
			}
			assertChanges(t, rs.Mutate(pod.DeepCopy(), Facts{}), again)
		})
	}
}

// A later enforced rule does not see what an earlier audit-mode rule would
// have done.
func TestMutateAuditDoesNotLeak(t *testing.T) {
	rs := only(rulesFor(t, "defaultResources: {mode: audit}\nrequestsEqualLimits: {mode: enforce}\n"), DefaultResources)
	rs.RequestsEqualLimits.Mode = Enforce
	pod := taskPod(ctr("base", rr("cpu=500m", "")))
	changes := rs.Mutate(pod, Facts{})
	a := func(path, value string) Change {
		return Change{Rule: DefaultResources, Mode: Audit, Path: path, Value: value}
	}
	assertChanges(t, changes, []Change{
		a("spec.containers[0].resources.limits[cpu]", "1"),
		a("spec.containers[0].resources.limits[memory]", "2Gi"),
		a("spec.containers[0].resources.requests[memory]", "2Gi"),
	})
	assertResources(t, "resources", pod.Spec.Containers[0].Resources, rr("cpu=500m", ""))
}

func TestValidateModes(t *testing.T) {
	for _, mode := range []Mode{Off, Audit, Warn, Enforce} {
		t.Run(string(mode), func(t *testing.T) {
			rs := ruleOnly(t, ServiceAccount, "serviceAccount: {mode: \""+string(mode)+"\"}\n")
			pod := basePod()
			pod.Spec.ServiceAccountName = "admin"
			got := rs.Validate(pod, Facts{})
			var want []Violation
			if mode != Off {
				want = []Violation{{Rule: ServiceAccount, Mode: mode, Subject: `service account "admin"`, Path: "spec.serviceAccountName",
					Message: "cross-account service accounts are not supported for task pods", Fix: "remove service_account_name or use one of: default"}}
			}
			assertViolations(t, got, want)
			denials := Denials(got)
			if mode == Enforce && len(denials) != 1 || mode != Enforce && len(denials) != 0 {
				t.Errorf("Denials = %v", denials)
			}
		})
	}
}

// The image-architecture rule softens lookup failures to warn when
// onLookupFailure is allow, never beyond the rule's own mode.
func TestValidateLookupFailureSoftening(t *testing.T) {
	tests := []struct {
		mode    Mode
		failure LookupFailure
		want    Mode
	}{
		{Enforce, AllowOnLookupFailure, Warn},
		{Enforce, DenyOnLookupFailure, Enforce},
		{Warn, AllowOnLookupFailure, Warn},
		{Warn, DenyOnLookupFailure, Warn},
		{Audit, AllowOnLookupFailure, Audit},
		{Audit, DenyOnLookupFailure, Audit},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+string(tt.failure), func(t *testing.T) {
			rs := ruleOnly(t, ImageArchitecture, "imageArchitecture: {mode: "+string(tt.mode)+", onLookupFailure: "+string(tt.failure)+"}\n")
			pod := basePod()
			facts := Facts{Images: map[string]ImageFacts{"ubuntu:22.04": {Err: "registry unreachable"}}}
			assertViolations(t, rs.Validate(pod, facts), []Violation{{Rule: ImageArchitecture, Mode: tt.want,
				Subject: `image "ubuntu:22.04"`, Path: "spec.containers[0].image",
				Message: "its platforms could not be checked: registry unreachable",
				Fix:     "make sure the image exists and the registry is reachable, or ask your platform team"}})
			// A real mismatch is never softened.
			facts = Facts{Images: map[string]ImageFacts{"ubuntu:22.04": {Platforms: []Platform{{OS: "linux", Architecture: "arm64"}}}}}
			if got := rs.Validate(pod, facts); len(got) != 1 || got[0].Mode != tt.mode {
				t.Errorf("mismatch: %v, want mode %s", got, tt.mode)
			}
		})
	}
}

func TestWeaker(t *testing.T) {
	for _, tt := range []struct{ a, b, want Mode }{
		{Enforce, "", Enforce}, {Enforce, Warn, Warn}, {Enforce, Audit, Audit}, {Enforce, Enforce, Enforce},
		{Warn, Enforce, Warn}, {Audit, Warn, Audit}, {Warn, Audit, Audit}, {Audit, "", Audit},
	} {
		if got := weaker(tt.a, tt.b); got != tt.want {
			t.Errorf("weaker(%s, %s) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSkips(t *testing.T) {
	scoped := mustLoad(t, docHeader+`spec:
  scope:
    exemptNamespaces: [airflow-system]
    exemptUsers: [break-glass]
    exemptGroups: ["system:masters"]
`)
	defaults := mustLoad(t, docHeader)
	everyPod := mustLoad(t, docHeader+"spec:\n  scope:\n    taskPodSelector: {}\n")
	byDag := mustLoad(t, docHeader+"spec:\n  scope:\n    taskPodSelector: {matchExpressions: [{key: dag_id, operator: Exists}]}\n")

	task := map[string]string{TaskPodLabel: "True", "dag_id": "d"}
	worker := map[string]string{"component": "worker", "airflow-worker": "1"}
	user := Requester{Username: "system:serviceaccount:airflow:worker", Groups: []string{"system:serviceaccounts"}}

	tests := []struct {
		name   string
		p      *Policy
		ns     string
		labels map[string]string
		who    Requester
		want   string
	}{
		{"a task pod", defaults, "airflow", task, user, ""},
		{"kube-system is exempt by default", defaults, "kube-system", task, user, SkipExemptNamespace},
		{"exempt namespaces replace the default", scoped, "kube-system", task, user, ""},
		{"a configured exempt namespace", scoped, "airflow-system", task, user, SkipExemptNamespace},
		{"an exempt user", scoped, "airflow", task, Requester{Username: "break-glass"}, SkipExemptUser},
		{"an exempt group", scoped, "airflow", task, Requester{Username: "alice", Groups: []string{"devs", "system:masters"}}, SkipExemptUser},
		{"no exempt users by default", defaults, "airflow", task, Requester{}, ""},
		{"an empty username is not exempt", scoped, "airflow", task, Requester{}, ""},
		{"a pod without the KPO label", defaults, "airflow", worker, user, SkipNotTaskPod},
		{"a pod without labels", defaults, "airflow", nil, user, SkipNotTaskPod},
		{"the KPO label with another value", defaults, "airflow", map[string]string{TaskPodLabel: "False"}, user, SkipNotTaskPod},
		{"the exempt namespace is checked first", scoped, "airflow-system", worker, Requester{Username: "break-glass"}, SkipExemptNamespace},
		{"the exempt user is checked before the selector", scoped, "airflow", worker, Requester{Username: "break-glass"}, SkipExemptUser},
		{"an empty selector selects every pod", everyPod, "airflow", nil, user, ""},
		{"a custom selector", byDag, "airflow", map[string]string{"dag_id": "x"}, user, ""},
		{"a custom selector replaces the KPO label", byDag, "airflow", map[string]string{TaskPodLabel: "True"}, user, SkipNotTaskPod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Skips(tt.ns, tt.labels, tt.who); got != tt.want {
				t.Errorf("Skips = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	c := Change{Rule: EnvSecrets, Mode: Audit, Path: "spec.containers[0].envFrom[0]", Value: "secretRef env-secrets (optional)"}
	if got, want := c.String(), "[env-secrets] spec.containers[0].envFrom[0]: secretRef env-secrets (optional)"; got != want {
		t.Errorf("Change.String() = %q, want %q", got, want)
	}
	v := Violation{Rule: NoPersistentVolumes, Mode: Enforce, Subject: `volume "data"`, Path: "spec.volumes[0].persistentVolumeClaim",
		Message: "PersistentVolumes are not supported for task pods", Fix: "use an emptyDir"}
	if got, want := v.String(), `[no-persistent-volumes] volume "data" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods; use an emptyDir`; got != want {
		t.Errorf("Violation.String() = %q, want %q", got, want)
	}
}

func TestDenialMessage(t *testing.T) {
	one := Violation{Rule: MaxResources, Mode: Enforce, Subject: `container "base"`, Path: "spec.containers[0].resources.limits[cpu]",
		Message: "cpu limit 3 exceeds the maximum 2 per container", Fix: "set container_resources to at most cpu: 2, or ask your platform team for a larger maximum"}
	two := Violation{Rule: ServiceAccount, Mode: Enforce, Subject: `service account "admin"`, Path: "spec.serviceAccountName",
		Message: "cross-account service accounts are not supported for task pods", Fix: "remove service_account_name or use one of: default"}

	if got, want := DenialMessage("etl-abc", []Violation{one}),
		`pod "etl-abc" is forbidden by kpoguard: [max-resources] container "base" (spec.containers[0].resources.limits[cpu]): `+
			`cpu limit 3 exceeds the maximum 2 per container; set container_resources to at most cpu: 2, or ask your platform team for a larger maximum`; got != want {
		t.Errorf("one violation:\n got: %s\nwant: %s", got, want)
	}
	if got, want := DenialMessage("etl-abc", []Violation{one, two}),
		`pod "etl-abc" is forbidden by kpoguard: 2 violations:`+
			"\n"+`[max-resources] container "base" (spec.containers[0].resources.limits[cpu]): cpu limit 3 exceeds the maximum 2 per container; set container_resources to at most cpu: 2, or ask your platform team for a larger maximum`+
			"\n"+`[service-account] service account "admin" (spec.serviceAccountName): cross-account service accounts are not supported for task pods; remove service_account_name or use one of: default`; got != want {
		t.Errorf("two violations:\n got: %s\nwant: %s", got, want)
	}
}

func TestAppliedAndDenials(t *testing.T) {
	changes := []Change{{Rule: DefaultResources, Mode: Audit, Path: "a"}, {Rule: EnvSecrets, Mode: Enforce, Path: "b"}, {Rule: NodePool, Mode: Warn, Path: "c"}}
	if got := Applied(changes); !reflect.DeepEqual(got, changes[1:2]) {
		t.Errorf("Applied = %v", got)
	}
	vs := []Violation{{Rule: MaxResources, Mode: Warn}, {Rule: NodePool, Mode: Enforce}, {Rule: ImageArchitecture, Mode: Audit}, {Rule: ServiceAccount, Mode: Enforce}}
	if got := Denials(vs); !reflect.DeepEqual(got, []Violation{vs[1], vs[3]}) {
		t.Errorf("Denials = %v", got)
	}
	if Applied(nil) != nil || Denials(nil) != nil {
		t.Error("nil in, non-nil out")
	}
}

var fixtures = []string{
	"01-kpo-basic-no-resources.yaml",
	"02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml",
}

const richRules = `requestsEqualLimits: {mode: enforce}
maxResources:
  container: {cpu: 2, memory: 4Gi}
  pod: {cpu: 3, memory: 6Gi}
ephemeralStorage: {maxSizeLimit: 2Gi}
imagePullSecrets:
  registries:
  - {prefix: docker.io/library, secrets: [hub-mirror]}
nodePool:
  defaultQueue: default
  queues:
    default:
      nodeSelector: {pool: general}
      tolerations: [{key: dedicated, operator: Equal, value: airflow, effect: NoSchedule}]
      matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
`

func TestFixturesDecode(t *testing.T) {
	for _, name := range fixtures {
		pod := loadFixture(t, name)
		if pod.Labels[TaskPodLabel] != "True" || pod.Spec.Containers[0].Name != "base" {
			t.Errorf("%s: not a KPO task pod: %v", name, pod.Labels)
		}
	}
}

func TestMutateFixtures(t *testing.T) {
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	c := func(rule RuleID, path, value string) Change {
		return Change{Rule: rule, Mode: Enforce, Path: path, Value: value}
	}
	envFrom := c(EnvSecrets, "spec.containers[0].envFrom[0]", "secretRef env-secrets (optional)")
	placement := []Change{
		c(ImagePullSecrets, "spec.imagePullSecrets[0]", "hub-mirror"),
		c(NodePool, "spec.nodeSelector[pool]", "general"),
		c(NodePool, "spec.tolerations[0]", "dedicated=airflow:NoSchedule"),
		c(NodePool, terms+"[0].matchExpressions[0]", "kubernetes.io/arch In amd64"),
	}
	baseDefaults := []Change{
		c(DefaultResources, "spec.containers[0].resources.limits[cpu]", "1"),
		c(DefaultResources, "spec.containers[0].resources.requests[cpu]", "1"),
		c(DefaultResources, "spec.containers[0].resources.limits[memory]", "2Gi"),
		c(DefaultResources, "spec.containers[0].resources.requests[memory]", "2Gi"),
	}
	sidecarDefaults := []Change{
		c(DefaultResources, "spec.containers[1].resources.limits[cpu]", "50m"),
		c(DefaultResources, "spec.containers[1].resources.limits[memory]", "32Mi"),
	}
	xcomSize := c(EphemeralStorage, "spec.volumes[0].emptyDir.sizeLimit", "1Gi")
	cat := func(parts ...[]Change) []Change {
		var out []Change
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	tests := []struct {
		name, fixture, rules string
		want                 []Change
		wantRes              []corev1.ResourceRequirements
	}{
		{"defaults, basic", fixtures[0], "{}\n", cat(baseDefaults, []Change{envFrom}),
			[]corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")}},
		{"defaults, xcom sidecar", fixtures[1], "{}\n", cat(sidecarDefaults, []Change{xcomSize, envFrom}),
			[]corev1.ResourceRequirements{rr("cpu=500m,memory=1Gi", "cpu=1,memory=2Gi"), rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi")}},
		{"rich policy, basic", fixtures[0], richRules, cat(baseDefaults, []Change{envFrom}, placement),
			[]corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")}},
		{"rich policy, xcom sidecar", fixtures[1], richRules, cat(sidecarDefaults, []Change{
			c(RequestsEqualLimits, "spec.containers[0].resources.requests[cpu]", "1"),
			c(RequestsEqualLimits, "spec.containers[0].resources.requests[memory]", "2Gi"),
			c(RequestsEqualLimits, "spec.containers[1].resources.requests[cpu]", "50m"),
			c(RequestsEqualLimits, "spec.containers[1].resources.requests[memory]", "32Mi"),
			xcomSize, envFrom,
		}, placement),
			[]corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"), rr("cpu=50m,memory=32Mi", "cpu=50m,memory=32Mi")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := rulesFor(t, tt.rules)
			pod := loadFixture(t, tt.fixture)
			labels := pod.DeepCopy().Labels
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			for i, c := range pod.Spec.Containers {
				assertResources(t, c.Name, c.Resources, tt.wantRes[i])
			}
			if !reflect.DeepEqual(pod.Labels, labels) {
				t.Errorf("KPO's labels changed: %v", pod.Labels)
			}
			// Idempotent: a second pass (reinvocationPolicy: IfNeeded)
			// changes nothing.
			again := pod.DeepCopy()
			assertChanges(t, rs.Mutate(again, Facts{}), nil)
			if !reflect.DeepEqual(again, pod) {
				t.Errorf("the second pass changed the pod")
			}
			// The mutated pod passes validation.
			facts := Facts{Images: map[string]ImageFacts{}}
			for _, img := range Images(pod) {
				facts.Images[img] = ImageFacts{Platforms: []Platform{{OS: "linux", Architecture: "amd64"}}}
			}
			assertViolations(t, rs.Validate(pod, facts), nil)
		})
	}
}

// Without the mutating pass (say the webhook was skipped), the validating
// pass refuses the fixture with every reason at once.
func TestValidateUnmutatedFixture(t *testing.T) {
	rs := rulesFor(t, richRules)
	pod := loadFixture(t, fixtures[1])
	v := func(rule RuleID, subject, path, msg, fix string) Violation {
		return Violation{Rule: rule, Mode: Enforce, Subject: subject, Path: path, Message: msg, Fix: fix}
	}
	got := rs.Validate(pod, Facts{})
	want := []Violation{
		v(MaxResources, `container "airflow-xcom-sidecar"`, "spec.containers[1].resources.limits[cpu]",
			"no cpu limit is set, so it could use more than the maximum 2 per container", "set a cpu limit of at most 2 in container_resources"),
		v(MaxResources, `container "airflow-xcom-sidecar"`, "spec.containers[1].resources.limits[memory]",
			"no memory limit is set, so it could use more than the maximum 4Gi per container", "set a memory limit of at most 4Gi in container_resources"),
		v(MaxResources, "pod", "spec.containers[*].resources.limits[cpu]",
			"no cpu limit is set, so it could use more than the maximum 3 per pod (all containers together)", "set a cpu limit of at most 3 in container_resources"),
		v(MaxResources, "pod", "spec.containers[*].resources.limits[memory]",
			"no memory limit is set, so it could use more than the maximum 6Gi per pod (all containers together)", "set a memory limit of at most 6Gi in container_resources"),
		v(EphemeralStorage, `volume "xcom"`, "spec.volumes[0].emptyDir.sizeLimit",
			"no sizeLimit is set; the maximum is 1Gi", "set sizeLimit to at most 1Gi"),
		v(NodePool, "pod", "spec.nodeSelector[pool]", `is not pinned to queue "default"'s node pool (pool=general)`,
			"create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"),
		v(NodePool, "pod", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
			`is not pinned to queue "default"'s node pool (pool=general): its required node affinity lacks kubernetes.io/arch In amd64`,
			"create the pod through kpoguard's mutating webhook (queue expression 0)"),
	}
	assertViolations(t, got, want)
	msg := DenialMessage(pod.Name, Denials(got))
	wantMsg := `pod "train-model-p8d2m0zr" is forbidden by kpoguard: 7 violations:`
	for _, x := range want {
		wantMsg += "\n" + x.String()
	}
	if msg != wantMsg {
		t.Errorf("DenialMessage:\n%s\nwant:\n%s", msg, wantMsg)
	}
}

// Mutate and Validate read only the pod and the facts: the rule set is not
// changed by use.
func TestRuleSetNotChangedByUse(t *testing.T) {
	rs := rulesFor(t, richRules)
	before := *rs
	snapshot := fmtList(rs.DefaultResources.Default.Limits) + fmtList(rs.MaxResources.Pod)
	for _, name := range fixtures {
		pod := loadFixture(t, name)
		rs.Mutate(pod, Facts{})
		rs.Validate(pod, Facts{})
	}
	pod := loadFixture(t, fixtures[1])
	pod.Spec.Affinity = requiredAffinity(term(), term())
	rs.Mutate(pod, Facts{})
	pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0] = "mutated"
	pod.Spec.Tolerations[0].Value = "mutated"
	if !reflect.DeepEqual(*rs, before) || snapshot != fmtList(rs.DefaultResources.Default.Limits)+fmtList(rs.MaxResources.Pod) {
		t.Errorf("the rule set changed: %+v", rs.NodePool.Queues)
	}
	if rs.NodePool.Queues["default"].MatchExpressions[0].Values[0] != "amd64" {
		t.Errorf("queue expressions alias the pod: %v", rs.NodePool.Queues["default"].MatchExpressions)
	}
	if rs.NodePool.Queues["default"].Tolerations[0].Value != "airflow" {
		t.Errorf("queue tolerations alias the pod: %v", rs.NodePool.Queues["default"].Tolerations)
	}
}

// The rule table is the one list of rules: every section of spec.rules
// has exactly one entry, whose mode is that section's config's mode.
func TestRuleTableCoversEverySection(t *testing.T) {
	spec, set := reflect.TypeFor[RulesSpec](), reflect.TypeFor[RuleSet]()
	if spec.NumField() != len(ruleTable) || set.NumField() != len(ruleTable) {
		t.Fatalf("RulesSpec has %d sections and RuleSet %d configs, the rule table %d entries", spec.NumField(), set.NumField(), len(ruleTable))
	}
	for i := range spec.NumField() {
		f := spec.Field(i)
		section, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		n := 0
		for _, r := range ruleTable {
			if r.section != section {
				continue
			}
			n++
			// Set the mode of the config of the same name; the entry
			// must read it there.
			rs := &RuleSet{}
			cfg := reflect.ValueOf(rs).Elem().FieldByName(f.Name)
			if !cfg.IsValid() || !cfg.FieldByName("Mode").IsValid() {
				t.Fatalf("RuleSet has no %s config with a Mode", f.Name)
			}
			mode := cfg.FieldByName("Mode")
			mode.SetString("sentinel")
			if got := *r.mode(rs); got != "sentinel" {
				t.Errorf("rule %s (section %s) reads its mode elsewhere than RuleSet.%s.Mode", r.id, section, f.Name)
			}
			if r.compile == nil || (r.mutate == nil && r.validate == nil) {
				t.Errorf("rule %s has no compile step, or neither mutates nor validates", r.id)
			}
		}
		if n != 1 {
			t.Errorf("section %q has %d rule table entries, want 1", section, n)
		}
	}
}
