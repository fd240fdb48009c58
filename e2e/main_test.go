// Package e2e tests kpoguard through a real kube-apiserver and etcd: the
// built bin/kpoguard serves the webhook configurations the Helm chart
// renders, and pods are created with real kubectl and client-go.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// taskNamespace is the Airflow deployment namespace the KPO fixtures name.
const taskNamespace = "astronomer-example-deployment-1234"

var (
	repoRoot = mustAbs("..")
	cluster  *sandbox.Cluster
)

func TestMain(m *testing.M) {
	// The in-process test webhooks use controller-runtime's handlers.
	ctrllog.SetLogger(logr.Discard())
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	work, err := os.MkdirTemp("", "kpoguard-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The suite tests the code it is built from, never a stale bin/kpoguard.
	kpoguard := filepath.Join(work, "kpoguard")
	build := exec.CommandContext(ctx, "go", "build", "-o", kpoguard, "./cmd/kpoguard")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building kpoguard: %v\n%s", err, out)
	}
	cluster, err = sandbox.Start(ctx, sandbox.Options{
		Kpoguard:               kpoguard,
		RepoRoot:               repoRoot,
		PolicyFile:             envOr("E2E_POLICY", filepath.Join(repoRoot, "examples", "policy.yaml")),
		WorkDir:                work,
		Namespaces:             []string{taskNamespace},
		ShowControlPlaneOutput: os.Getenv("E2E_CONTROL_PLANE_OUTPUT") != "",
	})
	if err != nil {
		return 1, err
	}
	defer cluster.Stop()
	return m.Run(), nil
}

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
