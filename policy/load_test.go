package policy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestLoadDefaults(t *testing.T) {
	for name, text := range map[string]string{
		"no spec":           "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\n",
		"empty rules":       docHeader + "spec:\n  rules: {}\n",
		"null rules":        docHeader + "spec:\n  rules: null\n",
		"empty rule blocks": doc("defaultResources: {}\nrequestsEqualLimits: {}\nmaxResources: {}\nnoPersistentVolumes: {}\nephemeralStorage: {}\nenvSecrets: {}\nserviceAccount: {}\nimagePullSecrets: {}\nnodePool: {}\nimageArchitecture: {}\n"),
		"JSON":              `{"apiVersion": "kpoguard.io/v1alpha1", "kind": "PodPolicy", "spec": {}}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, text)
			rs, err := p.RulesFor(Namespace{Name: "anything"})
			if err != nil {
				t.Fatal(err)
			}
			oneGi := resource.MustParse("1Gi")
			want := &RuleSet{
				DefaultResources: DefaultResourcesConfig{
					Mode:    Enforce,
					Default: rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"),
					Containers: map[string]corev1.ResourceRequirements{
						XComSidecar: rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi"),
					},
				},
				RequestsEqualLimits: RequestsEqualLimitsConfig{Mode: Off, Resources: []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}},
				MaxResources:        MaxResourcesConfig{Mode: Enforce},
				NoPersistentVolumes: NoPersistentVolumesConfig{Mode: Enforce, AllowHostPath: false},
				EphemeralStorage:    EphemeralStorageConfig{Mode: Enforce, AllowEmptyDir: false, DefaultSizeLimit: &oneGi},
				EnvSecrets:          EnvSecretsConfig{Mode: Enforce, SecretName: "env-secrets", Containers: []string{"base"}},
				ServiceAccount:      ServiceAccountConfig{Mode: Enforce, Allowed: []string{"default"}},
				ImagePullSecrets:    ImagePullSecretsConfig{Mode: Enforce},
				NodePool: NodePoolConfig{Mode: Enforce, Parent: ParentConfig{Source: ParentOff, OnConflict: ConflictDeny,
					Fallbacks: []Fallback{FallbackDeny}}},
				ImageArchitecture: ImageArchitectureConfig{Mode: Enforce, Architectures: []string{"amd64"}, OS: "linux", OnLookupFailure: AllowOnLookupFailure, LookupTimeout: 2 * time.Second},
			}
			assertSemantic(t, "defaults", rs, want)
			// Exact text of the defaults too (semantic equality ignores formats).
			assertResources(t, "default size", rs.DefaultResources.Default, rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"))
			assertResources(t, "xcom sidecar", rs.DefaultResources.Containers[XComSidecar], rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi"))
			if got := rs.EphemeralStorage.DefaultSizeLimit.String(); got != "1Gi" {
				t.Errorf("default sizeLimit = %s, want 1Gi", got)
			}
			for _, id := range RuleIDs() {
				want := Enforce
				if id == RequestsEqualLimits {
					want = Off
				}
				if got := rs.Mode(id); got != want {
					t.Errorf("Mode(%s) = %s, want %s", id, got, want)
				}
			}
		})
	}
}

func TestLoadNameAndHash(t *testing.T) {
	p := mustLoad(t, doc("serviceAccount: {allowed: [a]}\n"))
	if p.Name() != "test" {
		t.Errorf("Name() = %q, want test", p.Name())
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(p.Hash()) {
		t.Errorf("Hash() = %q, want 16 hex digits", p.Hash())
	}
	if mustLoad(t, "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\n").Name() != "" {
		t.Error("a policy without metadata.name has a name")
	}
}

func TestLoadHash(t *testing.T) {
	const original = `apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
metadata:
  name: platform
spec:
  rules:
    defaultResources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {cpu: "1", memory: 2Gi}
    serviceAccount:
      allowed: [default, airflow-task]
    nodePool:
      defaultQueue: default
      queues:
        default: {nodeSelector: {pool: general}}
  overrides:
  - name: gold
    namespaceSelector: {matchLabels: {tier: gold}}
    rules:
      maxResources: {container: {cpu: 8}}
`
	same := map[string]string{
		"comments and block style": `# platform policy
apiVersion: kpoguard.io/v1alpha1   # version
kind: PodPolicy
metadata: {name: platform}
spec:
  # overrides before rules
  overrides:
    - rules:
        maxResources:
          container:
            cpu: 8
      namespaceSelector:
        matchLabels:
          tier: gold
      name: gold
  rules:
    nodePool:
      queues:
        default:
          nodeSelector:
            pool: "general"
      defaultQueue: 'default'
    serviceAccount:
      allowed:
        - default
        - airflow-task
    defaultResources:
      limits:
        memory: 2Gi
        cpu: 1
      requests:
        memory: "1Gi"
        cpu: "500m"
`,
		"JSON": `{"kind":"PodPolicy","apiVersion":"kpoguard.io/v1alpha1","metadata":{"name":"platform"},
"spec":{"rules":{"defaultResources":{"requests":{"cpu":"500m","memory":"1Gi"},"limits":{"cpu":1,"memory":"2Gi"}},
"serviceAccount":{"allowed":["default","airflow-task"]},"nodePool":{"defaultQueue":"default","queues":{"default":{"nodeSelector":{"pool":"general"}}}}},
"overrides":[{"name":"gold","namespaceSelector":{"matchLabels":{"tier":"gold"}},"rules":{"maxResources":{"container":{"cpu":"8"}}}}]}}`,
	}
	different := map[string]string{
		"a quantity":     strings.Replace(original, "cpu: 500m", "cpu: 250m", 1),
		"a list item":    strings.Replace(original, "airflow-task", "airflow-batch", 1),
		"a list order":   strings.Replace(original, "[default, airflow-task]", "[airflow-task, default]", 1),
		"the name":       strings.Replace(original, "name: platform", "name: platform-2", 1),
		"an override":    strings.Replace(original, "cpu: 8", "cpu: 16", 1),
		"a selector":     strings.Replace(original, "tier: gold", "tier: silver", 1),
		"a queue":        strings.Replace(original, "pool: general", "pool: other", 1),
		"an added field": strings.Replace(original, "    serviceAccount:\n", "    envSecrets: {secretName: other}\n    serviceAccount:\n", 1),
	}
	want := mustLoad(t, original).Hash()
	if again := mustLoad(t, original).Hash(); again != want {
		t.Fatalf("hash not deterministic: %s then %s", want, again)
	}
	for name, text := range same {
		if got := mustLoad(t, text).Hash(); got != want {
			t.Errorf("%s: hash %s, want %s (same content)", name, got, want)
		}
	}
	seen := map[string]string{want: "original"}
	for name, text := range different {
		got := mustLoad(t, text).Hash()
		if other, dup := seen[got]; dup {
			t.Errorf("%s: hash %s equals that of %s", name, got, other)
		}
		seen[got] = name
	}
}

// Quantities may be written as YAML numbers, the way the Kubernetes Python
// client writes them.
func TestLoadQuantitiesAsNumbers(t *testing.T) {
	rs := rulesFor(t, `defaultResources:
  requests: {cpu: 0.5, memory: 536870912}
  limits: {cpu: 2, memory: 1e9}
  containers:
    helper: {requests: {cpu: .25}}
maxResources:
  container: {cpu: 4, memory: 4e9}
  pod: {cpu: 6.5}
ephemeralStorage:
  defaultSizeLimit: 1073741824
  maxSizeLimit: 2147483648
`)
	check := func(what string, got *resource.Quantity, want string) {
		t.Helper()
		if got == nil {
			t.Errorf("%s: missing", what)
			return
		}
		if got.String() != want {
			t.Errorf("%s = %s, want %s", what, got.String(), want)
		}
	}
	get := func(l corev1.ResourceList, name corev1.ResourceName) *resource.Quantity {
		if q, ok := l[name]; ok {
			return &q
		}
		return nil
	}
	check("requests.cpu", get(rs.DefaultResources.Default.Requests, "cpu"), "500m")
	check("requests.memory", get(rs.DefaultResources.Default.Requests, "memory"), "536870912")
	check("limits.cpu", get(rs.DefaultResources.Default.Limits, "cpu"), "2")
	check("limits.memory", get(rs.DefaultResources.Default.Limits, "memory"), "1G")
	check("helper requests.cpu", get(rs.DefaultResources.Containers["helper"].Requests, "cpu"), "250m")
	check("max container cpu", get(rs.MaxResources.Container, "cpu"), "4")
	check("max container memory", get(rs.MaxResources.Container, "memory"), "4G")
	check("max pod cpu", get(rs.MaxResources.Pod, "cpu"), "6500m")
	check("defaultSizeLimit", rs.EphemeralStorage.DefaultSizeLimit, "1073741824")
	check("maxSizeLimit", rs.EphemeralStorage.MaxSizeLimit, "2147483648")
}

// fieldErr is an expected field error; an empty detail is not compared
// (it comes from apimachinery's validation helpers).
type fieldErr struct {
	field  string
	typ    field.ErrorType
	detail string
}

func loadErrors(t *testing.T, text string) field.ErrorList {
	t.Helper()
	p, err := Load([]byte(text))
	if err == nil {
		t.Fatalf("Load succeeded (policy %q), want an error", p.Name())
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Load error is %T (%v), want *LoadError", err, err)
	}
	if p != nil {
		t.Errorf("Load returned a policy with an error")
	}
	return le.Errs
}

func assertFieldErrors(t *testing.T, got field.ErrorList, want []fieldErr) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Field == want[i].field && got[i].Type == want[i].typ &&
			(want[i].detail == "" || got[i].Detail == want[i].detail)
	}
	if !ok {
		var g, w strings.Builder
		for _, e := range got {
			g.WriteString("\n  " + e.Field + " | " + string(e.Type) + " | " + e.Detail)
		}
		for _, e := range want {
			w.WriteString("\n  " + e.field + " | " + string(e.typ) + " | " + e.detail)
		}
		t.Errorf("errors:\n got:%s\nwant:%s", g.String(), w.String())
	}
}

const (
	invalid     = field.ErrorTypeInvalid
	required    = field.ErrorTypeRequired
	unsupported = field.ErrorTypeNotSupported
	duplicate   = field.ErrorTypeDuplicate
)

// Every problem is reported at once, each with its field path.
func TestLoadReportsEveryError(t *testing.T) {
	const text = `apiVersion: kpoguard.io/v1alpha1
kind: PodPolicy
spec:
  scope:
    taskPodSelector:
      matchExpressions: [{key: kubernetes_pod_operator, operator: Bogus}]
  rules:
    defaultResources:
      mode: strict
      requests: {cpu: 2, memory: lots}
      limits: {cpu: 1, "bad name!": 1}
      containers:
        helper: {requests: {cpu: "-1"}}
    requestsEqualLimits:
      resources: [cpu, "Not Valid!"]
    maxResources:
      container: {cpu: 500m}
    ephemeralStorage:
      defaultSizeLimit: 2Gi
      maxSizeLimit: 1Gi
      allowedQueues: [nope]
    envSecrets:
      secretName: Env_Secrets
    serviceAccount:
      allowed: [default, "Bad SA"]
    imagePullSecrets:
      registries:
      - {prefix: "https://registry.example.com", secrets: [ok]}
      - {prefix: "registry.example.com/", secrets: []}
      - {prefix: "", secrets: [Bad_Secret]}
    nodePool:
      mode: always
      defaultQueue: missing
      queueLabel: "bad label!"
      queues:
        empty: {}
        bad:
          nodeSelector: {"bad key!": x}
          tolerations: [{key: a, operator: Exists, value: b}]
          matchExpressions:
          - {key: a, operator: In}
          - {key: b, operator: Exists, values: [x]}
          - {key: c, operator: Near, values: ["1"]}
    imageArchitecture:
      architectures: []
      onLookupFailure: ignore
  overrides:
  - name: nothing
    rules: {}
  - name: bad-selector
    namespaceSelector: {matchLabels: {"bad key!": x}}
    rules: {}
`
	const registryDetail = `must be a registry host with an optional repository path, such as "registry.example.com/team-a"`
	assertFieldErrors(t, loadErrors(t, text), []fieldErr{
		{"spec.scope.taskPodSelector", invalid, `"Bogus" is not a valid label selector operator`},
		{"spec.rules.defaultResources.mode", unsupported, ""},
		{"spec.rules.defaultResources.requests[memory]", invalid, ""},
		{"spec.rules.defaultResources.limits[bad name!]", invalid, ""},
		{"spec.rules.defaultResources.requests[cpu]", invalid, "must not exceed the limit 1"},
		{"spec.rules.defaultResources.containers[helper].requests[cpu]", invalid, "must not be negative"},
		{"spec.rules.requestsEqualLimits.resources[1]", invalid, ""},
		{"spec.rules.defaultResources.requests[cpu]", invalid, "default exceeds the maximum 500m set at spec.rules.maxResources.container[cpu]"},
		{"spec.rules.defaultResources.limits[cpu]", invalid, "default exceeds the maximum 500m set at spec.rules.maxResources.container[cpu]"},
		{"spec.rules.ephemeralStorage.defaultSizeLimit", invalid, "must not exceed maxSizeLimit 1Gi"},
		{"spec.rules.envSecrets.secretName", invalid, ""},
		{"spec.rules.serviceAccount.allowed[1]", invalid, ""},
		{"spec.rules.imagePullSecrets.registries[0].prefix", invalid, registryDetail},
		{"spec.rules.imagePullSecrets.registries[1].prefix", invalid, registryDetail},
		{"spec.rules.imagePullSecrets.registries[1].secrets", required, "name at least one pull secret"},
		{"spec.rules.imagePullSecrets.registries[2].prefix", invalid, registryDetail},
		{"spec.rules.imagePullSecrets.registries[2].secrets[0]", invalid, ""},
		{"spec.rules.nodePool.mode", unsupported, ""},
		{"spec.rules.nodePool.defaultQueue", invalid, "must name one of the queues"},
		{"spec.rules.nodePool.queueLabel", invalid, ""},
		{"spec.rules.nodePool.queues[bad].nodeSelector[bad key!]", invalid, ""},
		{"spec.rules.nodePool.queues[bad].tolerations[0].value", invalid, "must be empty when operator is Exists"},
		{"spec.rules.nodePool.queues[bad].matchExpressions[0].values", required, "In and NotIn need values"},
		{"spec.rules.nodePool.queues[bad].matchExpressions[1].values", invalid, "Exists and DoesNotExist take no values"},
		{"spec.rules.nodePool.queues[bad].matchExpressions[2].operator", unsupported, ""},
		{"spec.rules.nodePool.queues[empty]", required, "a queue needs a nodeSelector, tolerations or matchExpressions"},
		{"spec.rules.ephemeralStorage.allowedQueues[0]", invalid, "must name one of nodePool.queues"},
		{"spec.rules.imageArchitecture.architectures", required, "name at least one architecture, such as amd64"},
		{"spec.rules.imageArchitecture.onLookupFailure", unsupported, ""},
		{"spec.overrides[0]", required, "an override needs namespaces, a namespaceSelector, or both"},
		{"spec.overrides[1].namespaceSelector", invalid, ""},
	})
}

func TestLoadErrorMessage(t *testing.T) {
	_, err := Load([]byte("apiVersion: v1\nkind: PodPolicy\nspec:\n  rules:\n    serviceAccount: {mode: sometimes}\n"))
	want := `invalid policy: 2 error(s):
  - apiVersion: Unsupported value: "v1": supported values: "kpoguard.io/v1alpha1"
  - spec.rules.serviceAccount.mode: Unsupported value: "sometimes": supported values: "off", "audit", "warn", "enforce"`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoadFieldErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []fieldErr
	}{
		{
			name: "apiVersion and kind are checked",
			text: "apiVersion: kpoguard.io/v1\nkind: Policy\n",
			want: []fieldErr{{"apiVersion", unsupported, ""}, {"kind", unsupported, ""}},
		},
		{
			name: "apiVersion and kind are required",
			text: "spec: {}\n",
			want: []fieldErr{{"apiVersion", unsupported, ""}, {"kind", unsupported, ""}},
		},
		{
			name: "an invalid task pod selector",
			text: docHeader + "spec:\n  scope:\n    taskPodSelector: {matchLabels: {\"a b\": c}}\n",
			want: []fieldErr{{"spec.scope.taskPodSelector", invalid, ""}},
		},
		{
			name: "an override needs namespaces or a selector",
			text: docHeader + "spec:\n  overrides:\n  - name: x\n    namespaces: []\n    rules: {}\n",
			want: []fieldErr{{"spec.overrides[0]", required, "an override needs namespaces, a namespaceSelector, or both"}},
		},
		{
			name: "an invalid namespace selector operator",
			text: docHeader + "spec:\n  overrides:\n  - namespaceSelector: {matchExpressions: [{key: team, operator: Near, values: [a]}]}\n    rules: {}\n",
			want: []fieldErr{{"spec.overrides[0].namespaceSelector", invalid, `"Near" is not a valid label selector operator`}},
		},
		{
			name: "an invalid namespace selector value",
			text: docHeader + "spec:\n  overrides:\n  - namespaceSelector: {matchLabels: {team: \"not a value!\"}}\n    rules: {}\n",
			want: []fieldErr{{"spec.overrides[0].namespaceSelector", invalid, ""}},
		},
		{
			name: "an override is checked on its own, with its path",
			text: docHeader + "spec:\n  overrides:\n  - namespaces: [a]\n    rules:\n      envSecrets: {mode: loud, secretName: Bad}\n",
			want: []fieldErr{
				{"spec.overrides[0].rules.envSecrets.mode", unsupported, ""},
				{"spec.overrides[0].rules.envSecrets.secretName", invalid, ""},
			},
		},
		{
			name: "an override's default above the base maximum",
			text: doc("maxResources: {container: {cpu: 2}}\n") +
				"  overrides:\n  - namespaces: [a]\n    rules:\n      defaultResources: {requests: {cpu: 4}, limits: {cpu: 4}}\n",
			want: []fieldErr{
				{"spec.overrides[0].rules.defaultResources.requests[cpu]", invalid, "default exceeds the maximum 2 set at spec.overrides[0].rules.maxResources.container[cpu]"},
				{"spec.overrides[0].rules.defaultResources.limits[cpu]", invalid, "default exceeds the maximum 2 set at spec.overrides[0].rules.maxResources.container[cpu]"},
			},
		},
		{
			name: "an override's queue list naming a queue the base lacks",
			text: doc("nodePool:\n  queues: {a: {nodeSelector: {pool: a}}}\n") +
				"  overrides:\n  - namespaces: [x]\n    rules:\n      ephemeralStorage: {allowedQueues: [a, b]}\n",
			want: []fieldErr{{"spec.overrides[0].rules.ephemeralStorage.allowedQueues[1]", invalid, "must name one of nodePool.queues"}},
		},
		{
			name: "the built-in default above a maximum",
			text: doc("maxResources: {pod: {memory: 1Gi}}\n"),
			want: []fieldErr{
				{"spec.rules.defaultResources.requests[memory]", invalid, "default exceeds the maximum 1Gi set at spec.rules.maxResources.pod[memory]"},
				{"spec.rules.defaultResources.limits[memory]", invalid, "default exceeds the maximum 1Gi set at spec.rules.maxResources.pod[memory]"},
			},
		},
		{
			name: "the xcom sidecar's built-in default above a maximum",
			text: doc("defaultResources: {requests: {cpu: 10m}, limits: {cpu: 10m}}\nmaxResources: {container: {cpu: 20m}}\n"),
			want: []fieldErr{
				{"spec.rules.defaultResources.containers[airflow-xcom-sidecar].limits[cpu]", invalid, "default exceeds the maximum 20m set at spec.rules.maxResources.container[cpu]"},
			},
		},
		{
			name: "a container default above its limit",
			text: doc("defaultResources:\n  containers:\n    helper: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}\n"),
			want: []fieldErr{{"spec.rules.defaultResources.containers[helper].requests[memory]", invalid, "must not exceed the limit 1Gi"}},
		},
		{
			name: "negative and malformed quantities",
			text: doc("maxResources: {container: {cpu: -1, memory: 1XB}}\nephemeralStorage: {maxSizeLimit: big, defaultSizeLimit: -5Gi}\n"),
			want: []fieldErr{
				{"spec.rules.maxResources.container[cpu]", invalid, "must not be negative"},
				{"spec.rules.maxResources.container[memory]", invalid, ""},
				{"spec.rules.ephemeralStorage.defaultSizeLimit", invalid, "must not be negative"},
				{"spec.rules.ephemeralStorage.maxSizeLimit", invalid, ""},
			},
		},
		{
			name: "a default sizeLimit above the maximum, including the built-in one",
			text: doc("ephemeralStorage: {maxSizeLimit: 512Mi}\n"),
			want: []fieldErr{{"spec.rules.ephemeralStorage.defaultSizeLimit", invalid, "must not exceed maxSizeLimit 512Mi"}},
		},
		{
			name: "an empty architecture list",
			text: doc("imageArchitecture: {architectures: []}\n"),
			want: []fieldErr{{"spec.rules.imageArchitecture.architectures", required, "name at least one architecture, such as amd64"}},
		},
		{
			name: "lookup timeouts that are not durations or out of range",
			text: doc("imageArchitecture: {lookupTimeout: soon}\n"),
			want: []fieldErr{{"spec.rules.imageArchitecture.lookupTimeout", invalid, "must be a duration such as 2s or 500ms"}},
		},
		{
			name: "a lookup timeout above the maximum",
			text: doc("imageArchitecture: {lookupTimeout: 30s}\n"),
			want: []fieldErr{{"spec.rules.imageArchitecture.lookupTimeout", invalid, "must be between 100ms and 10s"}},
		},
		{
			name: "trusted images that are patterns kpoguard does not match",
			text: doc("imageArchitecture: {trustedImages: [\"registry.internal/platform/*\", \"alpine\", \"*\", \"team/*\", \"ghcr.io/org/app:1.0@sha256:abc\", \"nginx:1.25\", \"ghcr.io/org/app:2\", \"registry.internal:5000/app\"]}\n"),
			want: []fieldErr{
				{"spec.rules.imageArchitecture.trustedImages[2]", invalid, ""},
				{"spec.rules.imageArchitecture.trustedImages[3]", invalid, ""},
				{"spec.rules.imageArchitecture.trustedImages[4]", invalid, ""},
				{"spec.rules.imageArchitecture.trustedImages[5]", invalid, ""},
				{"spec.rules.imageArchitecture.trustedImages[6]", invalid, ""},
			},
		},
		{
			name: "registries without names, with reserved or duplicate names, bad hosts and mirrors",
			text: doc(`imageArchitecture:
      registries:
      - {host: docker.io}
      - {name: other, host: quay.io}
      - {name: hub, host: index.docker.io}
      - {name: hub, host: "https://ghcr.io"}
      - {name: internal, host: registry.internal, mirror: "http://mirror"}
      - {name: upper, host: Registry.Example.com, mirror: "Mirror.internal/Hub"}
      - {name: slashes, host: gcr.io, mirror: "m//x"}
      - {name: fine, host: "10.0.0.7:5000", mirror: "mirror.internal:5000/docker-hub/cache"}
`),
			want: []fieldErr{
				{"spec.rules.imageArchitecture.registries[0].name", required, ""},
				{"spec.rules.imageArchitecture.registries[1].name", invalid, ""},
				{"spec.rules.imageArchitecture.registries[2].host", duplicate, ""},
				{"spec.rules.imageArchitecture.registries[3].name", duplicate, ""},
				{"spec.rules.imageArchitecture.registries[3].host", invalid, ""},
				{"spec.rules.imageArchitecture.registries[4].mirror", invalid, ""},
				{"spec.rules.imageArchitecture.registries[5].host", invalid, ""},
				{"spec.rules.imageArchitecture.registries[5].mirror", invalid, ""},
				{"spec.rules.imageArchitecture.registries[6].mirror", invalid, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertFieldErrors(t, loadErrors(t, tt.text), tt.want)
		})
	}
}

// Every rule's mode accepts the four modes and nothing else.
func TestLoadModes(t *testing.T) {
	keys := map[RuleID]string{
		DefaultResources: "defaultResources", RequestsEqualLimits: "requestsEqualLimits", MaxResources: "maxResources",
		NoPersistentVolumes: "noPersistentVolumes", EphemeralStorage: "ephemeralStorage", EnvSecrets: "envSecrets",
		ServiceAccount: "serviceAccount", ImagePullSecrets: "imagePullSecrets", NodePool: "nodePool", ImageArchitecture: "imageArchitecture",
	}
	if len(keys) != len(RuleIDs()) {
		t.Fatalf("test covers %d rules, the table has %d", len(keys), len(RuleIDs()))
	}
	for _, id := range RuleIDs() {
		key := keys[id]
		for _, mode := range []Mode{Off, Audit, Warn, Enforce} {
			rs := rulesFor(t, key+": {mode: \""+string(mode)+"\"}\n")
			if got := rs.Mode(id); got != mode {
				t.Errorf("%s: mode %s loaded as %s", key, mode, got)
			}
		}
		for _, bad := range []string{"Enforce", "deny", "dry-run", "true"} {
			assertFieldErrors(t, loadErrors(t, doc(key+": {mode: \""+bad+"\"}\n")), []fieldErr{
				{"spec.rules." + key + ".mode", unsupported, `supported values: "off", "audit", "warn", "enforce"`},
			})
		}
	}
}

// YAML 1.1 reads an unquoted off as false, so the natural way to write the
// mode fails to load.
func TestLoadUnquotedModeOff(t *testing.T) {
	p, err := Load([]byte(doc("requestsEqualLimits: {mode: enforce}\nnoPersistentVolumes:\n  mode: off\n")))
	if err != nil {
		t.Fatal("regression: `mode: off` (unquoted) is YAML 1.1 false and fails to load: " + err.Error() +
			"; accept JSON false as off in a Mode.UnmarshalJSON, or report it as a *LoadError telling the author to quote \"off\"")
	}
	rs, err := p.RulesFor(Namespace{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if rs.NoPersistentVolumes.Mode != Off {
		t.Errorf("mode = %q, want off", rs.NoPersistentVolumes.Mode)
	}
}

func TestLoadUnknownFields(t *testing.T) {
	tests := []struct {
		name, text, path string
	}{
		{"top level", docHeader + "spce: {}\n", "spce"},
		{"misspelt rule", doc("defaultResource: {}\n"), "spec.rules.defaultResource"},
		{"misspelt rule field", doc("serviceAccount: {allow: [a]}\n"), "spec.rules.serviceAccount.allow"},
		{"case matters", doc("ServiceAccount: {}\n"), "spec.rules.ServiceAccount"},
		{"inside a queue", doc("nodePool:\n  queues:\n    gpu: {nodeselector: {a: b}, tolerations: [{key: a, operator: Exists}]}\n"), "spec.rules.nodePool.queues.gpu.nodeselector"},
		{"inside a toleration", doc("nodePool:\n  queues:\n    gpu: {tolerations: [{key: a, operator: Exists, efect: NoSchedule}]}\n"), "spec.rules.nodePool.queues.gpu.tolerations[0].efect"},
		{"in an override", docHeader + "spec:\n  overrides:\n  - namespaces: [a]\n    rules: {maxResource: {}}\n", "spec.overrides[0].rules.maxResource"},
		{"in an override's header", docHeader + "spec:\n  overrides:\n  - namespace: [a]\n    namespaces: [a]\n    rules: {}\n", "spec.overrides[0].namespace"},
		{"in the scope", docHeader + "spec:\n  scope: {exemptUser: [a]}\n", "spec.scope.exemptUser"},
		{"in metadata", "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nmetadata: {name: a, namespace: b}\n", "metadata.namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := loadErrors(t, tt.text)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			// The path is in the message today ...
			if want := `unknown field "` + tt.path + `"`; !strings.Contains(errs[0].Error(), want) {
				t.Errorf("error %q does not contain %q", errs[0].Error(), want)
			}
		})
	}
	t.Run("the path is the error's field", func(t *testing.T) {
		errs := loadErrors(t, doc("defaultResource: {}\n"))
		if errs[0].Field != "spec.rules.defaultResource" {
			t.Fatalf("regression: load.go:78-80 reports unknown fields as field.Invalid(field.NewPath(\"\"), nil, ...): Field is %q and the "+
				"message reads %q; use the strict error's FieldPath() (sigs.k8s.io/json FieldError) as the path", errs[0].Field, errs[0].Error())
		}
	})
}

// A value of the wrong type is a validation error like any other.
func TestLoadTypeErrors(t *testing.T) {
	for name, text := range map[string]string{
		"a boolean quantity": doc("defaultResources: {requests: {cpu: true}}\n"),
		"a numeric mode":     doc("serviceAccount: {mode: 5}\n"),
		"a scalar list":      doc("serviceAccount: {allowed: default}\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load([]byte(text))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("regression: load.go:73-76 returns type errors as a plain error without a field path list (%v); "+
					"Load's doc promises a *LoadError for everything but syntax errors", err)
			}
		})
	}
}

func TestLoadNotAPolicy(t *testing.T) {
	for name, text := range map[string]string{
		"empty":          "",
		"blank":          "  \n\n",
		"comment only":   "# nothing\n",
		"null":           "null\n",
		"bad YAML":       "apiVersion: [\n",
		"bad indent":     "apiVersion: a\n  kind: b\n",
		"a list":         "- a\n- b\n",
		"a string":       "policy\n",
		"tabs":           "apiVersion:\tkpoguard.io/v1alpha1\n\tkind: PodPolicy\n",
		"spec is a list": "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: [1]\n",
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Load([]byte(text))
			if err == nil || p != nil {
				t.Fatalf("Load = %v, %v; want an error", p, err)
			}
		})
	}
	for _, text := range []string{"", "null\n", "# nothing\n"} {
		if _, err := Load([]byte(text)); err == nil || err.Error() != "policy is empty" {
			t.Errorf("Load(%q) error = %v, want \"policy is empty\"", text, err)
		}
	}
}

// Duplicate keys are a misspelling in disguise: the later one silently wins.
func TestLoadDuplicateKeys(t *testing.T) {
	for name, text := range map[string]string{
		"a duplicate rule": doc("serviceAccount: {allowed: [a]}\nserviceAccount: {allowed: [b]}\n"),
		"a duplicate mode": doc("serviceAccount:\n  mode: enforce\n  mode: audit\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Load([]byte(text)); err == nil {
				t.Fatal("regression: load.go:65 uses yaml.YAMLToJSON, which keeps the last of duplicate keys, so strict decoding never sees them; " +
					"use yaml.YAMLToJSONStrict (or kjson's DisallowDuplicateFields on the YAML's own keys)")
			}
		})
	}
}

// Overrides are matched with the raw rules decoded by encoding/json, which
// folds case (and Unicode: "ſ" folds to "s") unlike the strict decoder; a
// document whose two decodings disagree must still give an error, not a
// panic.
func TestLoadCaseFoldedKeysDoNotPanic(t *testing.T) {
	for name, text := range map[string]string{
		"long s in overrides": `{"apiVersion":"kpoguard.io/v1alpha1","kind":"PodPolicy","spec":{"overrides":[{"namespaces":["a"],"rules":{}}],"overrideſ":[]}}`,
		"long s in spec":      "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec:\n  overrides:\n  - namespaces: [a]\nſpec: {overrides: []}\n",
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			panicked := func() (p any) {
				defer func() { p = recover() }()
				_, err = Load([]byte(text))
				return nil
			}()
			if panicked != nil {
				t.Fatalf("regression: Load panics (%v): load.go:114 indexes raw.Spec.Overrides[i], decoded case-insensitively by encoding/json, "+
					"by the index of doc.Spec.Overrides, decoded case-sensitively; decode both with the same decoder (or keep the raw rules "+
					"in OverrideSpec as json.RawMessage), or return the strict errors before using raw", panicked)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Errorf("Load error = %v, want a *LoadError for the unknown field", err)
			}
		})
	}
}

// A quantity such as 1e999999999 parses at once, but comparing it rescales
// it to a billion-digit integer: Load must refuse it, not hang on it. The
// check runs in a child process so that a hang can be killed.
func TestLoadHugeQuantityDoesNotHang(t *testing.T) {
	text := doc("maxResources:\n  container: {cpu: 1e999999999}\n")
	if os.Getenv("KPOGUARD_LOAD_CHILD") == "1" {
		_, err := Load([]byte(text))
		var le *LoadError
		if !errors.As(err, &le) {
			t.Fatalf("Load error = %v, want a *LoadError", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLoadHugeQuantityDoesNotHang$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KPOGUARD_LOAD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("regression: Load hangs on `maxResources: {container: {cpu: 1e999999999}}` (compile.go defaultsWithinMax/requirements call Quantity.Cmp, " +
			"which rescales to a billion-digit integer); bound quantities in compiler.quantity, e.g. with quantities.go's saneQuantity")
	}
	if err != nil {
		t.Errorf("child: %v\n%s", err, out)
	}
}

// An empty list or a null changes behaviour, so it changes the hash.
func TestLoadHashSeesEmptyListsAndNulls(t *testing.T) {
	base := doc("envSecrets: {secretName: env-secrets}\n")
	variants := map[string]string{
		"empty containers list": doc("envSecrets: {secretName: env-secrets, containers: []}\n"),
		"null containers":       doc("envSecrets: {secretName: env-secrets, containers: null}\n"),
	}
	want := mustLoad(t, base).Hash()
	for name, text := range variants {
		if got := mustLoad(t, text).Hash(); got == want {
			t.Errorf("%s: same hash %s as without it", name, got)
		}
	}
}
