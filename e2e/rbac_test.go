package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The release the RBAC comparison renders: kpoguard's objects are named
// kp-kpoguard, its policy ConfigMap kp-kpoguard-policy and its Secret
// kp-kpoguard-tls.
const (
	rbacRelease   = "kp"
	rbacNamespace = "platform"
	rbacFullname  = "kp-kpoguard"
)

// need is what kpoguard asks the API server for: verbs on resources, in
// the release's namespace or cluster-wide, of the named objects only
// when names is set.
type need struct {
	namespaced bool
	apiGroup   string
	resources  []string
	names      []string
	verbs      []string
}

// feature is a part of kpoguard that needs permissions, with the chart
// value that turns it on.
type feature struct {
	name string
	// set turns it on, --set style; "" when it is always on.
	set   string
	needs []need
}

// featureNeeds lists what each part of kpoguard asks the API server for,
// read from the code that asks. The chart must grant their union for the
// features its values turn on, and nothing else.
var featureNeeds = []feature{
	{
		// webhook.WatchConfigMap: an informer listing and watching one
		// ConfigMap by name (a metadata.name field selector, which RBAC
		// matches against resourceNames); it never GETs it.
		name: "policy ConfigMap",
		needs: []need{{namespaced: true, resources: []string{"configmaps"},
			names: []string{rbacFullname + "-policy"}, verbs: []string{"list", "watch"}}},
	},
	{
		// webhook.NamespaceCache: an informer over namespaces, and a GET
		// for one it has not seen yet.
		name: "namespace labels", set: "rbac.namespaces=true",
		needs: []need{{resources: []string{"namespaces"}, verbs: []string{"get", "list", "watch"}}},
	},
	{
		// webhook.PullSecretKeychains (go-containerregistry's Kubernetes
		// keychain): a GET of the pod's service account and of each pull
		// secret it or the pod names, in the pod's namespace.
		name: "pull secrets", set: "registry.pullSecrets=true",
		needs: []need{{resources: []string{"secrets", "serviceaccounts"}, verbs: []string{"get"}}},
	},
	{
		// webhook.WorkerCache: Worker and IsWorker (the worker guard)
		// GET a pod; ExecutorPods (the kubernetes-executor fallback)
		// lists pods by label. Never watched.
		name: "worker lookups", set: "workers.selector=component=worker",
		needs: []need{{resources: []string{"pods"}, verbs: []string{"get", "list"}}},
	},
	{
		// WorkerCache.NodeLabels: an informer over nodes, and a GET for
		// one it has not seen yet. Only with worker lookups.
		name: "node labels", set: "workers.readNodes=true",
		needs: []need{{resources: []string{"nodes"}, verbs: []string{"get", "list", "watch"}}},
	},
	{
		// The worker guard reads the pod an exec names through the
		// worker lookups: nothing more.
		name: "worker guard", set: "workers.guard.enabled=true",
	},
	{
		// audit.WatchPods: an informer over the running task pods,
		// selected by label and phase; never a GET. audit.Lead: the
		// Lease, read, created when missing (create cannot be limited
		// by name) and renewed.
		name: "background audit", set: "audit.enabled=true",
		needs: []need{
			{resources: []string{"pods"}, verbs: []string{"list", "watch"}},
			{namespaced: true, apiGroup: "coordination.k8s.io", resources: []string{"leases"}, names: []string{rbacFullname + "-audit"}, verbs: []string{"get", "update"}},
			{namespaced: true, apiGroup: "coordination.k8s.io", resources: []string{"leases"}, verbs: []string{"create"}},
		},
	},
	{
		// audit.ReportWriter: one LIST of its reports a pass; a create,
		// update or delete of a namespace's report that changed; a GET
		// only when a create finds a report of its name written before
		// reports carried their writer's label, to take it over. Only
		// with the audit.
		name: "policy reports", set: "audit.policyReports=true",
		needs: []need{{apiGroup: "wgpolicyk8s.io", resources: []string{"policyreports"}, verbs: []string{"get", "list", "create", "update", "delete"}}},
	},
	{
		// certs.Manager: GET the Secret, create it when missing (create
		// cannot be limited by name), update it at renewal; GET and update
		// the two webhook configurations whose caBundle it keeps; watch
		// all three by name (list and watch with a metadata.name field
		// selector).
		name: "self-managed certificates", set: "certManager.enabled=false",
		needs: []need{
			{namespaced: true, resources: []string{"secrets"}, names: []string{rbacFullname + "-self-managed-tls"}, verbs: []string{"get", "update", "list", "watch"}},
			{namespaced: true, resources: []string{"secrets"}, verbs: []string{"create"}},
			{apiGroup: "admissionregistration.k8s.io", resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
				names: []string{rbacFullname}, verbs: []string{"get", "update", "list", "watch"}},
		},
	},
}

// grant is one verb on one resource (of one name, or any: ""), in the
// release's namespace or cluster-wide: the unit RBAC rules are compared in.
type grant struct {
	namespace, apiGroup, resource, name, verb string
}

func (g grant) String() string {
	where := "cluster-wide"
	if g.namespace != "" {
		where = "in namespace " + g.namespace
	}
	name := ""
	if g.name != "" {
		name = " " + g.name
	}
	return fmt.Sprintf("%s %s%s (group %q) %s", g.verb, g.resource, name, g.apiGroup, where)
}

// grants expands a rule into grants; a wildcard stays a grant of its own,
// which no need matches.
func grants(namespace string, r rbacv1.PolicyRule) []grant {
	var out []grant
	names := r.ResourceNames
	if len(names) == 0 {
		names = []string{""}
	}
	for _, url := range r.NonResourceURLs {
		for _, verb := range r.Verbs {
			out = append(out, grant{resource: "nonResourceURL " + url, verb: verb})
		}
	}
	for _, group := range r.APIGroups {
		for _, resource := range r.Resources {
			for _, name := range names {
				for _, verb := range r.Verbs {
					out = append(out, grant{namespace, group, resource, name, verb})
				}
			}
		}
	}
	return out
}

func (n need) grants() []grant {
	ns := ""
	if n.namespaced {
		ns = rbacNamespace
	}
	return grants(ns, rbacv1.PolicyRule{APIGroups: []string{n.apiGroup}, Resources: n.resources, ResourceNames: n.names, Verbs: n.verbs})
}

// renderedGrants renders the chart and returns what its roles grant
// kpoguard's ServiceAccount through their bindings. Roles no binding uses,
// and bindings to anyone else or to a role not rendered, are errors.
func renderedGrants(t *testing.T, args ...string) []grant {
	t.Helper()
	rendered, stderr, err := helmTemplate(t, rbacRelease, rbacNamespace, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v: %s", args, err, stderr)
	}
	roles := map[string][]grant{}
	type binding struct {
		kind, name string
		ref        rbacv1.RoleRef
		subjects   []rbacv1.Subject
	}
	var bindings []binding
	for _, doc := range strings.Split(rendered, "\n---\n") {
		switch kindOf(t, doc) {
		case "Role":
			var r rbacv1.Role
			decodeStrict(t, doc, &r)
			for _, rule := range r.Rules {
				roles["Role/"+r.Name] = append(roles["Role/"+r.Name], grants(r.Namespace, rule)...)
			}
		case "ClusterRole":
			var r rbacv1.ClusterRole
			decodeStrict(t, doc, &r)
			for _, rule := range r.Rules {
				roles["ClusterRole/"+r.Name] = append(roles["ClusterRole/"+r.Name], grants("", rule)...)
			}
		case "RoleBinding":
			var b rbacv1.RoleBinding
			decodeStrict(t, doc, &b)
			bindings = append(bindings, binding{"RoleBinding", b.Name, b.RoleRef, b.Subjects})
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			decodeStrict(t, doc, &b)
			bindings = append(bindings, binding{"ClusterRoleBinding", b.Name, b.RoleRef, b.Subjects})
		}
	}
	kpoguard := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: rbacFullname, Namespace: rbacNamespace}}
	var out []grant
	bound := map[string]bool{}
	for _, b := range bindings {
		role := b.ref.Kind + "/" + b.ref.Name
		if !slices.Equal(b.subjects, kpoguard) {
			t.Errorf("%v: %s %s binds %+v, want kpoguard's ServiceAccount only", args, b.kind, b.name, b.subjects)
		}
		// A RoleBinding binds a Role, a ClusterRoleBinding a ClusterRole:
		// each grants in its role's own scope, as the grants above assume.
		if _, ok := roles[role]; !ok || b.ref.Kind != strings.TrimSuffix(b.kind, "Binding") {
			t.Errorf("%v: %s %s binds %s, which the chart does not render as a role of its scope", args, b.kind, b.name, role)
		}
		bound[role] = true
		out = append(out, roles[role]...)
	}
	for role := range roles {
		if !bound[role] {
			t.Errorf("%v: %s is bound to no one", args, role)
		}
	}
	return out
}

func decodeStrict(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
}

// The chart's RBAC is what kpoguard's features need, for every
// combination of the values that turn them on: nothing missing, nothing
// more.
func TestChartRBACIsWhatFeaturesNeed(t *testing.T) {
	var optional []feature
	for _, f := range featureNeeds {
		if f.set != "" {
			optional = append(optional, f)
		}
	}
	for combo := range 1 << len(optional) {
		on := map[string]bool{}
		// Every value set either way, so the chart's defaults decide none.
		var args, names []string
		for i, f := range optional {
			if combo&(1<<i) != 0 {
				on[f.name] = true
				args = append(args, "--set", f.set)
				names = append(names, f.name)
			} else {
				args = append(args, "--set", turnedOff(f.set))
			}
		}
		if on["worker guard"] && !on["worker lookups"] {
			continue // the chart refuses: the guard needs the worker selector
		}
		var want []grant
		for _, f := range featureNeeds {
			// Node labels are read only through the worker lookups,
			// reports written only by the audit.
			if f.set == "" || on[f.name] && (f.name != "node labels" || on["worker lookups"]) && (f.name != "policy reports" || on["background audit"]) {
				for _, n := range f.needs {
					want = append(want, n.grants()...)
				}
			}
		}
		got := renderedGrants(t, args...)
		var problems []string
		if missing := grantsLacking(want, got); len(missing) > 0 {
			problems = append(problems, "missing:\n\t"+grantLines(missing))
		}
		if excess := grantsLacking(got, want); len(excess) > 0 {
			problems = append(problems, "more than needed:\n\t"+grantLines(excess))
		}
		if len(problems) > 0 {
			t.Errorf("features on: %v\n%s", names, strings.Join(problems, "\n"))
		}
	}
}

// turnedOff is the --set that turns a feature's value the other way.
func turnedOff(set string) string {
	key, value, _ := strings.Cut(set, "=")
	switch value {
	case "true":
		return key + "=false"
	case "false":
		return key + "=true"
	}
	return key + "="
}

// grantsLacking is the grants of a that b lacks.
func grantsLacking(a, b []grant) []grant {
	var out []grant
	for _, g := range a {
		if !slices.Contains(b, g) && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// grantLines is the grants, sorted, one a line.
func grantLines(gs []grant) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	slices.Sort(s)
	return strings.Join(s, "\n\t")
}
