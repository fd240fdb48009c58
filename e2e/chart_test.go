package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kindOf is the kind of a rendered YAML document.
func kindOf(t *testing.T, doc string) string {
	t.Helper()
	var meta struct{ Kind string }
	if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
		t.Fatal(err)
	}
	return meta.Kind
}

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
	installCertManagerCRDs(t)
	for _, c := range []struct {
		name, namespace string
		args            []string
		// account is kpoguard's service account; readsNodes whether its
		// RBAC lets it read nodes (workers.readNodes), writesReports
		// whether it may write PolicyReports (audit.policyReports).
		account                   string
		readsNodes, writesReports bool
	}{
		{"default values", "chart-default", nil, "chart-kpoguard", false, false},
		{"every toggle", "chart-full", []string{"--values", filepath.Join(repoRoot, "charts", "kpoguard", "ci", "full-values.yaml")}, "guard", true, true},
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
			crds := 0
			for _, doc := range strings.Split(rendered, "\n---\n") {
				if strings.Contains(doc, "kind: CustomResourceDefinition") {
					crds++
				}
				switch {
				case strings.Contains(doc, "kind: MutatingWebhookConfiguration"), strings.Contains(doc, "kind: ValidatingWebhookConfiguration"):
					webhooks = append(webhooks, doc)
				case strings.Contains(doc, "apiVersion: monitoring.coreos.com/v1"):
					// prometheus-operator's CRDs are not installed here;
					// TestChartMonitoringCarriesRulesAndDashboard checks these.
				case strings.TrimSpace(doc) != "":
					objects = append(objects, doc)
				}
			}
			// The PolicyReport CRD, only where reports are written.
			if want := map[bool]int{false: 0, true: 1}[c.writesReports]; crds != want {
				t.Errorf("%d CustomResourceDefinitions rendered, want %d", crds, want)
			}
			if r := kubectl(t, strings.Join(objects, "\n---\n"), "apply", "--server-side", "--field-manager=e2e", "-f", "-"); r.code != 0 {
				t.Fatalf("server-side apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r := kubectl(t, strings.Join(webhooks, "\n---\n"), "apply", "--server-side", "--dry-run=server", "--field-manager=e2e", "-f", "-"); r.code != 0 || strings.Count(r.stdout, "(server dry run)") != 2 {
				t.Fatalf("webhook configurations, server dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			// Worker lookups: pods read one by one or listed; the
			// audit's informer watches them; nodes watched when asked;
			// PolicyReports written when asked; nothing more.
			as := "system:serviceaccount:" + c.namespace + ":" + c.account
			for _, check := range []struct {
				verb, resource, subresource string
				want                        bool
			}{
				{"get", "pods", "", true}, {"list", "pods", "", true}, {"watch", "pods", "", true},
				{"create", "pods", "", false}, {"patch", "pods", "", false}, {"delete", "pods", "", false}, {"get", "pods", "log", false},
				{"list", "nodes", "", c.readsNodes}, {"watch", "nodes", "", c.readsNodes}, {"patch", "nodes", "", false},
				{"create", "policyreports.wgpolicyk8s.io", "", c.writesReports}, {"patch", "policyreports.wgpolicyk8s.io", "", false},
			} {
				r := kubectl(t, "", "auth", "can-i", check.verb, check.resource, "--subresource="+check.subresource, "--all-namespaces", "--as", as)
				if got := strings.TrimSpace(r.stdout) == "yes"; got != check.want {
					t.Errorf("%s can %s %s %s: %s, want %v", as, check.verb, check.resource, check.subresource, strings.TrimSpace(r.stdout), check.want)
				}
			}
		})
	}
	// The Deployment as stored: hardened as the chart promises, and
	// rolled out with no replica down.
	r := kubectl(t, "", "get", "deployment", "-n", "chart-default", "chart-kpoguard", "-o", "yaml")
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	expectFields(t, []field{
		{"replicas", strconv.Itoa(int(*d.Spec.Replicas)), "2"},
		{"rollout strategy", string(d.Spec.Strategy.Type), string(appsv1.RollingUpdateDeploymentStrategyType)},
		{"maxUnavailable", d.Spec.Strategy.RollingUpdate.MaxUnavailable.String(), "0"},
		{"maxSurge", d.Spec.Strategy.RollingUpdate.MaxSurge.String(), "1"},
		{"runAsNonRoot", boolText(spec.SecurityContext.RunAsNonRoot), "true"},
		{"seccomp", string(spec.SecurityContext.SeccompProfile.Type), string(corev1.SeccompProfileTypeRuntimeDefault)},
		{"readOnlyRootFilesystem", boolText(c.SecurityContext.ReadOnlyRootFilesystem), "true"},
		{"allowPrivilegeEscalation", boolText(c.SecurityContext.AllowPrivilegeEscalation), "false"},
		{"dropped capabilities", strings.Join(capabilityNames(c.SecurityContext.Capabilities.Drop), ","), "ALL"},
		{"policy source", c.Args[1], "--policy-configmap=chart-default/chart-kpoguard-policy"},
		{"readiness probe", c.ReadinessProbe.HTTPGet.Path, "/readyz"},
	})
}

// installCertManagerCRDs applies the CRDs the cert-manager module ships,
// so the chart's Issuers and Certificates can be applied.
func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("locating the cert-manager module: %v", err)
	}
	crds := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if r := kubectl(t, "", "apply", "--server-side", "-f", crds); r.code != 0 {
		t.Fatalf("applying cert-manager's CRDs: %s", r.stderr)
	}
	if r := kubectl(t, "", "wait", "--for=condition=Established", "--timeout=30s",
		"crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io"); r.code != 0 {
		t.Fatalf("cert-manager's CRDs not established: %s", r.stderr)
	}
}

// The certificate chain the chart asks cert-manager for, decoded with
// cert-manager's own API types: a self-signed Issuer signs a CA, a CA
// Issuer signs the serving certificate for the Service, and the webhooks
// name that certificate for CA injection.
func TestChartCertManagerChain(t *testing.T) {
	rendered, stderr, err := helmTemplate(t, "kp", "platform")
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	issuers := map[string]certmanagerv1.Issuer{}
	certs := map[string]certmanagerv1.Certificate{}
	injected := 0
	for _, doc := range strings.Split(rendered, "\n---\n") {
		switch kindOf(t, doc) {
		case "Issuer":
			var i certmanagerv1.Issuer
			if err := yaml.UnmarshalStrict([]byte(doc), &i); err != nil {
				t.Fatalf("Issuer: %v", err)
			}
			issuers[i.Name] = i
		case "Certificate":
			var c certmanagerv1.Certificate
			if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
				t.Fatalf("Certificate: %v", err)
			}
			certs[c.Name] = c
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if strings.Contains(doc, "cert-manager.io/inject-ca-from: platform/kp-kpoguard-serving") {
				injected++
			}
		}
	}
	ca, serving := certs["kp-kpoguard-ca"], certs["kp-kpoguard-serving"]
	expectFields(t, []field{
		{"self-signed issuer", boolText(ptr(issuers["kp-kpoguard-selfsigned"].Spec.SelfSigned != nil)), "true"},
		{"CA is a CA", boolText(ptr(ca.Spec.IsCA)), "true"},
		{"CA issued by", ca.Spec.IssuerRef.Name, "kp-kpoguard-selfsigned"},
		{"CA issuer's secret", caSecret(issuers["kp-kpoguard-ca"]), "kp-kpoguard-ca"},
		{"serving issued by", serving.Spec.IssuerRef.Name, "kp-kpoguard-ca"},
		{"serving secret", serving.Spec.SecretName, "kp-kpoguard-tls"},
		{"serving names", strings.Join(serving.Spec.DNSNames, ","), "kp-kpoguard.platform.svc,kp-kpoguard.platform.svc.cluster.local"},
		{"serving key rotation", string(serving.Spec.PrivateKey.RotationPolicy), "Always"},
		{"webhook configurations with CA injection", strconv.Itoa(injected), "2"},
	})
}

func caSecret(i certmanagerv1.Issuer) string {
	if i.Spec.CA == nil {
		return "no CA"
	}
	return i.Spec.CA.SecretName
}

func ptr[T any](v T) *T { return &v }

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
		{"workers.cacheSize=0", "/workers/cacheSize"},
		{"decisionLog.level=debug", "/decisionLog/level"},
		{"decisionLog.sample=0", "/decisionLog/sample"},
		{"networkPolicy.webhookFrom[0].ipblock.cidr=10.0.0.0/8", "/networkPolicy/webhookFrom/0"},
		{"audit.interval=often", "/audit/interval"},
		{"audit.namespaceMetrics.limit=0", "/audit/namespaceMetrics/limit"},
		{"audit.policyReport=true", "/audit"},
		// Not the schema's: the chart's own refusal.
		{"webhook.objectSelector.matchLabels=null", "audit.enabled needs webhook.objectSelector.matchLabels"},
	} {
		_, stderr, err := helmTemplate(t, "kpoguard", "kpoguard", "--set", c.set)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("--set %s: err %v, stderr %q, want a schema error naming %s", c.set, err, stderr, c.want)
		}
	}
}

// caDuration below twice duration fails helm template in either
// certificate mode, naming both values; twice is enough.
func TestChartRefusesShortCADuration(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		fail bool
	}{
		{name: "defaults", args: nil},
		{name: "exactly twice", args: []string{"--set", "certManager.duration=1h30m", "--set", "certManager.renewBefore=10m", "--set", "certManager.caDuration=3h"}},
		{name: "a minute short", args: []string{"--set", "certManager.duration=1h30m", "--set", "certManager.renewBefore=10m", "--set", "certManager.caDuration=2h59m"}, fail: true},
		{name: "shorter than duration", args: []string{"--set", "certManager.caDuration=1000h"}, fail: true},
		{name: "self-managed", args: []string{"--set", "certManager.enabled=false", "--set", "certManager.caDuration=4000h"}, fail: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := helmTemplate(t, "kp", "platform", c.args...)
			const want = "must be at least twice certManager.duration"
			switch {
			case c.fail && (err == nil || !strings.Contains(stderr, want) || !strings.Contains(stderr, "certManager.caDuration (")):
				t.Errorf("err %v, stderr %q, want %q", err, stderr, want)
			case !c.fail && err != nil:
				t.Errorf("helm template: %v: %s", err, stderr)
			}
		})
	}
}

// With the NetworkPolicy on, the webhook port admits only the peers
// networkPolicy.webhookFrom lists (the API server's addresses), the
// metrics port only the metrics namespaces, and nothing else; without
// webhookFrom the chart refuses to render rather than admit every pod.
func TestChartNetworkPolicyAdmitsWebhookOnlyFromControlPlane(t *testing.T) {
	peers := []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/16", Except: []string{"10.0.128.0/17"}}},
		{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"component": "kube-apiserver"}}},
	}
	values, err := yaml.Marshal(map[string]any{"networkPolicy": map[string]any{
		"enabled": true, "webhookFrom": peers, "metricsFromNamespaces": []string{"monitoring"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, values, 0o600); err != nil {
		t.Fatal(err)
	}
	rendered, stderr, err := helmTemplate(t, "kp", "platform", "--values", valuesFile, "--show-only", "templates/networkpolicy.yaml")
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(rendered), &np); err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.Ingress) != 2 {
		t.Fatalf("%d ingress rules, want the webhook's and the metrics': %+v", len(np.Spec.Ingress), np.Spec.Ingress)
	}
	webhook, metrics := np.Spec.Ingress[0], np.Spec.Ingress[1]
	if len(webhook.Ports) != 1 || webhook.Ports[0].Port.String() != "webhook" || !equality.Semantic.DeepEqual(webhook.From, peers) {
		t.Errorf("webhook rule: ports %+v from %+v, want port webhook from exactly %+v", webhook.Ports, webhook.From, peers)
	}
	wantMetrics := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}
	if len(metrics.Ports) != 1 || metrics.Ports[0].Port.String() != "metrics" || !equality.Semantic.DeepEqual(metrics.From, wantMetrics) {
		t.Errorf("metrics rule: ports %+v from %+v, want port metrics from the monitoring namespace", metrics.Ports, metrics.From)
	}

	for _, args := range [][]string{
		{"--set", "networkPolicy.enabled=true"},
		{"--set", "networkPolicy.enabled=true", "--set-json", "networkPolicy.webhookFrom=[]"},
	} {
		_, stderr, err := helmTemplate(t, "kp", "platform", args...)
		const want = "networkPolicy.webhookFrom must list where the API server calls kpoguard from"
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%v: err %v, stderr %q, want %q", args, err, stderr, want)
		}
	}
}

// The chart carries the alert rule file and the dashboard as they are (the
// files the repository's monitoring tests check with promtool and against
// kpoguard's metrics), and its ServiceMonitor names the job the rules
// select.
func TestChartMonitoringCarriesRulesAndDashboard(t *testing.T) {
	rendered, stderr, err := helmTemplate(t, "kp", "platform", "--values", filepath.Join(repoRoot, "charts", "kpoguard", "ci", "full-values.yaml"),
		"--show-only", "templates/monitoring.yaml")
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	chart := filepath.Join(repoRoot, "charts", "kpoguard")
	var rules, dashboard, jobLabel bool
	for _, doc := range strings.Split(rendered, "\n---\n") {
		switch kindOf(t, doc) {
		case "PrometheusRule":
			var r struct{ Spec any }
			if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
				t.Fatal(err)
			}
			var file any
			if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(chart, "alerts", "kpoguard-rules.yaml"))), &file); err != nil {
				t.Fatal(err)
			}
			rules = equality.Semantic.DeepEqual(r.Spec, file)
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			dashboard = strings.TrimSpace(cm.Data["kpoguard.json"]) == strings.TrimSpace(readFile(t, filepath.Join(chart, "dashboards", "kpoguard.json")))
		case "ServiceMonitor":
			var sm struct {
				Spec struct{ JobLabel string }
			}
			if err := yaml.Unmarshal([]byte(doc), &sm); err != nil {
				t.Fatal(err)
			}
			// The Service's label of this name is "kpoguard": the job the
			// rules select.
			jobLabel = sm.Spec.JobLabel == "app.kubernetes.io/name"
		}
	}
	if !rules || !dashboard || !jobLabel {
		t.Errorf("rendered monitoring: rule file carried as is %v, dashboard as is %v, job named by app.kubernetes.io/name %v; want all\n%s", rules, dashboard, jobLabel, rendered)
	}
}

// The PolicyReport CRD renders only where kpoguard writes reports and the
// chart may install it, with helm's keep policy so that an uninstall
// never deletes it along with other tools' reports.
func TestChartPolicyReportCRD(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want bool
	}{
		{"defaults", nil, false},
		{"policy reports", []string{"--set", "audit.policyReports=true"}, true},
		{"policy reports, CRD left to others", []string{"--set", "audit.policyReports=true", "--set", "audit.policyReportCRD=false"}, false},
		{"audit off", []string{"--set", "audit.enabled=false", "--set", "audit.policyReports=true"}, false},
		{"every toggle", []string{"--values", filepath.Join(repoRoot, "charts", "kpoguard", "ci", "full-values.yaml")}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rendered, stderr, err := helmTemplate(t, "kp", "platform", c.args...)
			if err != nil {
				t.Fatalf("helm template: %v: %s", err, stderr)
			}
			crd, found := policyReportCRD(t, rendered)
			if found != c.want {
				t.Fatalf("PolicyReport CRD rendered %v, want %v", found, c.want)
			}
			if found && crd.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Errorf("annotations %v, want helm.sh/resource-policy: keep", crd.Annotations)
			}
		})
	}
}

// Against a cluster (helm's server dry run, where lookup reads the API
// server), the chart leaves a PolicyReport CRD another release owns
// alone, and keeps rendering the one its own release installed. The
// suite's CRD stands for one Kyverno installed without helm's metadata.
func TestChartPolicyReportCRDLeftToItsOwner(t *testing.T) {
	const crdName = "crd/policyreports.wgpolicyk8s.io"
	own := func(release, namespace string) {
		t.Helper()
		if r := kubectl(t, "", "annotate", "--overwrite", crdName,
			"meta.helm.sh/release-name="+release, "meta.helm.sh/release-namespace="+namespace); r.code != 0 {
			t.Fatalf("annotating the CRD: %s", r.stderr)
		}
	}
	t.Cleanup(func() {
		kubectl(t, "", "annotate", crdName, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-")
	})
	for _, c := range []struct {
		name           string
		owner, ownerNS string
		want           bool
	}{
		{name: "installed without helm", want: false},
		{name: "another release's", owner: "kyverno", ownerNS: "kyverno", want: false},
		{name: "a same-named release in another namespace", owner: "kp", ownerNS: "kyverno", want: false},
		{name: "this release's", owner: "kp", ownerNS: "platform", want: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.owner != "" {
				own(c.owner, c.ownerNS)
			}
			r := runTool(t, "helm", "", "template", "kp", filepath.Join(repoRoot, "charts", "kpoguard"), "--namespace", "platform",
				"--dry-run=server", "--set", "audit.policyReports=true")
			if r.code != 0 {
				t.Fatalf("helm template --dry-run=server: exit %d: %s", r.code, r.stderr)
			}
			if _, found := policyReportCRD(t, r.stdout); found != c.want {
				t.Errorf("PolicyReport CRD rendered %v, want %v", found, c.want)
			}
		})
	}
}

// policyReportCRD is the PolicyReport CRD among rendered documents.
func policyReportCRD(t *testing.T, rendered string) (metav1.ObjectMeta, bool) {
	t.Helper()
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if kindOf(t, doc) != "CustomResourceDefinition" {
			continue
		}
		var crd struct{ Metadata metav1.ObjectMeta }
		if err := yaml.Unmarshal([]byte(doc), &crd); err != nil {
			t.Fatal(err)
		}
		if crd.Metadata.Name == "policyreports.wgpolicyk8s.io" {
			return crd.Metadata, true
		}
	}
	return metav1.ObjectMeta{}, false
}

// The alert rules' expressions are fixed, so with them on the chart
// refuses what they would get wrong: no job named "kpoguard" to scrape
// (KpoguardDown's absent() would fire for good) and an audit interval
// KpoguardAuditStale's 30 minutes do not cover.
func TestChartRefusesValuesTheAlertsGetWrong(t *testing.T) {
	const (
		noJob      = "monitoring.prometheusRule.enabled needs monitoring.serviceMonitor.enabled, or monitoring.prometheusRule.ownScrapeJob"
		longAudits = "monitoring.prometheusRule.enabled needs audit.interval at most 10m (it is "
	)
	rules := []string{"--set", "monitoring.prometheusRule.enabled=true"}
	scraped := append([]string{"--set", "monitoring.serviceMonitor.enabled=true"}, rules...)
	for _, c := range []struct {
		name string
		args []string
		want string // "": renders
	}{
		{"rules without a scrape job", rules, noJob},
		{"rules with the ServiceMonitor", scraped, ""},
		{"rules with the user's own kpoguard job", append([]string{"--set", "monitoring.prometheusRule.ownScrapeJob=true"}, rules...), ""},
		{"ServiceMonitor without rules", []string{"--set", "monitoring.serviceMonitor.enabled=true"}, ""},
		{"audit every 10m", append([]string{"--set", "audit.interval=10m"}, scraped...), ""},
		{"audit every 10m1s", append([]string{"--set", "audit.interval=10m1s"}, scraped...), longAudits + "10m1s)"},
		{"audit every 1h", append([]string{"--set", "audit.interval=1h"}, scraped...), longAudits + "1h)"},
		{"audit every 1h, audit off", append([]string{"--set", "audit.interval=1h", "--set", "audit.enabled=false"}, scraped...), ""},
		{"audit every 1h without rules", []string{"--set", "audit.interval=1h"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := helmTemplate(t, "kp", "platform", c.args...)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("helm template: %v: %s", err, stderr)
			case c.want != "" && (err == nil || !strings.Contains(stderr, c.want)):
				t.Errorf("err %v, stderr %q, want %q", err, stderr, c.want)
			}
		})
	}
}
