package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpoguard/kpoguard/audit"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The background audit and `kpoguard audit` against the real API server:
// task pods admitted under the example policy, then the policy tightened
// in audit mode.

const auditNamespace = "audit-e2e"

// tightenedCPU is the example policy with a maximum container and pod
// CPU of 1500m, in audit mode: pods admitted with 2 CPUs offend it, those
// with the default 1 do not.
func tightenedCPU(t testing.TB, mode string) string {
	t.Helper()
	doc := readFile(t, filepath.Join(repoRoot, "examples", "policy.yaml"))
	old := "    maxResources:\n      mode: enforce\n      container: {cpu: \"4\", memory: 8Gi}\n      pod: {cpu: \"4\", memory: 8Gi}"
	if !strings.Contains(doc, old) {
		t.Fatal("examples/policy.yaml changed: update this test")
	}
	return strings.Replace(doc, old, "    maxResources:\n      mode: "+mode+"\n      container: {cpu: 1500m, memory: 8Gi}\n      pod: {cpu: 1500m, memory: 8Gi}", 1)
}

// createAuditPods creates small task pods (the default size) and big
// ones (2 CPUs) in auditNamespace, admitted under the policy in force,
// and returns the big ones' names. They stay pending: no scheduler runs.
func createAuditPods(t *testing.T, small, big int) []string {
	t.Helper()
	if err := cluster.CreateNamespace(t.Context(), auditNamespace, nil); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// Pods bound to no node go at once; the namespace stays (no
	// namespace controller runs to empty it).
	t.Cleanup(func() {
		err := cluster.Client.CoreV1().Pods(auditNamespace).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
		if err != nil {
			t.Error(err)
		}
	})
	var pods []*corev1.Pod
	var bigNames []string
	for i := range small + big {
		p := sandbox.TaskPod(fmt.Sprintf("task-%02d", i))
		p.Labels["dag_id"], p.Labels["task_id"] = "audit_dag", fmt.Sprintf("task_%02d", i)
		if i >= small {
			two := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")}
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: two}
			bigNames = append(bigNames, p.Name)
		}
		pods = append(pods, p)
	}
	for i, err := range createPods(cluster.Client, auditNamespace, pods) {
		if err != nil {
			t.Fatalf("creating %s: %v", pods[i].Name, err)
		}
	}
	return bigNames
}

// apiCounter is a proxy on loopback in front of the API server, counting the requests that pass: a kpoguard given its
// kubeconfig makes every request through it.
type apiCounter struct {
	mu       sync.Mutex
	requests map[string]int
}

// count is how many requests of a kind passed: e.g. "LIST /api/v1/pods".
func (c *apiCounter) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[kind]
}

// total is how many requests passed.
func (c *apiCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := 0
	for _, n := range c.requests {
		sum += n
	}
	return sum
}

// matching is the requests whose kind contains s.
func (c *apiCounter) matching(s string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, n := range c.requests {
		if strings.Contains(k, s) {
			out[k] = n
		}
	}
	return out
}

// countingKubeconfig returns a copy of kubeconfig whose server is a
// counting proxy to the API server.
func countingKubeconfig(t testing.TB, kubeconfig string) (string, *apiCounter) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	apiServer, err := url.Parse(cluster.Env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: cluster.Env.Config.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	counter := &apiCounter{requests: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(apiServer)
	proxy.Transport, proxy.FlushInterval = transport, -1 // watches stream
	// TLS: client-go sends credentials only over it.
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verb := r.Method
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true":
			verb = "WATCH"
		case r.Method == http.MethodGet && isCollection(r.URL.Path):
			verb = "LIST"
		}
		counter.mu.Lock()
		counter.requests[verb+" "+r.URL.Path]++
		counter.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(server.Close)
	for _, c := range cfg.Clusters {
		c.Server, c.CertificateAuthority = server.URL, ""
		c.CertificateAuthorityData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	}
	out := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out, counter
}

// isCollection says whether an API path names a collection
// (/api/v1/pods, /api/v1/namespaces/ns/pods) rather than one object.
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	prefix := 2 // api/v1
	if parts[0] == "apis" {
		prefix = 3 // apis/group/version
	}
	rest := parts[min(prefix, len(parts)):]
	if len(rest) >= 2 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	return len(rest) == 1
}

// startAuditor starts a kpoguard serve process besides the sandbox's,
// with its own ports and the audit flags, and stops it when the test
// ends. It serves no webhook the API server calls.
func startAuditor(t testing.TB, kubeconfig string, args ...string) *sandbox.Process {
	t.Helper()
	p := newAuditor(t, kubeconfig, args...)
	startAuditorProcess(t, p)
	return p
}

// newAuditor is startAuditor's process, not yet started, its ports
// chosen: a Prometheus can be told its metrics address first.
func newAuditor(t testing.TB, kubeconfig string, args ...string) *sandbox.Process {
	t.Helper()
	var ports [3]int
	for i := range ports {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = port
	}
	k := cluster.Kpoguard
	return &sandbox.Process{
		Binary: k.Binary, Kubeconfig: kubeconfig, CertDir: k.CertDir, Host: k.Host, Port: ports[0],
		HealthAddr: "127.0.0.1:" + strconv.Itoa(ports[1]), MetricsAddr: "127.0.0.1:" + strconv.Itoa(ports[2]),
		LogPath:   filepath.Join(t.TempDir(), "kpoguard.log"),
		ExtraArgs: append([]string{"--registry-ca-file", cluster.RegistryCAFile}, args...),
	}
}

// startAuditorProcess starts an auditor and stops it when the test ends.
func startAuditorProcess(t testing.TB, p *sandbox.Process) {
	t.Helper()
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("auditor log:\n%s", p.Logs())
		}
	})
}

// policyReport is the part of a PolicyReport the tests read.
type policyReport struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Summary map[string]int `json:"summary"`
	Results []struct {
		Policy     string            `json:"policy"`
		Rule       string            `json:"rule"`
		Result     string            `json:"result"`
		Source     string            `json:"source"`
		Message    string            `json:"message"`
		Properties map[string]string `json:"properties"`
		Resources  []struct {
			Kind, Name, Namespace, UID string
		} `json:"resources"`
	} `json:"results"`
}

// readPolicyReport reads kpoguard's report of a namespace with kubectl,
// as docs/operations.md says to.
func readPolicyReport(t *testing.T, ns string) (policyReport, bool) {
	t.Helper()
	r := kubectl(t, "", "get", "policyreports.wgpolicyk8s.io", "kpoguard", "-n", ns, "-o", "json")
	if r.code != 0 {
		return policyReport{}, false
	}
	var rep policyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	return rep, true
}

func namespaceSeries(rule, mode, result string) string {
	return fmt.Sprintf(`kpoguard_audit_namespace_pods{mode=%q,result=%q,rule=%q,task_namespace=%q}`, mode, result, rule, auditNamespace)
}

// The background audit reports exactly the running pods that offend a
// tightened policy, in its metrics and in a PolicyReport, soon after the
// policy changes; its API load is one LIST and one WATCH of the task
// pods, not a GET per pod; `kpoguard audit` prints the same findings.
func TestBackgroundAudit(t *testing.T) {
	const small, big = 24, 6
	bigNames := createAuditPods(t, small, big)
	kubeconfig, counter := countingKubeconfig(t, cluster.Kpoguard.Kubeconfig)
	// An hour apart: after the first pass, only a policy change starts one.
	auditor := startAuditor(t, kubeconfig, "--audit-interval=1h", "--audit-policy-reports", "--audit-namespace-metrics-limit=100")
	runs := func() float64 { return metricOf(t, auditor, `kpoguard_audit_runs_total{result="success"}`) }
	waitUntil(t, "the first audit", func() bool { return runs() >= 1 })
	if got := metricOf(t, auditor, `kpoguard_audit_leader`); got != 1 {
		t.Errorf("kpoguard_audit_leader %v on the only auditor, want 1", got)
	}
	// Every unfinished task pod of the cluster, other tests' too.
	taskPods, err := cluster.Client.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{LabelSelector: "kubernetes_pod_operator=True", FieldSelector: "status.phase!=Succeeded,status.phase!=Failed"})
	if err != nil {
		t.Fatal(err)
	}
	if got := metricOf(t, auditor, "kpoguard_audit_pods_reviewed"); int(got) != len(taskPods.Items) {
		t.Errorf("reviewed %v pods, want every unfinished task pod (%d)", got, len(taskPods.Items))
	}
	if got := metricOf(t, auditor, namespaceSeries("max-resources", "audit", "violated")); got != 0 {
		t.Errorf("before the change: %v offending pods, want 0", got)
	}
	if rep, ok := readPolicyReport(t, auditNamespace); !ok || len(rep.Results) != 0 || rep.Metadata.Labels["app.kubernetes.io/managed-by"] != "kpoguard" || rep.Metadata.Labels["kpoguard.io/report"] != "kpoguard" {
		t.Errorf("before the change: report %+v (found %v), want one with no results", rep, ok)
	}

	before := runs()
	changed := time.Now()
	setPolicy(t, tightenedCPU(t, "audit"))
	waitUntil(t, "an audit after the policy change", func() bool { return runs() > before })
	t.Logf("audit after the policy change: within %v", time.Since(changed).Round(10*time.Millisecond))
	if got := metricOf(t, auditor, namespaceSeries("max-resources", "audit", "violated")); int(got) != big {
		t.Errorf("after the change: %v offending pods in %s, want %d", got, auditNamespace, big)
	}
	if got := metricOf(t, auditor, `kpoguard_audit_pods{mode="audit",result="violated",rule="max-resources"}`); int(got) < big {
		t.Errorf("after the change: %v offending pods in the cluster, want at least %d", got, big)
	}
	var reported []string
	waitUntil(t, "the PolicyReport", func() bool { rep, ok := readPolicyReport(t, auditNamespace); return ok && len(rep.Results) > 0 })
	rep, _ := readPolicyReport(t, auditNamespace)
	for _, r := range rep.Results {
		if r.Policy != "kpoguard" || r.Source != "kpoguard" || r.Rule != "max-resources" || r.Result != "warn" ||
			r.Properties["mode"] != "audit" || r.Properties["dag_id"] != "audit_dag" || len(r.Resources) != 1 || r.Resources[0].Kind != "Pod" || r.Resources[0].UID == "" {
			t.Errorf("result %+v", r)
		}
		if len(r.Resources) == 1 && !slices.Contains(reported, r.Resources[0].Name) {
			reported = append(reported, r.Resources[0].Name)
		}
	}
	slices.Sort(reported)
	if !slices.Equal(reported, bigNames) || rep.Summary["warn"] != len(rep.Results) || rep.Summary["fail"] != 0 {
		t.Errorf("reported %v (summary %v), want exactly %v", reported, rep.Summary, bigNames)
	}

	// The API load: the task pods came from one LIST and a WATCH (or, with
	// client-go's WatchList, one WATCH that streams the list first),
	// through every audit so far; no pod was read alone.
	lists, watches := counter.count("LIST /api/v1/pods"), counter.count("WATCH /api/v1/pods")
	if watches != 1 || lists > 1 {
		t.Errorf("%d LISTs and %d WATCHes of pods, want at most one LIST and one WATCH", lists, watches)
	}
	perPod := counter.matching("/pods/")
	if len(perPod) > 0 {
		t.Errorf("requests for single pods: %v", perPod)
	}
	t.Logf("the auditor's requests to the API server after %v audits of %d task pods: pods %v, policyreports %v, namespaces %v",
		runs(), len(taskPods.Items), counter.matching("/pods"), counter.matching("policyreports"), counter.matching("/namespaces?"))

	t.Run("kpoguard audit", func(t *testing.T) {
		cli := func(args ...string) kubectlResult {
			cmd := append([]string{"audit", "--kubeconfig", cluster.Kubeconfig, "-n", auditNamespace, "--registry-ca-file", cluster.RegistryCAFile}, args...)
			return runBinary(t, auditor.Binary, "", cmd...)
		}
		r := cli("-o", "json")
		if r.code != 0 {
			t.Fatalf("audit mode: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
		}
		var out struct {
			Reviewed int `json:"reviewed"`
			Pods     []struct {
				Name     string `json:"name"`
				Findings []struct{ Rule, Mode, Result string }
			} `json:"pods"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range out.Pods {
			names = append(names, p.Name)
			if len(p.Findings) == 0 || p.Findings[0].Rule != "max-resources" || p.Findings[0].Mode != "audit" || p.Findings[0].Result != "violated" {
				t.Errorf("pod %s: findings %+v", p.Name, p.Findings)
			}
		}
		if out.Reviewed != small+big || !slices.Equal(names, reported) {
			t.Errorf("kpoguard audit: %d reviewed, pods %v; want %d and the background audit's %v", out.Reviewed, names, small+big, reported)
		}
		r = cli()
		if r.code != 0 || !strings.Contains(r.stdout, auditNamespace+"  "+bigNames[0]+"  audit_dag") || !strings.Contains(r.stdout, fmt.Sprintf("%d running task pods reviewed", small+big)) {
			t.Errorf("text: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		enforce := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(enforce, []byte(mirrored(t, tightenedCPU(t, "enforce"))), 0o600); err != nil {
			t.Fatal(err)
		}
		if r = cli("--policy-file", enforce); r.code != 1 || !strings.Contains(r.stdout, "max-resources  enforce  violated") {
			t.Errorf("enforce mode: exit %d, want 1 as kpoguard check\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r = cli("--policy-configmap", "kpoguard/missing"); r.code != 2 {
			t.Errorf("a missing policy ConfigMap: exit %d, want 2\n%s", r.code, r.stderr)
		}
	})
}

// Two replicas: only the holder of the Lease audits; when it stops, the
// other takes the Lease over and audits.
func TestAuditLeaseHandover(t *testing.T) {
	args := []string{"--audit-interval=1h", "--audit-lease=" + sandbox.KpoguardNamespace + "/kpoguard-audit"}
	a := startAuditor(t, cluster.Kpoguard.Kubeconfig, args...)
	b := startAuditor(t, cluster.Kpoguard.Kubeconfig, args...)
	leader := func(p *sandbox.Process) bool { return metricOf(t, p, "kpoguard_audit_leader") == 1 }
	waitUntil(t, "one leader", func() bool { return leader(a) != leader(b) })
	first, second := a, b
	if leader(b) {
		first, second = b, a
	}
	waitUntil(t, "the leader's audit", func() bool { return metricOf(t, first, `kpoguard_audit_runs_total{result="success"}`) >= 1 })
	// Give the other replica time to audit, were it to.
	time.Sleep(3 * time.Second)
	if leader(second) || metricOf(t, second, `kpoguard_audit_runs_total{result="success"}`) != 0 || metricOf(t, second, "kpoguard_audit_pods_reviewed") != 0 {
		t.Fatal("the replica without the Lease audits too")
	}
	lease, err := cluster.Client.CoordinationV1().Leases(sandbox.KpoguardNamespace).Get(t.Context(), "kpoguard-audit", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("the Lease: %v %v", lease, err)
	}
	holder := *lease.Spec.HolderIdentity

	first.Stop()
	stopped := time.Now()
	waitUntil(t, "the other replica takes over", func() bool {
		return leader(second) && metricOf(t, second, `kpoguard_audit_runs_total{result="success"}`) >= 1
	})
	t.Logf("takeover after a clean stop: %v", time.Since(stopped).Round(10*time.Millisecond))
	lease, err = cluster.Client.CoordinationV1().Leases(sandbox.KpoguardNamespace).Get(t.Context(), "kpoguard-audit", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == holder {
		t.Errorf("the Lease after the handover: %v %v, want another holder than %s", lease, err, holder)
	}

	// A holder that dies without releasing the Lease (a crash, a lost
	// node): the other takes over once the Lease expires.
	if err := first.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if leader(first) {
		t.Fatal("the restarted replica took the Lease its holder keeps")
	}
	second.Kill()
	killed := time.Now()
	for deadline := killed.Add(audit.LeaseDuration + 15*time.Second); !leader(first) || metricOf(t, first, `kpoguard_audit_runs_total{result="success"}`) < 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no takeover within %v of the holder's death", time.Since(killed).Round(time.Second))
		}
	}
	took := time.Since(killed)
	t.Logf("takeover after the holder was killed: %v", took.Round(10*time.Millisecond))
	if took < audit.LeaseDuration-5*time.Second {
		t.Errorf("taken over %v after the holder's death, before its Lease of %v could expire: two replicas may audit at once", took, audit.LeaseDuration)
	}
}

func metricOf(t testing.TB, p *sandbox.Process, series string) float64 {
	t.Helper()
	v, err := p.Metric(series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
