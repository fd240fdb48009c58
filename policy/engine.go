package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Facts are what the caller looked up about a pod before asking the engine;
// the engine itself does no I/O.
type Facts struct {
	// Parent is the worker that launched the pod, found from the request's
	// identity, when the policy follows workers. Nil: not looked up, and
	// the queue label or the default queue decides.
	Parent *Parent
	// Images maps every image reference in the pod to what its registry
	// says. Nil means no lookups were made and registry checks are skipped.
	Images map[string]ImageFacts
}

// Platform is an OS/architecture pair an image runs on.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ImageFacts are an image's platforms, or why they are unknown.
type ImageFacts struct {
	Platforms []Platform
	// Err, when set, says why the lookup failed.
	Err string
}

// Change is one field a mutating rule sets.
type Change struct {
	Rule RuleID `json:"rule"`
	Mode Mode   `json:"mode"`
	// Path is the field path in the pod, e.g. spec.containers[0].resources.limits[cpu].
	Path  string `json:"path"`
	Value string `json:"value"`
}

func (c Change) String() string {
	return fmt.Sprintf("[%s] %s: %s", c.Rule, c.Path, c.Value)
}

// Violation is one thing a validating rule refuses.
type Violation struct {
	Rule RuleID `json:"rule"`
	Mode Mode   `json:"mode"`
	// Subject names what is wrong for a DAG author: `volume "data"`.
	Subject string `json:"subject"`
	// Path is the field path in the pod.
	Path    string `json:"path"`
	Message string `json:"message"`
	// Fix tells the DAG author what to change.
	Fix string `json:"fix"`
}

func (v Violation) String() string {
	return fmt.Sprintf("[%s] %s (%s): %s; %s", v.Rule, v.Subject, v.Path, v.Message, v.Fix)
}

// Requester is who sent the request, for break-glass exemptions.
type Requester struct {
	Username string
	Groups   []string
}

// Skip reasons returned by Policy.Skips.
const (
	SkipExemptNamespace = "exempt-namespace"
	SkipExemptUser      = "exempt-user"
	SkipNotTaskPod      = "not-task-pod"
)

// Skips says why the policy does not apply to a pod, or "" when it does.
func (p *Policy) Skips(namespace string, podLabels map[string]string, who Requester) string {
	switch {
	case slices.Contains(p.scope.exemptNamespaces, namespace):
		return SkipExemptNamespace
	case slices.Contains(p.scope.exemptUsers, who.Username),
		slices.ContainsFunc(who.Groups, func(g string) bool { return slices.Contains(p.scope.exemptGroups, g) }):
		return SkipExemptUser
	case !p.scope.taskPods.Matches(labels.Set(podLabels)):
		return SkipNotTaskPod
	}
	return ""
}

// A rule is one entry of the rule table: everything kpoguard knows of a
// rule besides its own file.
// TaskScope names the refusal of an update that would take a running
// task pod out of the policy's scope. It is no rule of the table: it has
// no section and no mode, and is always enforced.
const TaskScope RuleID = "task-scope"

// LeavesScope refuses an update after which a task pod would no longer be
// one: every later change of it (tolerations, images, debug containers,
// resizes) would pass unchecked. Labels KPO never changes on its pods.
func (p *Policy) LeavesScope(old, pod *corev1.Pod) *Violation {
	if !p.scope.taskPods.Matches(labels.Set(old.Labels)) || p.scope.taskPods.Matches(labels.Set(pod.Labels)) {
		return nil
	}
	path := field.NewPath("metadata", "labels")
	subject := "labels"
	for _, k := range sortedKeys(old.Labels) {
		if v, ok := pod.Labels[k]; !ok || v != old.Labels[k] {
			path, subject = path.Key(k), "label "+k
			break
		}
	}
	return &Violation{Rule: TaskScope, Mode: Enforce, Subject: subject, Path: path.String(),
		Message: fmt.Sprintf("the update would take a running task pod out of the policy's task-pod selector (%s), and its later changes out of kpoguard's sight", p.scope.taskPods),
		Fix:     "keep the task labels KubernetesPodOperator set; create a new pod instead"}
}

type rule struct {
	id RuleID
	// section is the rule's key under spec.rules.
	section string
	// mode is where the rule's mode lives in a RuleSet.
	mode func(*RuleSet) *Mode
	// compile checks the rule's section of a defaulted document and sets
	// its config in the RuleSet; rules is the path of spec.rules.
	compile  func(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path)
	mutate   func(pod *corev1.Pod, in *input) []Change
	validate func(pod *corev1.Pod, in *input) []Violation
}

// ruleTable is the one list of rules, in the order they run. Mutations
// run in this order too, so requests-equal-limits sees the defaults
// already filled; sections compile in it, so max-resources can check the
// defaults. Adding a rule: CONTRIBUTING.md.
var ruleTable = []rule{
	{id: DefaultResources, section: "defaultResources", mode: func(rs *RuleSet) *Mode { return &rs.DefaultResources.Mode },
		compile: compileDefaultResources, mutate: defaultResources},
	{id: RequestsEqualLimits, section: "requestsEqualLimits", mode: func(rs *RuleSet) *Mode { return &rs.RequestsEqualLimits.Mode },
		compile: compileRequestsEqualLimits, mutate: requestsEqualLimits},
	{id: MaxResources, section: "maxResources", mode: func(rs *RuleSet) *Mode { return &rs.MaxResources.Mode },
		compile: compileMaxResources, validate: maxResources},
	{id: NoPersistentVolumes, section: "noPersistentVolumes", mode: func(rs *RuleSet) *Mode { return &rs.NoPersistentVolumes.Mode },
		compile: compileNoPersistentVolumes, validate: noPersistentVolumes},
	{id: EphemeralStorage, section: "ephemeralStorage", mode: func(rs *RuleSet) *Mode { return &rs.EphemeralStorage.Mode },
		compile: compileEphemeralStorage, mutate: ephemeralStorageDefaults, validate: ephemeralStorage},
	{id: EnvSecrets, section: "envSecrets", mode: func(rs *RuleSet) *Mode { return &rs.EnvSecrets.Mode },
		compile: compileEnvSecrets, mutate: envSecrets},
	{id: ServiceAccount, section: "serviceAccount", mode: func(rs *RuleSet) *Mode { return &rs.ServiceAccount.Mode },
		compile: compileServiceAccount, validate: serviceAccount},
	{id: ImagePullSecrets, section: "imagePullSecrets", mode: func(rs *RuleSet) *Mode { return &rs.ImagePullSecrets.Mode },
		compile: compileImagePullSecrets, mutate: imagePullSecrets},
	{id: NodePool, section: "nodePool", mode: func(rs *RuleSet) *Mode { return &rs.NodePool.Mode },
		compile: compileNodePool, mutate: nodePoolPlacement, validate: nodePool},
	{id: ImageArchitecture, section: "imageArchitecture", mode: func(rs *RuleSet) *Mode { return &rs.ImageArchitecture.Mode },
		compile: compileImageArchitecture, validate: imageArchitecture},
}

// ruleByID returns a rule's entry.
func ruleByID(id RuleID) (rule, bool) {
	i := slices.IndexFunc(ruleTable, func(r rule) bool { return r.id == id })
	if i < 0 {
		return rule{}, false
	}
	return ruleTable[i], true
}

// RuleIDs lists every rule in the order it runs.
func RuleIDs() []RuleID {
	ids := make([]RuleID, len(ruleTable))
	for i, r := range ruleTable {
		ids[i] = r.id
	}
	return ids
}

// Section returns the key of a rule's section under spec.rules, "" for
// an unknown rule.
func Section(id RuleID) string {
	r, _ := ruleByID(id)
	return r.section
}

// Mutates reports whether a rule changes pods.
func Mutates(id RuleID) bool {
	r, ok := ruleByID(id)
	return ok && r.mutate != nil
}

// Validates reports whether a rule refuses pods.
func Validates(id RuleID) bool {
	r, ok := ruleByID(id)
	return ok && r.validate != nil
}

// input is what every rule reads besides the pod.
type input struct {
	rules *RuleSet
	facts Facts
	queue queueChoice
}

func (rs *RuleSet) input(pod *corev1.Pod, facts Facts) *input {
	return &input{rules: rs, facts: facts, queue: rs.queueOf(pod, facts)}
}

// Mutate applies the enforced mutating rules to pod in place and returns
// every change, including those that audit- and warn-mode rules would make
// but did not.
func (rs *RuleSet) Mutate(pod *corev1.Pod, facts Facts) []Change {
	in := rs.input(pod, facts)
	var changes []Change
	for _, r := range ruleTable {
		mode := rs.Mode(r.id)
		if r.mutate == nil || mode == Off {
			continue
		}
		target := pod
		if mode != Enforce {
			target = pod.DeepCopy()
		}
		for _, c := range r.mutate(target, in) {
			c.Rule, c.Mode = r.id, mode
			changes = append(changes, c)
		}
	}
	return changes
}

// Validate returns every violation of the validating rules, in rule order.
func (rs *RuleSet) Validate(pod *corev1.Pod, facts Facts) []Violation {
	return rs.validate(pod, facts)
}

// validate runs the validating rules, or only those named.
func (rs *RuleSet) validate(pod *corev1.Pod, facts Facts, only ...RuleID) []Violation {
	in := rs.input(pod, facts)
	var violations []Violation
	for _, r := range ruleTable {
		mode := rs.Mode(r.id)
		if r.validate == nil || mode == Off || (len(only) > 0 && !slices.Contains(only, r.id)) {
			continue
		}
		for _, v := range r.validate(pod, in) {
			// A rule may soften a finding (a failed lookup that policy
			// allows), never harden it beyond the rule's mode.
			v.Rule, v.Mode = r.id, weaker(mode, v.Mode)
			violations = append(violations, v)
		}
	}
	return violations
}

func weaker(a, b Mode) Mode {
	if b == "" || slices.Index(modes, a) <= slices.Index(modes, b) {
		return a
	}
	return b
}

// Applied keeps the changes that were made, not only reported.
func Applied(changes []Change) []Change {
	return enforced(changes, func(c Change) Mode { return c.Mode })
}

// Denials keeps the violations that refuse the pod.
func Denials(violations []Violation) []Violation {
	return enforced(violations, func(v Violation) Mode { return v.Mode })
}

func enforced[T any](items []T, mode func(T) Mode) []T {
	var out []T
	for _, item := range items {
		if mode(item) == Enforce {
			out = append(out, item)
		}
	}
	return out
}

// DenialMessage is the one message a DAG author sees when a pod is refused:
// every violation, in rule order, each with its fix.
func DenialMessage(podName string, denials []Violation) string {
	head := fmt.Sprintf("pod %q is forbidden by kpoguard: ", podName)
	if len(denials) == 1 {
		return head + denials[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s%d violations:", head, len(denials))
	for _, v := range denials {
		b.WriteString("\n")
		b.WriteString(v.String())
	}
	return b.String()
}
