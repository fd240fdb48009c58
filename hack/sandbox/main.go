// Command sandbox runs kpoguard in front of a real kube-apiserver and etcd
// on this machine, with kube-scheduler, kube-controller-manager, node pools
// that kwok simulates and a local OCI registry, for trying policies by hand
// (`make run`) or as a scripted tour (`make demo`).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

const taskNamespace = "astronomer-example-deployment-1234"

// nodeColumns are the node labels `kubectl get nodes -L` shows: what
// places a pod in a pool.
var nodeColumns = strings.Join([]string{sandbox.NodePoolLabel, sandbox.InstanceTypeLabel, sandbox.ZoneLabel, sandbox.ArchLabel}, ",")

func main() {
	demo := flag.Bool("demo", false, "run the tour non-interactively, print each outcome and exit")
	policy := flag.String("policy", "examples/policy.yaml", "policy file to install")
	dir := flag.String("dir", ".sandbox", "directory for the kubeconfig and logs")
	flag.Parse()
	if err := run(*demo, *policy, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

func run(demo bool, policy, dir string) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	work, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Println("starting etcd, kube-apiserver, an OCI registry, kpoguard, kube-scheduler, kube-controller-manager and kwok's node pools...")
	start := time.Now()
	if !filepath.IsAbs(policy) {
		policy = filepath.Join(root, policy)
	}
	cluster, err := sandbox.Start(ctx, sandbox.Options{
		RepoRoot:   root,
		PolicyFile: policy,
		WorkDir:    work,
		Namespaces: []string{taskNamespace},
		Scheduling: true,
	})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	fmt.Printf("ready in %.1fs\n\n", time.Since(start).Seconds())
	if demo {
		return tour(root, cluster)
	}
	printGuide(root, policy, cluster)
	<-ctx.Done()
	fmt.Println("\nstopping; no process is left behind")
	return nil
}

func printGuide(root, policy string, c *sandbox.Cluster) {
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	fmt.Printf(`kpoguard guards pods in namespace %[1]s with %[2]s.
Paste into another shell:

  export KUBECONFIG=%[3]s PATH=%[4]s:$PATH

  # a KPO pod without resources gets the default pod size, env-secrets and its node pool
  kubectl apply -f testdata/kpo/01-kpo-basic-no-resources.yaml
  kubectl get pod -n %[1]s extract-orders-k3x9p2qa -o yaml | grep -A12 'kpoguard.io/mutations'

  # a pod with a PersistentVolumeClaim is refused, with the reason and the fix
  kubectl apply -f testdata/pods/10-pvc-task.yaml

  # see the mutation without creating anything
  kubectl apply --dry-run=server -o yaml -f testdata/pods/13-nvme-queue-scratch.yaml

  # change the policy: edit data."policy.yaml"; a bad edit is refused
  kubectl edit configmap -n kpoguard kpoguard-policy

  # images are looked up in their registry: an arm64-only image is refused
  kubectl run -n %[1]s arm-task --image=%[7]s -l kubernetes_pod_operator=True
  bin/kpoguard check -p %[2]s -f testdata/kpo/ --registry-ca-file %[12]s

  # kube-scheduler places admitted tasks in their queue's node pool; kwok
  # plays the nodes' kubelets (no container runs). The node each landed on:
  kubectl apply -f testdata/pods/13-nvme-queue-scratch.yaml
  kubectl get pods -n %[1]s -o wide
  kubectl get nodes -L %[13]s

A local OCI registry at %[5]s stands in for Docker Hub, ghcr.io and
registry.example.com (the sandbox adds it to the policy as their mirror and asks no other registry),
and holds %[6]s (amd64), %[7]s (a single arm64 manifest),
%[8]s (an arm64-only index) and %[9]s (multi-arch).
kpoguard's log: %[10]s; metrics: http://%[11]s/metrics

Press Ctrl-C to stop everything.
`, taskNamespace, rel(policy), c.Kubeconfig, filepath.Join(root, "bin"),
		c.Registry.Host, c.Registry.Ref(registrytest.AMD64), c.Registry.Ref(registrytest.ARM64), c.Registry.Ref(registrytest.ARM64Only), c.Registry.Ref(registrytest.MultiArch),
		rel(c.Kpoguard.LogPath), c.Kpoguard.MetricsAddr, rel(c.RegistryCAFile), nodeColumns)
}

// tour runs the guide's steps and prints what each showed.
func tour(root string, c *sandbox.Cluster) error {
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(root, "bin", "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return strings.TrimSpace(out.String()), err
	}
	steps := []struct {
		title   string
		args    []string
		refused bool
	}{
		{"a KPO pod without resources is created with the platform's defaults",
			[]string{"apply", "-f", "testdata/kpo/01-kpo-basic-no-resources.yaml"}, false},
		{"what kpoguard set on it",
			[]string{"get", "pod", "-n", taskNamespace, "extract-orders-k3x9p2qa", "-o",
				`jsonpath=resources: {.spec.containers[0].resources}{"\n"}envFrom: {.spec.containers[0].envFrom}{"\n"}nodeSelector: {.spec.nodeSelector}{"\n"}qosClass: {.status.qosClass}{"\n"}`}, false},
		{"the xcom sidecar gets a small size of its own, not the task's",
			[]string{"apply", "--dry-run=server", "-f", "testdata/kpo/02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml", "-o",
				`jsonpath={range .spec.containers[*]}{.name}: {.resources}{"\n"}{end}`}, false},
		{"a pod with a PersistentVolumeClaim is refused",
			[]string{"apply", "-f", "testdata/pods/10-pvc-task.yaml"}, true},
		{"an oversized, cross-account, arm64-pinned pod: every violation in one message",
			[]string{"apply", "-f", "testdata/pods/11-oversized-cross-account.yaml"}, true},
		{"a dry run shows the mutation and stores nothing",
			[]string{"apply", "--dry-run=server", "-f", "testdata/pods/13-nvme-queue-scratch.yaml", "-o",
				`jsonpath=nodeSelector: {.spec.nodeSelector}{"\n"}tolerations: {.spec.tolerations}{"\n"}`}, false},
		{"nothing was stored by the dry run",
			[]string{"get", "pods", "-n", taskNamespace, "-o", "name"}, false},
		{"an image built only for arm64 is refused before it can die with \"exec format error\"",
			[]string{"run", "-n", taskNamespace, "arm-task", "--image=" + c.Registry.Ref(registrytest.ARM64Only), "--labels=kubernetes_pod_operator=True", "--restart=Never"}, true},
		{"a multi-arch image runs",
			[]string{"run", "-n", taskNamespace, "multi-arch-task", "--dry-run=server", "--image=" + c.Registry.Ref(registrytest.MultiArch), "--labels=kubernetes_pod_operator=True", "--restart=Never"}, false},
		{"the node pools, simulated by kwok and labelled and tainted like a cloud's",
			[]string{"get", "nodes", "-L", nodeColumns}, false},
		{"a task of the nvme queue, created this time",
			[]string{"apply", "-f", "testdata/pods/13-nvme-queue-scratch.yaml"}, false},
		{"kube-scheduler binds each task to a node of its queue's pool, and kwok reports it running (no container runs)",
			[]string{"wait", "-n", taskNamespace, "--for=condition=Ready", "pod", "--all", "--timeout=60s"}, false},
		{"the node each task landed on",
			[]string{"get", "pods", "-n", taskNamespace, "-o", "wide"}, false},
	}
	failed := 0
	for i, s := range steps {
		out, err := kubectl(s.args...)
		outcome := "ok"
		if (err != nil) != s.refused {
			outcome, failed = "UNEXPECTED", failed+1
		} else if s.refused {
			outcome = "refused, as expected"
		}
		fmt.Printf("%d. %s\n   $ kubectl %s\n%s\n   => %s\n\n", i+1, s.title, strings.Join(quoteArgs(s.args), " "), indent(out), outcome)
	}
	if failed > 0 {
		return fmt.Errorf("%d step(s) did not go as expected; kpoguard's log: %s", failed, c.Kpoguard.LogPath)
	}
	fmt.Println("every step went as expected")
	return nil
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " {}\"") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(s, "\n", "\n   ")
}
