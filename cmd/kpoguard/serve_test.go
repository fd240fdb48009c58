package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/webhook"
)

// Worker lookups and kpoguard's other reads each have a client-side rate
// limit of their own: a burst of one neither waits on nor holds up the
// other, each request within the --api-read-timeout a lookup gets.
func TestWorkerLookupsHaveTheirOwnRateLimit(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker"}}`))
	}))
	t.Cleanup(server.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"test": {Server: server.URL}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"test": {}},
		Contexts:       map[string]*clientcmdapi.Context{"test": {Cluster: "test", AuthInfo: "test"}},
		CurrentContext: "test",
	}, kubeconfig); err != nil {
		t.Fatal(err)
	}
	const readTimeout = 500 * time.Millisecond // --api-read-timeout's default
	// burst makes n reads at once, as n admissions would, and returns how
	// many failed.
	burst := func(c kubernetes.Interface, n int) int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		failed := 0
		for range n {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
				defer cancel()
				if _, err := c.CoreV1().Pods("airflow").Get(ctx, "worker", metav1.GetOptions{}); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return failed
	}
	for _, tc := range []struct {
		name         string
		workersFirst bool
	}{
		{name: "a burst of worker lookups, then other reads", workersFirst: true},
		{name: "a burst of other reads, then worker lookups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, api, workers, err := kubeClients(kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			flood, then := api, workers
			if tc.workersFirst {
				flood, then = workers, api
			}
			// 60 lookups: a dozen new workers' first tasks, each read by
			// both webhooks, and their nodes. Other reads keep client-go's
			// default limit, which such a burst of theirs exceeds.
			if failed := burst(flood, 60); failed > 0 && tc.workersFirst {
				t.Errorf("%d of 60 worker lookups failed within %v", failed, readTimeout)
			}
			start := time.Now()
			if failed := burst(then, 5); failed > 0 || time.Since(start) > readTimeout/2 {
				t.Errorf("after the burst, %d of 5 reads on the other client failed, %v taken", failed, time.Since(start))
			}
		})
	}
}

// --read-pull-secrets=false (the chart's registry.pullSecrets off) leaves
// lookups without a pull-secret reader: anonymous, and no read of what
// kpoguard's RBAC does not grant. The admissions' and the audit's
// resolvers read on the client each is given.
func TestPullSecretsReadOnlyWhenAllowed(t *testing.T) {
	for _, read := range []bool{true, false} {
		lookups, err := newImageLookups(serveFlags{readPullSecrets: read}, webhook.NewMetrics(), logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		admissionClient, auditClient := fake.NewClientset(), fake.NewClientset()
		for name, c := range map[string]struct {
			images *webhook.RegistryImages
			client kubernetes.Interface
		}{
			"admission": {lookups.admission(admissionClient), admissionClient},
			"audit":     {lookups.audit(auditClient), auditClient},
		} {
			if got := c.images.Keychains != nil; got != read {
				t.Errorf("%s, --read-pull-secrets=%v: reads pull secrets %v", name, read, got)
			}
			if k, ok := c.images.Keychains.(*webhook.PullSecretKeychains); ok && k.Client != c.client {
				t.Errorf("%s: reads pull secrets on another client than its own", name)
			}
		}
	}
}

// The audit's image lookups count in no lookup metric: a failing one
// (an old tag of a long-running pod, gone from its registry) must not
// raise KpoguardImageLookupsFailing, which is about admissions. The
// admissions' do count. The registry is a closed port on loopback.
func TestAuditLookupsLeaveTheAdmissionMetricsAlone(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()
	metrics := webhook.NewMetrics()
	lookups, err := newImageLookups(serveFlags{}, metrics, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cfg := policy.ImageArchitectureConfig{LookupTimeout: 2 * time.Second, Registries: []policy.RegistrySpec{{Name: "local", Host: host, Insecure: true}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "task"}}
	lookupsCounted := func() float64 {
		families, err := metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, f := range families {
			if f.GetName() == "kpoguard_registry_lookups_total" {
				for _, m := range f.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	image := host + "/task:1"
	if facts := lookups.audit(nil).Resolve(t.Context(), pod, cfg, []string{image}); facts[image].Err == "" {
		t.Fatalf("the audit's lookup of a closed port: %+v, want a failure", facts[image])
	}
	if n := lookupsCounted(); n != 0 {
		t.Errorf("after the audit's lookup: %v lookups counted, want 0", n)
	}
	lookups.admission(nil).Resolve(t.Context(), pod, cfg, []string{image})
	if n := lookupsCounted(); n != 1 {
		t.Errorf("after an admission's lookup: %v lookups counted, want 1", n)
	}
}

// A mistyped decision log setting stops serve before it starts, rather
// than quietly logging at another level.
func TestServeRefusesBadDecisionLogFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--decision-log=verbose"},
		{"--decision-log=all", "--decision-log-sample=0"},
	} {
		var stderr strings.Builder
		args = append([]string{"--policy-file=unused.yaml"}, args...)
		if code := serve(args, &stderr); code != exitBadInput || !strings.Contains(stderr.String(), "--decision-log") {
			t.Errorf("serve %v = %d, %q; want %d naming --decision-log", args, code, stderr.String(), exitBadInput)
		}
	}
}

// The audit's flags are checked before kpoguard serves: a bad one stops
// it with the flag's name.
func TestStartAuditRefusesBadFlags(t *testing.T) {
	m := webhook.NewMetrics()
	deps := &webhook.Deps{Policies: webhook.NewPolicyStore(m, logr.Discard()), Metrics: m, Log: logr.Discard()}
	good := auditFlags{interval: time.Minute, podSelector: "kubernetes_pod_operator=True", reportName: "kpoguard"}
	for _, c := range []struct {
		name    string
		edit    func(*auditFlags)
		noAPI   bool
		wantErr string
	}{
		{name: "no API access", noAPI: true, wantErr: "--audit-interval needs API access"},
		{name: "a negative namespace limit", edit: func(f *auditFlags) { f.namespaceLimit = -1 }, wantErr: "--audit-namespace-metrics-limit"},
		{name: "a bad selector", edit: func(f *auditFlags) { f.podSelector = "a b" }, wantErr: "--audit-pod-selector"},
		{name: "a Lease without a namespace", edit: func(f *auditFlags) { f.lease = "kpoguard-audit" }, wantErr: "--audit-lease"},
		{name: "a Lease without a name", edit: func(f *auditFlags) { f.lease = "kpoguard/" }, wantErr: "--audit-lease"},
		{name: "a report name no object can have", edit: func(f *auditFlags) { f.policyReports, f.reportName = true, "Kpoguard_A" }, wantErr: "--audit-report-name"},
		{name: "a report name too long for a label", edit: func(f *auditFlags) { f.policyReports, f.reportName = true, strings.Repeat("k", 64) }, wantErr: "--audit-report-name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := good
			if c.edit != nil {
				c.edit(&f)
			}
			var client kubernetes.Interface = fake.NewClientset()
			if c.noAPI {
				client = nil
			}
			done, err := startAudit(t.Context(), f, nil, client, deps, nil, logr.Discard())
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || done != nil {
				t.Errorf("err %v, want one naming %q and no audit started", err, c.wantErr)
			}
		})
	}
}

// A running audit stops, Lease released, when its context ends: kpoguard
// waits for it on its way out.
func TestStartedAuditStopsWithItsContext(t *testing.T) {
	m := webhook.NewMetrics()
	deps := &webhook.Deps{Policies: webhook.NewPolicyStore(m, logr.Discard()), Metrics: m, Log: logr.Discard()}
	if err := deps.Policies.Offer([]byte(readFile(t, examplePolicy)), "test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	client := fake.NewClientset()
	done, err := startAudit(ctx, auditFlags{interval: time.Hour, podSelector: "kubernetes_pod_operator=True", lease: "kpoguard/kpoguard-audit"}, nil, client, deps, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	waitForLease := time.Now().Add(5 * time.Second)
	for {
		if v := gaugeValue(t, m, "kpoguard_audit_leader"); v == 1 {
			break
		}
		if time.Now().After(waitForLease) {
			t.Fatal("the only replica did not take the Lease within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the audit did not stop within 5s of its context's end")
	}
	if v := gaugeValue(t, m, "kpoguard_audit_leader"); v != 0 {
		t.Errorf("kpoguard_audit_leader %v after stopping, want 0", v)
	}
	// client-go releases a Lease by writing it with no holder and a
	// duration of one second: another replica takes it at once.
	lease, err := client.CoordinationV1().Leases("kpoguard").Get(t.Context(), "kpoguard-audit", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" || lease.Spec.LeaseDurationSeconds == nil || *lease.Spec.LeaseDurationSeconds != 1 {
		t.Errorf("Lease after stopping: holder %v, duration %v; want it released", deref(lease.Spec.HolderIdentity), deref(lease.Spec.LeaseDurationSeconds))
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// gaugeValue reads an unlabelled gauge from the registry.
func gaugeValue(t *testing.T, m *webhook.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// A --cert-hosts with an empty entry or a name no certificate can carry
// stops serve before it starts: the certificate would never match it and
// be re-issued on every sync.
func TestServeRefusesBadCertHosts(t *testing.T) {
	for _, hosts := range []string{"kpoguard.kpoguard.svc,", "a.svc,,b.svc", "", "kpoguard.kpoguard.svc,not a name"} {
		var stderr strings.Builder
		args := []string{"--policy-file=unused.yaml", "--self-managed-certs=kpoguard/tls", "--cert-hosts=" + hosts}
		if code := serve(args, &stderr); code != exitBadInput || !strings.Contains(stderr.String(), "--cert-hosts") {
			t.Errorf("serve --cert-hosts=%q = %d, %q; want %d naming --cert-hosts", hosts, code, stderr.String(), exitBadInput)
		}
	}
}

// --cert-sync 0 would sync in a busy loop and retire replaced CAs at once.
func TestServeRefusesBadCertTimings(t *testing.T) {
	for _, tc := range []struct{ arg, names string }{
		{"--cert-sync=0s", "--cert-sync"},
		{"--cert-sync=-1m", "--cert-sync"},
		{"--retire-ca-after=-1s", "--retire-ca-after"},
	} {
		var stderr strings.Builder
		args := []string{"--policy-file=unused.yaml", "--self-managed-certs=kpoguard/tls", "--cert-hosts=127.0.0.1", tc.arg}
		if code := serve(args, &stderr); code != exitBadInput || !strings.Contains(stderr.String(), tc.names) {
			t.Errorf("serve %s = %d, %q; want %d naming %s", tc.arg, code, stderr.String(), exitBadInput, tc.names)
		}
	}
}

// CAs a rotation replaces stay in the caBundle two polls, and never less
// than --retire-ca-after: by default long enough for the chart's
// KpoguardCertificateSyncFailing to fire first for a replica that missed
// the rotation.
func TestCARetirementWindow(t *testing.T) {
	if alerted := syncFailingAlertDelay(t); defaultRetireCAAfter < alerted+5*time.Minute {
		t.Errorf("default --retire-ca-after %v leaves less than 5 minutes after KpoguardCertificateSyncFailing fires (%v without a sync)", defaultRetireCAAfter, alerted)
	}
	for _, tc := range []struct {
		certSync, retireCAAfter, want time.Duration
	}{
		{time.Minute, defaultRetireCAAfter, defaultRetireCAAfter},
		{10 * time.Minute, defaultRetireCAAfter, 20 * time.Minute},
		{10 * time.Second, 0, 20 * time.Second},
		{10 * time.Second, time.Hour, time.Hour},
	} {
		f := serveFlags{certSync: tc.certSync, retireCAAfter: tc.retireCAAfter}
		if got := f.caRetirement(); got != tc.want {
			t.Errorf("--cert-sync %v --retire-ca-after %v: retired after %v, want %v", tc.certSync, tc.retireCAAfter, got, tc.want)
		}
	}
}

// alertRules are the chart's alerts.
const alertRules = "../../charts/kpoguard/alerts/kpoguard-rules.yaml"

// syncFailingAlertDelay is how long after a replica's last successful sync
// the chart's KpoguardCertificateSyncFailing fires: its threshold plus its
// for.
func syncFailingAlertDelay(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Expr, For string }
		}
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	threshold := regexp.MustCompile(`^time\(\) - kpoguard_certificate_last_successful_sync_timestamp_seconds\{[^}]*\} > (\d+)$`)
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "KpoguardCertificateSyncFailing" {
				continue
			}
			m := threshold.FindStringSubmatch(strings.TrimSpace(r.Expr))
			pending, err := time.ParseDuration(r.For)
			if m == nil || err != nil {
				t.Fatalf("KpoguardCertificateSyncFailing is no longer \"time() - last sync > N\" for a duration: %q for %q", r.Expr, r.For)
			}
			seconds, _ := strconv.Atoi(m[1])
			return time.Duration(seconds)*time.Second + pending
		}
	}
	t.Fatalf("no KpoguardCertificateSyncFailing in %s", alertRules)
	return 0
}
