// Package e2e tests kpoguard through a real kube-apiserver and etcd: the
// built bin/kpoguard serves the webhook configurations the Helm chart
// renders, and pods are created with real kubectl and client-go.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The namespaces the suite uses. The KPO fixtures name taskNamespace.
const (
	kpoguardNamespace = "kpoguard"
	taskNamespace     = "astronomer-example-deployment-1234"
	release           = "kpoguard"
	policyConfigMap   = "kpoguard-policy"
)

var (
	repoRoot = mustAbs("..")
	binDir   = filepath.Join(repoRoot, "bin")
	cluster  *testCluster
)

type testCluster struct {
	env        *envtest.Environment
	client     kubernetes.Interface
	kubeconfig string
	kpoguard   *kpoguardProcess
	webhooks   renderedWebhooks
}

func TestMain(m *testing.M) {
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl", "helm", "kpoguard"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return 1, fmt.Errorf("bin/%s is missing: run `make build tools` first", b)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: binDir, ControlPlaneStartTimeout: 90 * time.Second, AttachControlPlaneOutput: os.Getenv("E2E_CONTROL_PLANE_OUTPUT") != ""}
	if _, err := env.Start(); err != nil {
		return 1, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()

	work, err := os.MkdirTemp("", "kpoguard-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	c, err := newCluster(env, work)
	if err != nil {
		return 1, err
	}
	defer c.kpoguard.stop()
	cluster = c
	return m.Run(), nil
}

func newCluster(env *envtest.Environment, work string) (*testCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Tests act as a cluster-admin that is not in system:masters: the
	// example policy exempts that group as its break-glass identity.
	user, err := env.AddUser(envtest.User{Name: "e2e-user", Groups: []string{"e2e:users"}}, nil)
	if err != nil {
		return nil, err
	}
	admin, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-users"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "e2e:users"}},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	c := &testCluster{env: env, kubeconfig: filepath.Join(work, "kubeconfig")}
	if err := os.WriteFile(c.kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if c.client, err = kubernetes.NewForConfig(user.Config()); err != nil {
		return nil, err
	}
	for _, ns := range []string{kpoguardNamespace, taskNamespace} {
		if err := c.createNamespace(ctx, ns, nil); err != nil {
			return nil, err
		}
	}
	rendered, err := renderChart(work, filepath.Join(repoRoot, "examples", "policy.yaml"))
	if err != nil {
		return nil, err
	}
	if _, err := c.client.CoreV1().ConfigMaps(kpoguardNamespace).Create(ctx, rendered.policy, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the policy ConfigMap: %w", err)
	}
	wio := env.WebhookInstallOptions
	c.kpoguard = &kpoguardProcess{
		kubeconfig: c.kubeconfig,
		certDir:    wio.LocalServingCertDir,
		host:       wio.LocalServingHost,
		port:       wio.LocalServingPort,
		logPath:    filepath.Join(work, "kpoguard.log"),
	}
	if err := c.kpoguard.start(ctx); err != nil {
		return nil, err
	}
	c.webhooks = rendered.pointedAt(fmt.Sprintf("https://%s:%d", wio.LocalServingHost, wio.LocalServingPort), wio.LocalServingCAData)
	if err := c.installWebhooks(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *testCluster) createNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}
