package e2e

import (
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	celplugin "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// A lint of the chart's matchConditions (the worker guard's included):
// each compiles in the API server's own CEL environment for webhooks, and,
// evaluated by the API server's own matcher, errs for no request shape (an error refuses the
// request under failurePolicy Fail) and decides as intended. It covers
// shapes the API server would not let a test produce, such as an update
// whose old pod has no tolerations at all.
func TestChartMatchConditionsCompileAndNeverErr(t *testing.T) {
	bare := sandbox.TaskPod("lint")
	stored := bare.DeepCopy() // as the API server stores it: default tolerations
	stored.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}
	with := func(p *corev1.Pod, change func(*corev1.Pod)) *corev1.Pod {
		p = p.DeepCopy()
		change(p)
		return p
	}
	labelled := func(p *corev1.Pod) *corev1.Pod {
		return with(p, func(p *corev1.Pod) { p.Labels["already_checked"] = "True" })
	}
	withInit := with(stored, func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: "ubuntu:22.04"}}
	})
	cases := []struct {
		name        string
		op          admission.Operation
		subresource string
		old, pod    *corev1.Pod
		validate    bool // whether validate-pods is called
	}{
		{"create", admission.Create, "", nil, bare, true},
		{"label, no tolerations on either side", admission.Update, "", bare, labelled(bare), false},
		{"label", admission.Update, "", stored, labelled(stored), false},
		{"label, with init containers", admission.Update, "", withInit, labelled(withInit), false},
		{"annotation", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Annotations = map[string]string{"a": "b"} }), false},
		{"finalizer", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Finalizers = []string{"example.com/f"} }), false},
		{"image", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "ubuntu:24.04" }), true},
		{"init container image", admission.Update, "", withInit, with(withInit, func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "ubuntu:24.04" }), true},
		{"first toleration", admission.Update, "", bare, with(bare, func(p *corev1.Pod) { p.Spec.Tolerations = stored.Spec.Tolerations }), true},
		{"toleration added", admission.Update, "", stored, with(stored, func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists})
		}), true},
		{"task label removed", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { delete(p.Labels, "kubernetes_pod_operator") }), true},
		{"task label changed", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Labels["kubernetes_pod_operator"] = "False" }), true},
		{"all labels removed", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Labels = nil }), true},
		{"nodeSelector added", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"pool": "x"} }), true},
		{"node affinity added", admission.Update, "", stored, with(stored, func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "k", Operator: corev1.NodeSelectorOpExists}}}}}}}
		}), true},
		{"pod affinity only", admission.Update, "", stored, with(stored, func(p *corev1.Pod) { p.Spec.Affinity = &corev1.Affinity{} }), false},
		{"scheduling gate lifted", admission.Update, "", with(stored, func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "hold"}} }), stored, true},
		{"resize", admission.Update, "resize", stored, stored, true},
		{"exec", admission.Connect, "exec", nil, stored, false},
		{"attach", admission.Connect, "attach", nil, stored, false},
		{"ephemeral container", admission.Update, "ephemeralcontainers", stored, stored, true},
	}

	compiler := celplugin.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	compile := func(hook string, conditions []admissionregistrationv1.MatchCondition, policy *admissionregistrationv1.FailurePolicyType) matchconditions.Matcher {
		exprs := make([]celplugin.ExpressionAccessor, len(conditions))
		for i, c := range conditions {
			exprs[i] = &matchconditions.MatchCondition{Name: c.Name, Expression: c.Expression}
		}
		// As the API server compiles a webhook's conditions.
		eval := compiler.CompileCondition(exprs, celplugin.OptionalVariableDeclarations{HasAuthorizer: true}, environment.StoredExpressions)
		for _, err := range eval.CompilationErrors() {
			t.Errorf("%s: %v", hook, err)
		}
		return matchconditions.NewMatcher(eval, policy, "webhook", "validating", hook)
	}
	var hooks []admissionregistrationv1.ValidatingWebhook
	hooks = append(hooks, cluster.Webhooks.Validating.Webhooks...)
	// The worker guard's, as the chart renders them when it is on.
	hooks = append(hooks, guardWebhooks(t, map[string]any{"workers": map[string]any{"guard": map[string]any{"exemptUsers": []string{"alice"}}}})...)
	for _, w := range cluster.Webhooks.Mutating.Webhooks {
		hooks = append(hooks, admissionregistrationv1.ValidatingWebhook{Name: w.Name, Rules: w.Rules, MatchConditions: w.MatchConditions, FailurePolicy: w.FailurePolicy})
	}
	linted := 0
	for _, w := range hooks {
		if len(w.MatchConditions) == 0 {
			continue
		}
		linted++
		m := compile(w.Name, w.MatchConditions, w.FailurePolicy)
		evaluated := 0
		for _, c := range cases {
			if !sentBy(w.Rules, c.op, c.subresource) {
				continue // the API server never evaluates this webhook's conditions for it
			}
			evaluated++
			res := m.Match(t.Context(), podAttributes(c.op, c.subresource, c.old, c.pod), nil, nil)
			if res.Error != nil {
				t.Errorf("%s, %s: %v", w.Name, c.name, res.Error)
				continue
			}
			if w.Name == "validate-pods.kpoguard.io" && res.Matches != c.validate {
				t.Errorf("%s, %s: called %v, want %v (failed condition %q)", w.Name, c.name, res.Matches, c.validate, res.FailedConditionName)
			}
		}
		if evaluated == 0 {
			t.Errorf("%s: no request shape here is one its rules send: add one", w.Name)
		}
	}
	if linted == 0 {
		t.Fatal("the chart renders no matchConditions: this lint checks nothing")
	}
}

// sentBy reports whether a webhook's rules send a pod request of this
// operation and subresource.
func sentBy(rules []admissionregistrationv1.RuleWithOperations, op admission.Operation, subresource string) bool {
	resource := "pods"
	if subresource != "" {
		resource += "/" + subresource
	}
	for _, r := range rules {
		if (slices.Contains(r.Operations, admissionregistrationv1.OperationType(op)) || slices.Contains(r.Operations, admissionregistrationv1.OperationAll)) &&
			slices.Contains(r.Resources, resource) {
			return true
		}
	}
	return false
}

// podAttributes are a pod request's admission attributes as the API
// server hands them to a webhook's matcher; a CONNECT's object is its
// options, as for kubectl exec.
func podAttributes(op admission.Operation, subresource string, old, pod *corev1.Pod) *admission.VersionedAttributes {
	kind := corev1.SchemeGroupVersion.WithKind("Pod")
	var oldObj runtime.Object
	if old != nil {
		oldObj = old
	}
	var obj runtime.Object = pod
	if op == admission.Connect {
		kind = corev1.SchemeGroupVersion.WithKind("PodExecOptions")
		obj = &corev1.PodExecOptions{Command: []string{"sh"}}
	}
	attrs := admission.NewAttributesRecord(obj, oldObj, kind, taskNamespace, pod.Name, corev1.SchemeGroupVersion.WithResource("pods"),
		subresource, op, &metav1.UpdateOptions{}, false, &user.DefaultInfo{Name: "system:serviceaccount:airflow:airflow-worker"})
	return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: kind,
		VersionedObject: admission.NewLazyObject(obj), VersionedOldObject: admission.NewLazyObject(oldObj)}
}
