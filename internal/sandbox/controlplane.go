package sandbox

import (
	"context"
	"crypto/tls"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// kwokStages tell kwok what to do for each simulated node and pod.
//
//go:embed kwok-stages.yaml
var kwokStages []byte

// controllers are the kube-controller-manager controllers that Airflow's
// workloads and the chart need: Deployments and their ReplicaSets,
// StatefulSets (the official chart's Celery workers), PodDisruptionBudgets,
// the garbage collector that deletes what a deleted owner owned, and node
// lifecycle, which lifts the not-ready taint the API server puts on every
// new node once the node reports ready. No service-account token
// controller: tokens come from the TokenRequest API. No taint eviction:
// nothing evicts the pods the tests bind to nodes that never report.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller",
	"disruption-controller", "garbage-collector-controller", "node-lifecycle-controller",
}

// scheduling is the part of a cluster that places and runs pods:
// kube-scheduler, kube-controller-manager and kwok, which plays the kubelet
// of the simulated node pools.
type scheduling struct {
	kwok       *component
	components []*component
}

// StartScheduling starts kube-scheduler, kube-controller-manager and kwok,
// creates the node pools (NodePools) and waits until kwok reports every
// node ready. StopScheduling undoes it.
func (c *Cluster) StartScheduling(ctx context.Context) error {
	if c.scheduling != nil {
		return fmt.Errorf("scheduling is already started")
	}
	for _, b := range []string{"kube-scheduler", "kube-controller-manager", "kwok"} {
		if _, err := os.Stat(c.opts.Bin(b)); err != nil {
			return fmt.Errorf("%s is missing: run `make tools` first", c.opts.Bin(b))
		}
	}
	c.scheduling = &scheduling{}
	if err := c.startScheduling(ctx); err != nil {
		c.StopScheduling()
		return err
	}
	return nil
}

func (c *Cluster) startScheduling(ctx context.Context) error {
	dir := filepath.Join(c.opts.WorkDir, "scheduling")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The control plane's own components act as cluster admins, as
	// kube-controller-manager does with --use-service-account-credentials=false.
	admin, err := c.Env.AddUser(envtest.User{Name: "sandbox-control-plane", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfigData, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	stages := filepath.Join(dir, "kwok-stages.yaml")
	schedulerConfig := filepath.Join(dir, "kube-scheduler.yaml")
	// The scheduler's default 50 QPS would make binding hundreds of pods
	// the slowest part of a test.
	schedulerConfigData := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: %q, qps: 500, burst: 1000}
leaderElection: {leaderElect: false}
`, kubeconfig)
	for file, data := range map[string][]byte{kubeconfig: kubeconfigData, stages: kwokStages, schedulerConfig: []byte(schedulerConfigData)} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			return err
		}
	}
	// Each serves its health checks on a loopback port of its own, with
	// a certificate it makes in memory.
	delegated := []string{"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig, "--bind-address", "127.0.0.1"}
	specs := []struct {
		name   string
		args   []string
		health bool
	}{
		{"kube-controller-manager", append([]string{
			"--kubeconfig", kubeconfig,
			"--controllers", strings.Join(controllers, ","),
			"--use-service-account-credentials=false",
			"--leader-elect=false",
			// Its default 20 QPS is shared by every controller, and
			// the garbage collector alone lists every resource at start.
			"--kube-api-qps=200", "--kube-api-burst=400",
		}, delegated...), true},
		{"kube-scheduler", append([]string{"--config", schedulerConfig}, delegated...), true},
		{"kwok", []string{
			"--kubeconfig", kubeconfig,
			"--config", stages,
			"--manage-nodes-with-annotation-selector", SimulatedNodeAnnotation + "=fake",
		}, false},
	}
	for _, s := range specs {
		comp := &component{name: s.name, binary: c.opts.Bin(s.name), args: s.args, logPath: filepath.Join(dir, s.name+".log"), show: c.opts.ShowControlPlaneOutput}
		if s.health {
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			_, port, _ := net.SplitHostPort(addr)
			comp.args = append(comp.args, "--secure-port", port)
			comp.healthURL = "https://" + addr + "/healthz"
		} else {
			// kwok, ready when its nodes are, also reads
			// ~/.kwok/kwok.yaml when it exists: a home of its own keeps
			// a developer's kwok configuration out.
			comp.env = append(os.Environ(), "HOME="+dir)
			c.scheduling.kwok = comp
		}
		c.scheduling.components = append(c.scheduling.components, comp)
		if err := comp.start(ctx); err != nil {
			return err
		}
	}
	return c.createNodePools(ctx)
}

// StopScheduling deletes the node pools and stops kwok, kube-scheduler and
// kube-controller-manager. Pods bound to the pools' nodes are left as they
// are; delete them first.
func (c *Cluster) StopScheduling() {
	if c.scheduling == nil {
		return
	}
	c.deleteNodePools(context.Background())
	comps := c.scheduling.components
	for i := len(comps) - 1; i >= 0; i-- {
		comps[i].stop()
	}
	c.scheduling = nil
}

// component is a control-plane binary run as a child process that dies
// with the test or sandbox that started it.
type component struct {
	name, binary string
	args, env    []string
	logPath      string
	// healthURL, when set, answers 200 once the component serves.
	healthURL string
	// show also sends its output to this process's.
	show   bool
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *component) start(ctx context.Context) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	var out io.Writer = logFile
	if p.show {
		out = io.MultiWriter(logFile, os.Stderr)
	}
	p.cmd = exec.Command(p.binary, p.args...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = dieWithParent()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); logFile.Close(); close(p.exited) }()
	if p.healthURL == "" {
		return nil
	}
	// The certificate is the component's own, made at its start: there is
	// no CA to check it against, and the probe carries nothing.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(60 * time.Second); ; {
		if resp, err := client.Get(p.healthURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited at start; its log: %s", p.name, p.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within 60s; its log: %s", p.name, p.logPath)
		}
	}
}

// stop sends SIGTERM and waits for the exit, killing it after 10 seconds.
func (p *component) stop() {
	terminate(p.cmd, p.exited)
	p.cmd = nil
}
