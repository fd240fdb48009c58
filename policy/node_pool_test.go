package policy

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const nodePoolRules = "nodePool:\n" +
	"  defaultQueue: default\n" +
	"  queueLabel: kpoguard.io/queue\n" +
	"  queues:\n" +
	"    default:\n" +
	"      nodeSelector: {pool: general}\n" +
	"    gpu:\n" +
	"      nodeSelector: {pool: gpu, zone: a}\n" +
	"      tolerations:\n" +
	"      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n" +
	"      - {key: dedicated, operator: Equal, value: gpu, effect: NoExecute}\n" +
	"      matchExpressions:\n" +
	"      - {key: node.kubernetes.io/instance-type, operator: In, values: [g5.xlarge, g5.2xlarge]}\n" +
	"      - {key: spot, operator: NotIn, values: [\"true\"]}\n" +
	"    arm:\n" +
	"      matchExpressions:\n" +
	"      - {key: kubernetes.io/arch, operator: In, values: [arm64]}\n"

var (
	gpuTaint  = corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	dedicated = corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoExecute}
	instType  = corev1.NodeSelectorRequirement{Key: "node.kubernetes.io/instance-type", Operator: corev1.NodeSelectorOpIn, Values: []string{"g5.xlarge", "g5.2xlarge"}}
	noSpot    = corev1.NodeSelectorRequirement{Key: "spot", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"true"}}
	armArch   = corev1.NodeSelectorRequirement{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}
)

func requiredAffinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
}

func term(exprs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: exprs}
}

func TestNodePoolPlacement(t *testing.T) {
	ch := func(path, value string) Change {
		return Change{Rule: NodePool, Mode: Enforce, Path: path, Value: value}
	}
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	type placement struct {
		nodeSelector map[string]string
		tolerations  []corev1.Toleration
		affinity     *corev1.Affinity
	}
	kpoPod := func(labels map[string]string) *corev1.Pod {
		p := basePod()
		for k, v := range labels {
			p.Labels[k] = v
		}
		p.Spec.NodeSelector = map[string]string{}
		p.Spec.Tolerations = []corev1.Toleration{}
		p.Spec.Affinity = &corev1.Affinity{}
		return p
	}
	gpuLabel := map[string]string{"kpoguard.io/queue": "gpu"}
	gpuChanges := []Change{
		ch("spec.nodeSelector[pool]", "gpu"),
		ch("spec.nodeSelector[zone]", "a"),
		ch("spec.tolerations[0]", "nvidia.com/gpu Exists:NoSchedule"),
		ch("spec.tolerations[1]", "dedicated=gpu:NoExecute"),
		ch(terms+"[0].matchExpressions[0]", "node.kubernetes.io/instance-type In g5.xlarge,g5.2xlarge"),
		ch(terms+"[0].matchExpressions[1]", "spot NotIn true"),
	}
	gpuPlacement := placement{
		nodeSelector: map[string]string{"pool": "gpu", "zone": "a"},
		tolerations:  []corev1.Toleration{gpuTaint, dedicated},
		affinity:     requiredAffinity(term(instType, noSpot)),
	}

	tests := []struct {
		name  string
		rules string
		pod   *corev1.Pod
		facts Facts
		want  []Change
		place placement
	}{
		{
			name:  "the default queue's nodeSelector",
			rules: nodePoolRules,
			pod:   kpoPod(nil),
			want:  []Change{ch("spec.nodeSelector[pool]", "general")},
			place: placement{nodeSelector: map[string]string{"pool": "general"}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "a pod without nodeSelector, tolerations or affinity",
			rules: nodePoolRules,
			pod:   basePod(),
			facts: fromWorker("gpu"),
			want:  gpuChanges,
			place: gpuPlacement,
		},
		{
			name:  "the queue label chooses a queue",
			rules: nodePoolRules,
			pod:   kpoPod(gpuLabel),
			want:  gpuChanges,
			place: gpuPlacement,
		},
		{
			name:  "a trusted fact wins over the queue label",
			rules: nodePoolRules,
			pod:   kpoPod(gpuLabel),
			facts: fromWorker("default"),
			want:  []Change{ch("spec.nodeSelector[pool]", "general")},
			place: placement{nodeSelector: map[string]string{"pool": "general"}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "a queue label naming no queue gets the default queue",
			rules: nodePoolRules,
			pod:   kpoPod(map[string]string{"kpoguard.io/queue": "nope"}),
			want:  []Change{ch("spec.nodeSelector[pool]", "general")},
			place: placement{nodeSelector: map[string]string{"pool": "general"}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "the queue label is ignored when the policy does not name one",
			rules: "nodePool:\n  defaultQueue: a\n  queues:\n    a: {nodeSelector: {pool: a}}\n    b: {nodeSelector: {pool: b}}\n",
			pod:   kpoPod(map[string]string{"kpoguard.io/queue": "b"}),
			want:  []Change{ch("spec.nodeSelector[pool]", "a")},
			place: placement{nodeSelector: map[string]string{"pool": "a"}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "no queue at all: nothing to place",
			rules: "nodePool:\n  queues:\n    a: {nodeSelector: {pool: a}}\n",
			pod:   kpoPod(nil),
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "a trusted fact naming an unknown queue places nothing",
			rules: nodePoolRules,
			pod:   kpoPod(nil),
			facts: fromWorker("elsewhere"),
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
		{
			name:  "existing nodeSelector entries are kept, conflicting ones left for the validator",
			rules: nodePoolRules,
			pod: func() *corev1.Pod {
				p := kpoPod(gpuLabel)
				p.Spec.NodeSelector = map[string]string{"pool": "general", "disk": "ssd"}
				return p
			}(),
			want:  gpuChanges[1:],
			place: placement{nodeSelector: map[string]string{"pool": "general", "zone": "a", "disk": "ssd"}, tolerations: gpuPlacement.tolerations, affinity: gpuPlacement.affinity},
		},
		{
			name:  "tolerations are not duplicated",
			rules: nodePoolRules,
			pod: func() *corev1.Pod {
				p := kpoPod(gpuLabel)
				p.Spec.Tolerations = []corev1.Toleration{
					{Key: "other", Operator: corev1.TolerationOpExists},
					dedicated,
					{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				}
				return p
			}(),
			want: []Change{
				ch("spec.nodeSelector[pool]", "gpu"),
				ch("spec.nodeSelector[zone]", "a"),
				ch("spec.tolerations[3]", "nvidia.com/gpu Exists:NoSchedule"),
				ch(terms+"[0].matchExpressions[0]", "node.kubernetes.io/instance-type In g5.xlarge,g5.2xlarge"),
				ch(terms+"[0].matchExpressions[1]", "spot NotIn true"),
			},
			place: placement{
				nodeSelector: gpuPlacement.nodeSelector,
				tolerations: []corev1.Toleration{
					{Key: "other", Operator: corev1.TolerationOpExists},
					dedicated,
					{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
					gpuTaint,
				},
				affinity: gpuPlacement.affinity,
			},
		},
		{
			name:  "matchExpressions are ANDed into every existing required term",
			rules: "nodePool:\n  defaultQueue: arm\n  queues:\n    arm:\n      matchExpressions:\n      - {key: kubernetes.io/arch, operator: In, values: [arm64]}\n",
			pod: func() *corev1.Pod {
				p := kpoPod(nil)
				p.Spec.Affinity = requiredAffinity(
					term(corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}),
					corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}},
					term(armArch),
				)
				return p
			}(),
			want: []Change{
				ch(terms+"[0].matchExpressions[1]", "kubernetes.io/arch In arm64"),
				ch(terms+"[1].matchExpressions[0]", "kubernetes.io/arch In arm64"),
			},
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: requiredAffinity(
				term(corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}, armArch),
				corev1.NodeSelectorTerm{
					MatchFields:      []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
					MatchExpressions: []corev1.NodeSelectorRequirement{armArch},
				},
				term(armArch),
			)},
		},
		{
			name:  "preferred affinity and pod affinity are kept",
			rules: nodePoolRules,
			pod: func() *corev1.Pod {
				p := kpoPod(nil)
				p.Labels["kpoguard.io/queue"] = "arm"
				p.Spec.Affinity = &corev1.Affinity{
					NodeAffinity:    &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: term(noSpot)}}},
					PodAntiAffinity: &corev1.PodAntiAffinity{},
				}
				return p
			}(),
			want: []Change{ch(terms+"[0].matchExpressions[0]", "kubernetes.io/arch In arm64")},
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{
				NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution:  &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(armArch)}},
					PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: term(noSpot)}},
				},
				PodAntiAffinity: &corev1.PodAntiAffinity{},
			}},
		},
		{
			name:  "an empty list of required terms gets one term",
			rules: nodePoolRules,
			pod: func() *corev1.Pod {
				p := kpoPod(map[string]string{"kpoguard.io/queue": "arm"})
				p.Spec.Affinity = requiredAffinity()
				return p
			}(),
			want:  []Change{ch(terms+"[0].matchExpressions[0]", "kubernetes.io/arch In arm64")},
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: requiredAffinity(term(armArch))},
		},
		{
			name:  "a pod with spec.nodeName is left alone",
			rules: nodePoolRules,
			pod: func() *corev1.Pod {
				p := kpoPod(gpuLabel)
				p.Spec.NodeName = "node-1"
				return p
			}(),
			place: placement{nodeSelector: map[string]string{}, tolerations: []corev1.Toleration{}, affinity: &corev1.Affinity{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, NodePool, tt.rules)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, tt.facts), tt.want)
			got := placement{pod.Spec.NodeSelector, pod.Spec.Tolerations, pod.Spec.Affinity}
			if !reflect.DeepEqual(got, tt.place) {
				t.Errorf("placement:\n got: %+v\nwant: %+v", got, tt.place)
				if got.affinity != nil && got.affinity.NodeAffinity != nil {
					t.Logf("got node affinity: %+v", got.affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
				}
			}
			if !reflect.DeepEqual(pod.Labels, tt.pod.Labels) {
				t.Errorf("labels changed: %v", pod.Labels)
			}
			// Idempotent, and the placed pod passes the validator.
			again := pod.DeepCopy()
			assertChanges(t, rs.Mutate(again, tt.facts), nil)
			if !reflect.DeepEqual(again, pod) {
				t.Errorf("second run changed the pod")
			}
		})
	}
}

func TestNodePoolValidate(t *testing.T) {
	const nodeSelectorFix = "remove node_selector from the task; the queue decides where it runs"
	const affinityFix = "remove the node affinity from the task; the queue decides where it runs"
	const generalPool = `queue "default"'s node pool (pool=general)`
	const gpuPool = `queue "gpu"'s node pool (pool=gpu,zone=a)`
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	v := func(subject, path, msg, fix string) Violation {
		return Violation{Rule: NodePool, Mode: Enforce, Subject: subject, Path: path, Message: msg, Fix: fix}
	}
	unpinned := func(key, pool string) Violation {
		return v("pod", "spec.nodeSelector["+key+"]", "is not pinned to "+pool,
			"create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector")
	}
	lacks := func(pool, expr string, i int) Violation {
		return v("pod", "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
			"is not pinned to "+pool+": its required node affinity lacks "+expr,
			fmt.Sprintf("create the pod through kpoguard's mutating webhook (queue expression %d)", i))
	}
	gpuExprs := []Violation{lacks(gpuPool, "node.kubernetes.io/instance-type In g5.xlarge,g5.2xlarge", 0), lacks(gpuPool, "spot NotIn true", 1)}
	badLabel := func(value string) Violation {
		return v(`label kpoguard.io/queue="`+value+`"`, "metadata.labels[kpoguard.io/queue]",
			"names no queue of this deployment", "use one of: arm, default, gpu")
	}
	nodeName := func(node string) Violation {
		return v(`node "`+node+`"`, "spec.nodeName", "naming a node bypasses the scheduler and the queue's node pool",
			"remove spec.nodeName and let the queue choose the node")
	}

	type podSpec struct {
		labels       map[string]string
		nodeSelector map[string]string
		nodeName     string
		affinity     *corev1.Affinity
	}
	tests := []struct {
		name  string
		rules string
		pod   podSpec
		facts Facts
		want  []Violation
	}{
		{
			name:  "a pinned pod",
			rules: nodePoolRules,
			pod:   podSpec{nodeSelector: map[string]string{"pool": "general"}},
		},
		{
			name:  "a pod the mutating webhook did not place",
			rules: nodePoolRules,
			want:  []Violation{unpinned("pool", generalPool)},
		},
		{
			name:  "every missing key of the pool, in key order",
			rules: nodePoolRules,
			facts: fromWorker("gpu"),
			pod:   podSpec{nodeSelector: map[string]string{"zone": "a"}},
			want:  append([]Violation{unpinned("pool", gpuPool)}, gpuExprs...),
		},
		{
			name:  "a conflicting nodeSelector is denied",
			rules: nodePoolRules,
			pod:   podSpec{nodeSelector: map[string]string{"pool": "gpu"}},
			want: []Violation{v("nodeSelector pool=gpu", "spec.nodeSelector[pool]",
				"asks for another node pool than "+generalPool, nodeSelectorFix)},
		},
		{
			name:  "a conflicting nodeSelector in a chosen queue",
			rules: nodePoolRules,
			pod:   podSpec{labels: map[string]string{"kpoguard.io/queue": "gpu"}, nodeSelector: map[string]string{"pool": "gpu", "zone": "b"}},
			want: append([]Violation{v("nodeSelector zone=b", "spec.nodeSelector[zone]",
				"asks for another node pool than "+gpuPool, nodeSelectorFix)}, gpuExprs...),
		},
		{
			name:  "a queue label naming an unknown queue",
			rules: nodePoolRules,
			pod:   podSpec{labels: map[string]string{"kpoguard.io/queue": "nope"}, nodeSelector: map[string]string{"pool": "general"}},
			want:  []Violation{badLabel("nope")},
		},
		{
			name:  "an unknown queue label with an unplaced pod",
			rules: nodePoolRules,
			pod:   podSpec{labels: map[string]string{"kpoguard.io/queue": ""}},
			want:  []Violation{unpinned("pool", generalPool)},
		},
		{
			name:  "a trusted queue hides the label",
			rules: nodePoolRules,
			facts: fromWorker("default"),
			pod:   podSpec{labels: map[string]string{"kpoguard.io/queue": "nope"}, nodeSelector: map[string]string{"pool": "general"}},
		},
		{
			name:  "nodeName is denied unless allowed, and skips the pool checks",
			rules: nodePoolRules,
			pod:   podSpec{nodeName: "node-1", labels: map[string]string{"kpoguard.io/queue": "bad"}},
			want:  []Violation{badLabel("bad"), nodeName("node-1")},
		},
		{
			name:  "nodeName allowed",
			rules: nodePoolRules + "  allowNodeName: true\n",
			pod:   podSpec{nodeName: "node-1"},
		},
		{
			name:  "nodeName denied with no queues configured",
			rules: "nodePool: {}\n",
			pod:   podSpec{nodeName: "node-1"},
			want:  []Violation{nodeName("node-1")},
		},
		{
			name:  "required affinity that cannot match the pool",
			rules: nodePoolRules,
			pod: podSpec{nodeSelector: map[string]string{"pool": "general"}, affinity: requiredAffinity(
				term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}}),
				term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"general"}}),
				term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpDoesNotExist}),
			)},
			want: []Violation{v("required node affinity", terms, "no term can match a node of "+generalPool, affinityFix)},
		},
		{
			name:  "required affinity with one term that fits",
			rules: nodePoolRules,
			pod: podSpec{nodeSelector: map[string]string{"pool": "general"}, affinity: requiredAffinity(
				term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}}),
				term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu", "general"}}),
			)},
		},
		{
			name:  "required affinity on keys the pool does not pin",
			rules: nodePoolRules,
			pod: podSpec{nodeSelector: map[string]string{"pool": "general"}, affinity: requiredAffinity(
				term(corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"x"}},
					corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpExists},
					corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"gpu"}}),
			)},
		},
		{
			name:  "required affinity without terms",
			rules: nodePoolRules,
			pod:   podSpec{nodeSelector: map[string]string{"pool": "general"}, affinity: requiredAffinity()},
		},
		{
			name:  "every violation together",
			rules: nodePoolRules,
			pod: podSpec{labels: map[string]string{"kpoguard.io/queue": "x"}, nodeSelector: map[string]string{"pool": "gpu"},
				affinity: requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}}))},
			want: []Violation{
				badLabel("x"),
				v("nodeSelector pool=gpu", "spec.nodeSelector[pool]", "asks for another node pool than "+generalPool, nodeSelectorFix),
				v("required node affinity", terms, "no term can match a node of "+generalPool, affinityFix),
			},
		},
		{
			name:  "a queue with only matchExpressions checks that every term carries them",
			rules: nodePoolRules,
			facts: fromWorker("arm"),
			pod:   podSpec{affinity: requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}}))},
			want:  []Violation{lacks(`queue "arm"'s node pool`, "kubernetes.io/arch In arm64", 0)},
		},
		{
			name:  "a pinned pod of a matchExpressions queue passes",
			rules: nodePoolRules,
			facts: fromWorker("arm"),
			pod: podSpec{affinity: requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}},
				corev1.NodeSelectorRequirement{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}))},
		},
		{
			name:  "a nodeSelector contradicting a queue expression is denied",
			rules: nodePoolRules,
			pod: podSpec{labels: map[string]string{"kpoguard.io/queue": "arm"}, nodeSelector: map[string]string{"kubernetes.io/arch": "amd64"},
				affinity: requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}))},
			want: []Violation{v("nodeSelector kubernetes.io/arch=amd64", "spec.nodeSelector[kubernetes.io/arch]",
				`asks for another node pool than queue "arm"'s node pool`, nodeSelectorFix)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, NodePool, tt.rules)
			pod := basePod()
			for k, val := range tt.pod.labels {
				pod.Labels[k] = val
			}
			pod.Spec.NodeSelector = tt.pod.nodeSelector
			pod.Spec.NodeName = tt.pod.nodeName
			pod.Spec.Affinity = tt.pod.affinity
			assertViolations(t, rs.Validate(pod, tt.facts), tt.want)
		})
	}
}

func TestDescribePool(t *testing.T) {
	if got, want := describePool("arm", QueueSpec{}), `queue "arm"'s node pool`; got != want {
		t.Errorf("describePool = %q, want %q", got, want)
	}
	if got, want := describePool("q", QueueSpec{NodeSelector: map[string]string{"b": "2", "a": "1"}}), `queue "q"'s node pool (a=1,b=2)`; got != want {
		t.Errorf("describePool = %q, want %q", got, want)
	}
}

// Placement followed by validation admits every queue's pods.
func TestNodePoolMutateThenValidate(t *testing.T) {
	rs := ruleOnly(t, NodePool, nodePoolRules)
	for _, queue := range []string{"default", "gpu", "arm"} {
		pod := loadFixture(t, "01-kpo-basic-no-resources.yaml")
		pod.Labels["kpoguard.io/queue"] = queue
		if len(rs.Mutate(pod, Facts{})) == 0 {
			t.Errorf("queue %s: no placement", queue)
		}
		assertViolations(t, rs.Validate(pod, Facts{}), nil)
		assertChanges(t, rs.Mutate(pod, Facts{}), nil)
	}
}

// A change's value describes the requirement it added; operators without
// values must not leave a trailing space in the audit annotation.
func TestNodePoolExpressionWithoutValues(t *testing.T) {
	rs := ruleOnly(t, NodePool, "nodePool:\n  defaultQueue: q\n  queues:\n    q:\n      matchExpressions:\n      - {key: spot, operator: DoesNotExist}\n")
	pod := basePod()
	got := rs.Mutate(pod, Facts{})
	want := []Change{{Rule: NodePool, Mode: Enforce,
		Path:  "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]",
		Value: "spot DoesNotExist"}}
	if len(got) == 1 && got[0].Value == "spot DoesNotExist " {
		t.Fatal("regression: node_pool.go:66 formats key, operator and joined values with two spaces and leaves a trailing space for Exists/DoesNotExist (\"spot DoesNotExist \")")
	}
	assertChanges(t, got, want)
}

// The tolerations added to a pod are copies: changing the pod afterwards
// must not change the policy (matchExpressions are deep-copied already).
func TestNodePoolTolerationsAreCopied(t *testing.T) {
	rs := ruleOnly(t, NodePool, "nodePool:\n  defaultQueue: q\n  queues:\n    q:\n      tolerations: [{key: k, operator: Exists, effect: NoExecute, tolerationSeconds: 300}]\n")
	pod := basePod()
	assertChanges(t, rs.Mutate(pod, Facts{}), []Change{{Rule: NodePool, Mode: Enforce, Path: "spec.tolerations[0]", Value: "k Exists:NoExecute"}})
	*pod.Spec.Tolerations[0].TolerationSeconds = 1
	if got := *rs.NodePool.Queues["q"].Tolerations[0].TolerationSeconds; got != 300 {
		t.Fatalf("regression: node_pool.go:44 appends the queue's toleration by value, sharing its TolerationSeconds pointer with the policy "+
			"(now %d); append *t.DeepCopy() as for matchExpressions", got)
	}
}
