package policy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestLoadParent(t *testing.T) {
	const np = "nodePool:\n  defaultQueue: a\n  queues: {a: {nodeSelector: {pool: a}}}\n"
	const p = "spec.rules.nodePool.parent"
	tests := []struct {
		name   string
		parent string
		want   []fieldErr
	}{
		{name: "an unquoted off", parent: "{source: off}"},
		{name: "label source with keys", parent: "{source: label, queueLabels: [airflow.example.com/queue], fallbacks: [kubernetes-executor, default-queue]}"},
		{name: "inherit with node labels", parent: "{source: inherit, nodeLabels: [node.kubernetes.io/instance-type], onConflict: override}"},
		{name: "fallbacks for kubeconfig pods alone", parent: "{source: inherit, outOfClusterFallbacks: [default-queue]}"},
		{name: "a source that is no string", parent: "{source: true}", want: []fieldErr{
			{p + ".source", field.ErrorTypeNotSupported, ""},
		}},
		{name: "unknown source and conflict action", parent: "{source: labels, onConflict: ignore}", want: []fieldErr{
			{p + ".source", field.ErrorTypeNotSupported, ""},
			{p + ".onConflict", field.ErrorTypeNotSupported, ""},
		}},
		{name: "label source needs keys", parent: "{source: label}", want: []fieldErr{
			{p + ".queueLabels", field.ErrorTypeRequired, "source label needs the worker label that names its queue"},
		}},
		{name: "keys for another source", parent: "{source: inherit, queueLabels: [q]}", want: []fieldErr{
			{p + ".queueLabels", field.ErrorTypeInvalid, "only used with source label"},
		}},
		{name: "node labels need inherit", parent: "{source: label, queueLabels: [q], nodeLabels: [zone]}", want: []fieldErr{
			{p + ".nodeLabels", field.ErrorTypeInvalid, "only used with source inherit"},
		}},
		{name: "label keys must be qualified names", parent: "{source: label, queueLabels: [\"a b\"]}", want: []fieldErr{
			{p + ".queueLabels[0]", field.ErrorTypeInvalid, ""},
		}},
		{name: "node label keys must be qualified names", parent: "{source: inherit, nodeLabels: [\"-x\"]}", want: []fieldErr{
			{p + ".nodeLabels[0]", field.ErrorTypeInvalid, ""},
		}},
		{name: "unknown, repeated and unreachable fallbacks", parent: "{source: inherit, fallbacks: [parent, deny, deny, kubernetes-executor], outOfClusterFallbacks: [default-queue, kubernetes-executor]}", want: []fieldErr{
			{p + ".fallbacks[0]", field.ErrorTypeNotSupported, ""},
			{p + ".fallbacks[2]", field.ErrorTypeDuplicate, ""},
			{p + ".fallbacks[3]", field.ErrorTypeInvalid, "never tried: deny before it always decides"},
			{p + ".outOfClusterFallbacks[1]", field.ErrorTypeInvalid, "never tried: default-queue before it always decides"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := doc(np + "  parent: " + tt.parent + "\n")
			if tt.want == nil {
				mustLoad(t, text)
				return
			}
			assertFieldErrors(t, loadErrors(t, text), tt.want)
		})
	}
	t.Run("default-queue needs a default queue", func(t *testing.T) {
		assertFieldErrors(t, loadErrors(t, doc("nodePool:\n  parent: {source: inherit, fallbacks: [default-queue]}\n")), []fieldErr{
			{p + ".fallbacks[0]", field.ErrorTypeInvalid, "needs nodePool.defaultQueue"},
		})
	})
	t.Run("kubeconfig pods follow fallbacks unless set", func(t *testing.T) {
		rs := rulesFor(t, np+"  parent: {source: inherit, fallbacks: [kubernetes-executor, default-queue]}\n")
		want := []Fallback{FallbackKubernetesExecutor, FallbackDefaultQueue}
		for _, labels := range []map[string]string{nil, {InClusterLabel: "True"}, {InClusterLabel: "False"}} {
			if got := rs.NodePool.Parent.FallbacksFor(labels, false); !reflect.DeepEqual(got, want) {
				t.Errorf("labels %v: fallbacks %v, want %v", labels, got, want)
			}
		}
		rs = rulesFor(t, np+"  parent: {source: inherit, outOfClusterFallbacks: [default-queue]}\n")
		if got := rs.NodePool.Parent.FallbacksFor(map[string]string{InClusterLabel: "False"}, false); !reflect.DeepEqual(got, []Fallback{FallbackDefaultQueue}) {
			t.Errorf("kubeconfig pod: fallbacks %v", got)
		}
		if got := rs.NodePool.Parent.FallbacksFor(map[string]string{InClusterLabel: "False"}, true); !reflect.DeepEqual(got, []Fallback{FallbackDeny}) {
			t.Errorf("a pod labelled out of cluster but sent with a pod-bound token: fallbacks %v, want the in-cluster ones", got)
		}
		if got := rs.NodePool.Parent.FallbacksFor(map[string]string{InClusterLabel: "True"}, false); !reflect.DeepEqual(got, []Fallback{FallbackDeny}) {
			t.Errorf("in-cluster pod: fallbacks %v", got)
		}
	})
}

const parentRules = nodePoolRules + "  parent: {source: label, queueLabels: [worker-queue]}\n"

// The launching worker decides the queue; what the pod asks for itself is
// a conflict, denied with both pools named, or overridden.
func TestNodePoolParentConflicts(t *testing.T) {
	const gpuPool = `queue "gpu"'s node pool (pool=gpu,zone=a)`
	const generalPool = `queue "default"'s node pool (pool=general)`
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	v := func(subject, path, msg, fix string) Violation {
		return Violation{Rule: NodePool, Mode: Enforce, Subject: subject, Path: path, Message: msg, Fix: fix}
	}
	ch := func(path, value string) Change {
		return Change{Rule: NodePool, Mode: Enforce, Path: path, Value: value}
	}
	const runsWhere = "; a task runs where the worker that launched it runs"
	gpuPod := func() *corev1.Pod {
		p := basePod()
		p.Labels["kpoguard.io/queue"] = "gpu"
		p.Spec.NodeSelector = map[string]string{"pool": "gpu", "zone": "a"}
		p.Spec.Tolerations = []corev1.Toleration{gpuTaint, {Key: "own", Operator: corev1.TolerationOpExists}}
		p.Spec.Affinity = requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}}))
		return p
	}
	tests := []struct {
		name     string
		conflict string
		pod      *corev1.Pod
		facts    Facts
		// denied: what the validator says about the pod as the DAG wrote it.
		denied []Violation
		// changes: what the mutator does with it (then validated clean).
		changes []Change
	}{
		{
			name:     "a pod asking for the gpu pool from a default worker is denied naming both pools",
			conflict: "deny",
			pod:      gpuPod(),
			facts:    fromWorker("default"),
			denied: []Violation{
				v(`label kpoguard.io/queue="gpu"`, "metadata.labels[kpoguard.io/queue]",
					"asks for "+gpuPool+", but the worker that launched it runs in "+generalPool,
					"remove the queue label; a task does not choose its queue"),
				v("nodeSelector pool=gpu", "spec.nodeSelector[pool]", "asks for "+gpuPool+", but the worker that launched it runs in "+generalPool,
					"remove node_selector from the task"+runsWhere),
				v("required node affinity", terms, "no term can match a node of "+generalPool+", where the worker that launched it runs",
					"remove the node affinity from the task"+runsWhere),
				v("toleration nvidia.com/gpu Exists:NoSchedule", "spec.tolerations[0]",
					"asks for "+gpuPool+", but the worker that launched it runs in "+generalPool, "remove the toleration from the task"+runsWhere),
			},
			changes: nil,
		},
		{
			name:     "overridden: the pod is moved to its worker's pool",
			conflict: "override",
			pod:      gpuPod(),
			facts:    fromWorker("default"),
			denied: []Violation{
				v("nodeSelector pool=gpu", "spec.nodeSelector[pool]", "asks for "+gpuPool+", but the worker that launched it runs in "+generalPool,
					"remove node_selector from the task"+runsWhere),
				v("required node affinity", terms, "no term can match a node of "+generalPool+", where the worker that launched it runs",
					"remove the node affinity from the task"+runsWhere),
				v("toleration nvidia.com/gpu Exists:NoSchedule", "spec.tolerations[0]",
					"asks for "+gpuPool+", but the worker that launched it runs in "+generalPool, "remove the toleration from the task"+runsWhere),
			},
			changes: []Change{
				ch("spec.nodeSelector[pool]", "general"),
				ch(terms, `removed 1 term(s) no node of `+generalPool+` can match`),
				ch("spec.tolerations[0]", "removed nvidia.com/gpu Exists:NoSchedule of "+gpuPool),
			},
		},
		{
			name:     "a toleration broader than the gpu queue's reaches its pool too",
			conflict: "deny",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
				return p
			}(),
			facts: fromWorker("default"),
			denied: []Violation{v("pod", "spec.nodeSelector[pool]", "is not pinned to "+generalPool, "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"),
				v("toleration of every taint (Exists)", "spec.tolerations[0]",
					"asks for "+gpuPool+", but the worker that launched it runs in "+generalPool, "remove the toleration from the task"+runsWhere)},
			changes: []Change{ch("spec.nodeSelector[pool]", "general")},
		},
		{
			name:     "a nodeSelector naming no queue is named by its value",
			conflict: "deny",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.NodeSelector = map[string]string{"pool": "bespoke"}
				return p
			}(),
			facts: fromWorker("default"),
			denied: []Violation{v("nodeSelector pool=bespoke", "spec.nodeSelector[pool]",
				"asks for the node pool pool=bespoke, but the worker that launched it runs in "+generalPool, "remove node_selector from the task"+runsWhere)},
		},
		{
			name:     "the worker's own queue by label is no conflict; tolerations of no queue are kept",
			conflict: "deny",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Labels["kpoguard.io/queue"] = "default"
				p.Spec.Tolerations = []corev1.Toleration{{Key: "own", Operator: corev1.TolerationOpExists}}
				return p
			}(),
			facts:   fromWorker("default"),
			denied:  []Violation{v("pod", "spec.nodeSelector[pool]", "is not pinned to "+generalPool, "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector")},
			changes: []Change{ch("spec.nodeSelector[pool]", "general")},
		},
		{
			name:     "with no worker found, the default queue decides and says so",
			conflict: "deny",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Labels["kpoguard.io/queue"] = "gpu"
				p.Spec.NodeSelector = map[string]string{"pool": "general"}
				return p
			}(),
			facts: Facts{Parent: &Parent{Via: ViaDefaultQueue, Queue: "default"}},
			denied: []Violation{v(`label kpoguard.io/queue="gpu"`, "metadata.labels[kpoguard.io/queue]",
				"asks for "+gpuPool+", but the namespace's default queue runs in "+generalPool,
				"remove the queue label; a task does not choose its queue")},
		},
		{
			name:     "an unknown worker is denied and nothing is placed",
			conflict: "deny",
			pod:      gpuPod(),
			facts:    Facts{Parent: &Parent{Via: ViaUnknown, Reason: `user "alice" is not a service account`}},
			denied: []Violation{v("request", "userInfo",
				`the Airflow worker that launched this pod could not be determined: user "alice" is not a service account`,
				"create task pods from an Airflow worker with its own service account (KubernetesPodOperator in_cluster=True), or ask your platform team")},
		},
		{
			name:     "override drops a nodeSelector key the pool's expressions rule out",
			conflict: "override",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.NodeSelector = map[string]string{"kubernetes.io/arch": "amd64", "disk": "ssd"}
				return p
			}(),
			facts: fromWorker("arm"),
			denied: []Violation{
				v("nodeSelector kubernetes.io/arch=amd64", "spec.nodeSelector[kubernetes.io/arch]",
					`asks for the node pool kubernetes.io/arch=amd64, but the worker that launched it runs in queue "arm"'s node pool`, "remove node_selector from the task"+runsWhere),
				v("pod", terms, `is not pinned to queue "arm"'s node pool: its required node affinity lacks kubernetes.io/arch In arm64`,
					"create the pod through kpoguard's mutating webhook (queue expression 0)"),
			},
			changes: []Change{
				ch("spec.nodeSelector[kubernetes.io/arch]", "removed kubernetes.io/arch=amd64"),
				ch(terms+"[0].matchExpressions[0]", "kubernetes.io/arch In arm64"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, NodePool, parentRules+"  allowNodeName: false\n")
			rs.NodePool.Parent.OnConflict = OnConflict(tt.conflict)
			assertViolations(t, rs.Validate(tt.pod, tt.facts), tt.denied)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, tt.facts), tt.changes)
			if tt.conflict == "override" {
				assertViolations(t, rs.Validate(pod, tt.facts), nil)
			}
			if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil &&
				len(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
				t.Errorf("an empty list of required terms, which the API server refuses")
			}
			again := pod.DeepCopy()
			assertChanges(t, rs.Mutate(again, tt.facts), nil)
			if !reflect.DeepEqual(again, pod) {
				t.Errorf("a second mutation changed the pod")
			}
		})
	}
}

// Inherit: the task gets its worker's placement, merged into what the pod
// already has; terms are ORed, so the merge multiplies them out.
func TestNodePoolInheritMerge(t *testing.T) {
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	zone := func(z string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{z}}
	}
	big := corev1.NodeSelectorRequirement{Key: "node.kubernetes.io/instance-type", Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.4xlarge"}}
	huge := corev1.NodeSelectorRequirement{Key: "node.kubernetes.io/instance-type", Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.8xlarge"}}
	preferred := []corev1.PreferredSchedulingTerm{{Weight: 10, Preference: term(noSpot)}}
	worker := func(terms ...corev1.NodeSelectorTerm) Facts {
		return Facts{Parent: &Parent{Via: ViaIdentity, Worker: "worker-big-0", Placement: &Placement{
			NodeSelector: map[string]string{"pool": "big"},
			Tolerations:  []corev1.Toleration{dedicated},
			Terms:        terms,
		}}}
	}
	withAffinity := func(req []corev1.NodeSelectorTerm, pref []corev1.PreferredSchedulingTerm) *corev1.Pod {
		p := basePod()
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: pref}}
		if req != nil {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: req}
		}
		return p
	}
	ch := func(path, value string) Change {
		return Change{Rule: NodePool, Mode: Enforce, Path: path, Value: value}
	}
	base := []Change{ch("spec.nodeSelector[pool]", "big"), ch("spec.tolerations[0]", "dedicated=gpu:NoExecute")}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		facts     Facts
		wantTerms []corev1.NodeSelectorTerm
		changes   []Change
	}{
		{
			name:      "no terms on either side",
			pod:       basePod(),
			facts:     worker(),
			wantTerms: nil,
			changes:   base,
		},
		{
			name:      "the worker's one term goes into a pod without affinity",
			pod:       basePod(),
			facts:     worker(term(big)),
			wantTerms: []corev1.NodeSelectorTerm{term(big)},
			changes:   append(base[:2:2], ch(terms+"[0].matchExpressions[0]", "node.kubernetes.io/instance-type In m5.4xlarge")),
		},
		{
			name:      "the worker's one term is ANDed into each of the pod's required terms; preferred terms kept",
			pod:       withAffinity([]corev1.NodeSelectorTerm{term(zone("a")), term(zone("b"))}, preferred),
			facts:     worker(term(big)),
			wantTerms: []corev1.NodeSelectorTerm{term(zone("a"), big), term(zone("b"), big)},
			changes: append(base[:2:2],
				ch(terms+"[0].matchExpressions[1]", "node.kubernetes.io/instance-type In m5.4xlarge"),
				ch(terms+"[1].matchExpressions[1]", "node.kubernetes.io/instance-type In m5.4xlarge")),
		},
		{
			name:      "two worker terms into two pod terms make four",
			pod:       withAffinity([]corev1.NodeSelectorTerm{term(zone("a")), term(zone("b"))}, preferred),
			facts:     worker(term(big), term(huge)),
			wantTerms: []corev1.NodeSelectorTerm{term(zone("a"), big), term(zone("a"), huge), term(zone("b"), big), term(zone("b"), huge)},
			changes: append(base[:2:2], ch(terms,
				"(zone In a and node.kubernetes.io/instance-type In m5.4xlarge) or (zone In a and node.kubernetes.io/instance-type In m5.8xlarge) or "+
					"(zone In b and node.kubernetes.io/instance-type In m5.4xlarge) or (zone In b and node.kubernetes.io/instance-type In m5.8xlarge)")),
		},
		{
			name:      "a pod term that already carries a worker term is kept",
			pod:       withAffinity([]corev1.NodeSelectorTerm{term(zone("a"), huge), term(zone("b"))}, nil),
			facts:     worker(term(big), term(huge)),
			wantTerms: []corev1.NodeSelectorTerm{term(zone("a"), huge), term(zone("b"), big), term(zone("b"), huge)},
			changes: append(base[:2:2], ch(terms,
				"(zone In a and node.kubernetes.io/instance-type In m5.8xlarge) or "+
					"(zone In b and node.kubernetes.io/instance-type In m5.4xlarge) or (zone In b and node.kubernetes.io/instance-type In m5.8xlarge)")),
		},
		{
			name: "the worker's matchFields are carried too",
			pod:  withAffinity([]corev1.NodeSelectorTerm{term(zone("a"))}, preferred),
			facts: worker(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{
				{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-7"}}}}),
			wantTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{zone("a")},
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-7"}}}}},
			changes: append(base[:2:2], ch(terms+"[0].matchFields[0]", "metadata.name In node-7")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, NodePool, nodePoolRules)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, tt.facts), tt.changes)
			if got := requiredTerms(pod); !reflect.DeepEqual(got, tt.wantTerms) {
				t.Errorf("required terms:\n got: %s\nwant: %s", describeTerms(got), describeTerms(tt.wantTerms))
			}
			if pref := tt.pod.Spec.Affinity; pref != nil && !reflect.DeepEqual(pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution, pref.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) {
				t.Errorf("preferred terms changed")
			}
			assertViolations(t, rs.Validate(pod, tt.facts), nil)
			assertChanges(t, rs.Mutate(pod, tt.facts), nil)
		})
	}
}

// The validator holds an inherited pool like a queue's: unplaced pods and
// pods asking for other nodes are refused, naming the worker's pool.
func TestNodePoolInheritValidate(t *testing.T) {
	const pool = `worker "worker-big-0"'s node pool (pool=big)`
	big := corev1.NodeSelectorRequirement{Key: "size", Operator: corev1.NodeSelectorOpIn, Values: []string{"big"}}
	huge := corev1.NodeSelectorRequirement{Key: "size", Operator: corev1.NodeSelectorOpIn, Values: []string{"huge"}}
	facts := Facts{Parent: &Parent{Via: ViaIdentity, Worker: "worker-big-0", Placement: &Placement{
		NodeSelector: map[string]string{"pool": "big"}, Terms: []corev1.NodeSelectorTerm{term(big), term(huge)}}}}
	v := func(subject, path, msg, fix string) Violation {
		return Violation{Rule: NodePool, Mode: Enforce, Subject: subject, Path: path, Message: msg, Fix: fix}
	}
	const terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	tests := []struct {
		name string
		pod  *corev1.Pod
		want []Violation
	}{
		{
			name: "unplaced",
			pod:  basePod(),
			want: []Violation{
				v("pod", "spec.nodeSelector[pool]", "is not pinned to "+pool, "create the pod through kpoguard's mutating webhook, or set the queue's nodeSelector"),
				v("pod", terms, "is not pinned to "+pool+": a required node-affinity term carries none of (size In big) or (size In huge)", "create the pod through kpoguard's mutating webhook"),
			},
		},
		{
			name: "a nodeSelector no worker term allows, and a term of another size",
			pod: func() *corev1.Pod {
				p := basePod()
				p.Spec.NodeSelector = map[string]string{"pool": "big", "size": "small"}
				p.Spec.Affinity = requiredAffinity(term(corev1.NodeSelectorRequirement{Key: "size", Operator: corev1.NodeSelectorOpIn, Values: []string{"small"}}, big))
				return p
			}(),
			want: []Violation{
				v("nodeSelector size=small", "spec.nodeSelector[size]", "asks for the node pool size=small, but the worker that launched it runs in "+pool,
					"remove node_selector from the task; a task runs where the worker that launched it runs"),
				v("required node affinity", terms, "no term can match a node of "+pool+", where the worker that launched it runs",
					"remove the node affinity from the task; a task runs where the worker that launched it runs"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertViolations(t, ruleOnly(t, NodePool, nodePoolRules).Validate(tt.pod, facts), tt.want)
		})
	}
}

// Following the worker, a task may not name its node, whatever
// allowNodeName says; and in inherit mode a queue label is no claim.
func TestNodePoolParentNodeNameAndInheritLabels(t *testing.T) {
	rs := ruleOnly(t, NodePool, parentRules+"  allowNodeName: true\n")
	pod := basePod()
	pod.Spec.NodeName = "gpu-node-1"
	if got := rs.Validate(pod, fromWorker("default")); len(got) != 1 || got[0].Path != "spec.nodeName" {
		t.Errorf("a task naming its node: %v, want spec.nodeName refused", got)
	}
	if got := rs.Validate(pod, Facts{}); len(got) != 0 {
		t.Errorf("without a parent, allowNodeName admits it: %v", got)
	}

	inherit := Facts{Parent: &Parent{Via: ViaIdentity, Worker: "w", Placement: &Placement{NodeSelector: map[string]string{"pool": "general"}}}}
	labelled := basePod()
	labelled.Labels["kpoguard.io/queue"] = "default"
	mutated := labelled.DeepCopy()
	rs.Mutate(mutated, inherit)
	if got := rs.Validate(mutated, inherit); len(got) != 0 {
		t.Errorf("inherit: a queue label was taken for a claim: %v", got)
	}
}
