// Package sandbox runs kpoguard in front of a real kube-apiserver and etcd
// on this machine: the control plane from bin/ (make tools), the webhook
// configurations the Helm chart renders, and bin/kpoguard serve as a real
// process. The e2e suite and `make run` both use it.
package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

// Names the sandbox uses.
const (
	KpoguardNamespace = "kpoguard"
	Release           = "kpoguard"
	PolicyConfigMap   = "kpoguard-policy"
	// UserGroup is the group of the sandbox's user: a cluster-admin that,
	// unlike system:masters, no policy exempts.
	UserGroup = "sandbox:users"
)

// Options configure a sandbox.
type Options struct {
	// RepoRoot holds bin/ and charts/.
	RepoRoot string
	// PolicyFile is rendered into the chart as values.policy.
	PolicyFile string
	// WorkDir receives the kubeconfig, chart values and kpoguard's log.
	WorkDir string
	// Namespaces are created before kpoguard starts.
	Namespaces []string
	// ShowControlPlaneOutput sends kube-apiserver's and etcd's logs to
	// this process's output.
	ShowControlPlaneOutput bool
	// Kpoguard is the kpoguard binary to run (default bin/kpoguard).
	Kpoguard string
	// Scheduling also starts kube-scheduler, kube-controller-manager and
	// kwok with the node pools (StartScheduling).
	Scheduling bool
}

// Cluster is a running sandbox.
type Cluster struct {
	Env *envtest.Environment
	// Client and Kubeconfig act as the sandbox user; kpoguard acts as the
	// chart's ServiceAccount (ApplyChartRBAC).
	Client     kubernetes.Interface
	Kubeconfig string
	Kpoguard   *Process
	Webhooks   Webhooks
	// Registry mirrors Docker Hub, ghcr.io and registry.example.com, and
	// holds registrytest's images of every platform shape; RegistryCAFile
	// is its CA, for kpoguard's --registry-ca-file.
	Registry       *registrytest.Server
	RegistryCAFile string
	opts           Options
	scheduling     *scheduling
}

// Bin is the path of a binary in bin/.
func (o Options) Bin(name string) string { return filepath.Join(o.RepoRoot, "bin", name) }

// Start starts etcd, kube-apiserver and kpoguard and installs the chart's
// policy ConfigMap and webhook configurations. Stop undoes it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Kpoguard == "" {
		opts.Kpoguard = opts.Bin("kpoguard")
	}
	for _, b := range []string{opts.Bin("kube-apiserver"), opts.Bin("etcd"), opts.Bin("kubectl"), opts.Bin("helm"), opts.Kpoguard} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is missing: run `make build tools` first", b)
		}
	}
	// etcd keeps its state under the work directory, fresh each start.
	etcdData := filepath.Join(opts.WorkDir, "etcd")
	if err := os.RemoveAll(etcdData); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(etcdData, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, Env: &envtest.Environment{
		BinaryAssetsDirectory:    filepath.Join(opts.RepoRoot, "bin"),
		ControlPlaneStartTimeout: 90 * time.Second,
		AttachControlPlaneOutput: opts.ShowControlPlaneOutput,
		ControlPlane:             envtest.ControlPlane{Etcd: &envtest.Etcd{DataDir: etcdData}},
		// The PolicyReport CRD the chart installs with
		// audit.policyReports, here as if another tool (Kyverno, Policy
		// Reporter) owned it: the chart then leaves it alone.
		CRDDirectoryPaths:     []string{filepath.Join(opts.RepoRoot, "charts", "kpoguard", "files", "policyreports.wgpolicyk8s.io.yaml")},
		ErrorIfCRDPathMissing: true,
	}}
	if _, err := c.Env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if err := c.setUp(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	if opts.Scheduling {
		if err := c.StartScheduling(ctx); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// waitForClusterAdmin waits until the API server's authorizer has seen
// the binding that makes the client's user an admin: its RBAC informer
// lags the binding's creation, and the first request may be refused.
func waitForClusterAdmin(ctx context.Context, client kubernetes.Interface) error {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"},
	}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sandbox user is not cluster-admin 10s after its binding (last error: %v)", err)
		}
	}
}

func (c *Cluster) setUp(ctx context.Context) error {
	user, err := c.Env.AddUser(envtest.User{Name: "sandbox-user", Groups: []string{UserGroup}}, nil)
	if err != nil {
		return err
	}
	admin, err := kubernetes.NewForConfig(c.Env.Config)
	if err != nil {
		return err
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sandbox-users"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: UserGroup}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.opts.WorkDir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	cfg := user.Config()
	cfg.QPS, cfg.Burst = 1000, 2000 // client-go's 5 QPS would hide everything else in benchmarks
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if err := waitForClusterAdmin(ctx, c.Client); err != nil {
		return err
	}
	for _, ns := range append([]string{KpoguardNamespace}, c.opts.Namespaces...) {
		if err := c.CreateNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	if c.Registry, c.RegistryCAFile, err = startRegistry(c.opts.WorkDir); err != nil {
		return fmt.Errorf("starting the registry: %w", err)
	}
	policyFile, err := c.mirroredPolicyFile()
	if err != nil {
		return err
	}
	chart, err := RenderChart(c.opts, policyFile)
	if err != nil {
		return err
	}
	if _, err := c.Client.CoreV1().ConfigMaps(KpoguardNamespace).Create(ctx, chart.Policy, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the policy ConfigMap: %w", err)
	}
	// kpoguard acts as the chart's ServiceAccount, with only the chart's RBAC.
	kpoguardKubeconfig, err := c.applyRBAC(ctx, Release, chart.RBAC)
	if err != nil {
		return err
	}
	wio := c.Env.WebhookInstallOptions
	c.Kpoguard = &Process{
		Binary:     c.opts.Kpoguard,
		Kubeconfig: kpoguardKubeconfig,
		CertDir:    wio.LocalServingCertDir,
		Host:       wio.LocalServingHost,
		Port:       wio.LocalServingPort,
		LogPath:    filepath.Join(c.opts.WorkDir, "kpoguard.log"),
		ExtraArgs:  []string{"--registry-ca-file", c.RegistryCAFile},
	}
	if err := c.Kpoguard.Start(ctx); err != nil {
		return err
	}
	c.Webhooks = chart.PointedAt(fmt.Sprintf("https://%s:%d", wio.LocalServingHost, wio.LocalServingPort), wio.LocalServingCAData)
	return c.InstallWebhooks(ctx)
}

// Mirrored returns a policy document with the sandbox's registry as the
// mirror of the registries it stands in for: no lookup leaves the machine.
func (c *Cluster) Mirrored(doc []byte) ([]byte, error) {
	return withMirrors(doc, c.Registry.Host)
}

// mirroredPolicyFile writes the policy file, mirrored, into the work
// directory and returns its path.
func (c *Cluster) mirroredPolicyFile() (string, error) {
	data, err := os.ReadFile(c.opts.PolicyFile)
	if err != nil {
		return "", err
	}
	if data, err = c.Mirrored(data); err != nil {
		return "", fmt.Errorf("%s: %w", c.opts.PolicyFile, err)
	}
	out := filepath.Join(c.opts.WorkDir, "policy.yaml")
	return out, os.WriteFile(out, data, 0o600)
}

// Stop stops kpoguard, the registry and the control plane.
func (c *Cluster) Stop() {
	c.StopScheduling()
	if c.Kpoguard != nil {
		c.Kpoguard.Stop()
	}
	if c.Registry != nil {
		c.Registry.Close()
	}
	_ = c.Env.Stop()
}

// CreateNamespace creates a namespace with labels.
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// InstallWebhooks creates the chart's webhook configurations and waits
// until the API server calls both.
func (c *Cluster) InstallWebhooks(ctx context.Context) error {
	reg := c.Client.AdmissionregistrationV1()
	if _, err := reg.MutatingWebhookConfigurations().Create(ctx, c.Webhooks.Mutating.DeepCopy(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the mutating webhook configuration: %w", err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, c.Webhooks.Validating.DeepCopy(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the validating webhook configuration: %w", err)
	}
	return c.WaitForWebhooks(ctx)
}

// WaitForWebhooks probes with dry-run task pods until the API server,
// which reads webhook configurations from an informer, calls both webhooks.
// What the policy decides about the probe does not matter (it may refuse
// it, or leave it unchanged): kpoguard counts every request it answers, so
// both webhooks' counters growing over one probe proves both were called.
// The API server's own errors (the configuration not in its informer yet,
// kpoguard not serving) grow neither.
func (c *Cluster) WaitForWebhooks(ctx context.Context) error {
	if err := c.CreateNamespace(ctx, "kpoguard-probe", nil); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	probe := func() error {
		before, err := c.Kpoguard.Admissions()
		if err != nil {
			return err
		}
		_, createErr := c.Client.CoreV1().Pods("kpoguard-probe").Create(ctx, TaskPod("webhook-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		after, err := c.Kpoguard.Admissions()
		if err != nil {
			return err
		}
		for _, hook := range []string{"mutate-pods", "validate-pods"} {
			if after[hook] <= before[hook] {
				return fmt.Errorf("%s not called yet (the probe's answer: %v)", hook, createErr)
			}
		}
		return nil
	}
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = probe(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("webhooks not called within 30s: %w\nkpoguard log:\n%s", err, c.Kpoguard.Logs())
}

// TaskPod is a minimal pod shaped like KPO's.
func TaskPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes_pod_operator": "True", "dag_id": "sandbox", "task_id": name, "airflow_kpo_in_cluster": "True",
		}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "base", Image: "ubuntu:22.04", Command: []string{"true"}}},
		},
	}
}
