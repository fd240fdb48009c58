package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// RBAC is kpoguard's identity as the chart renders it: its ServiceAccount,
// and the roles and bindings that grant it what it may do.
type RBAC struct {
	ServiceAccount      *corev1.ServiceAccount
	Roles               []rbacv1.Role
	RoleBindings        []rbacv1.RoleBinding
	ClusterRoles        []rbacv1.ClusterRole
	ClusterRoleBindings []rbacv1.ClusterRoleBinding
}

// Values are the chart values the sandbox installs with, besides the
// policy: every optional permission on, since the e2e suite uses every
// feature that needs one. Each is also what kpoguard serve does by default
// (--worker-selector component=worker, --read-nodes, --read-pull-secrets),
// so the sandbox's kpoguard, started without those flags, does what the
// chart's RBAC grants.
func Values() map[string]any {
	return map[string]any{
		// The example policy's override selects namespaces by label.
		"rbac": map[string]any{"namespaces": true},
		// usePullSecrets (TestPrivateImageLookedUpWithPullSecret).
		"registry": map[string]any{"pullSecrets": true},
		// nodePool.parent, its nodeLabels, and the worker guard.
		"workers": map[string]any{"selector": "component=worker", "readNodes": true},
		// The background audit's PolicyReports (TestBackgroundAudit).
		"audit": map[string]any{"enabled": true, "policyReports": true},
	}
}

// tokenLifetime outlasts any e2e run or `make run` session; the API
// server caps it at its --service-account-max-token-expiration, which
// the sandbox does not set.
const tokenLifetime = 24 * time.Hour

// ApplyChartRBAC renders the chart as release, with Values and then
// values, and applies its ServiceAccount, roles and bindings as helm
// upgrade would: the release's roles and bindings this render lacks are
// deleted. It returns the path of a kubeconfig that authenticates as the
// ServiceAccount, with a token from the TokenRequest API.
func (c *Cluster) ApplyChartRBAC(ctx context.Context, release string, values ...map[string]any) (string, error) {
	chart, err := renderChart(c.opts, release, append([]map[string]any{Values()}, values...)...)
	if err != nil {
		return "", err
	}
	return c.applyRBAC(ctx, release, chart.RBAC)
}

// applyRBAC replaces the release's roles and bindings with r's, and
// returns a kubeconfig acting as r's ServiceAccount.
func (c *Cluster) applyRBAC(ctx context.Context, release string, r RBAC) (string, error) {
	// Every object the chart renders carries its release's instance label.
	// The ServiceAccount stays: a new one would void the tokens of the
	// kpoguard already running as it.
	ofRelease := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release}
	rbac := c.Client.RbacV1()
	for _, deleteAll := range []func(context.Context, metav1.DeleteOptions, metav1.ListOptions) error{
		rbac.RoleBindings(KpoguardNamespace).DeleteCollection, rbac.Roles(KpoguardNamespace).DeleteCollection,
		rbac.ClusterRoleBindings().DeleteCollection, rbac.ClusterRoles().DeleteCollection,
	} {
		if err := deleteAll(ctx, metav1.DeleteOptions{}, ofRelease); err != nil {
			return "", fmt.Errorf("deleting the RBAC of release %s: %w", release, err)
		}
	}
	sa := r.ServiceAccount
	if _, err := c.Client.CoreV1().ServiceAccounts(KpoguardNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	if err := errors.Join(
		createAll(ctx, r.Roles, rbac.Roles(KpoguardNamespace).Create),
		createAll(ctx, r.RoleBindings, rbac.RoleBindings(KpoguardNamespace).Create),
		createAll(ctx, r.ClusterRoles, rbac.ClusterRoles().Create),
		createAll(ctx, r.ClusterRoleBindings, rbac.ClusterRoleBindings().Create),
	); err != nil {
		return "", fmt.Errorf("applying the RBAC of release %s: %w", release, err)
	}
	return c.serviceAccountKubeconfig(ctx, sa)
}

// createAll creates objects in turn with create, stopping at the first
// refused.
func createAll[T any](ctx context.Context, objs []T, create func(context.Context, *T, metav1.CreateOptions) (*T, error)) error {
	for i := range objs {
		if _, err := create(ctx, &objs[i], metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount, as kpoguard's pod would with its mounted token.
func (c *Cluster) serviceAccountKubeconfig(ctx context.Context, sa *corev1.ServiceAccount) (string, error) {
	tr, err := c.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(tokenLifetime.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a token for ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sandbox"] = &clientcmdapi.Cluster{Server: c.Env.Config.Host, CertificateAuthorityData: c.Env.Config.CAData}
	cfg.AuthInfos[sa.Name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[sa.Name] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: sa.Name}
	cfg.CurrentContext = sa.Name
	path := filepath.Join(c.opts.WorkDir, sa.Name+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}
