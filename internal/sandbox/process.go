package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is bin/kpoguard serve, run as a real process.
type Process struct {
	Binary     string
	Kubeconfig string
	CertDir    string
	Host       string
	Port       int
	LogPath    string
	// PolicyConfigMap is the name of the policy's ConfigMap in
	// KpoguardNamespace; default PolicyConfigMap. The chart lets a
	// release read its own only.
	PolicyConfigMap string
	// ExtraArgs are added to kpoguard serve's flags.
	ExtraArgs []string
	// HealthAddr and MetricsAddr are chosen at the first Start.
	HealthAddr  string
	MetricsAddr string
	cmd         *exec.Cmd
	exited      chan struct{}
}

// Start starts kpoguard and waits until it is ready.
func (k *Process) Start(ctx context.Context) error {
	var err error
	if k.HealthAddr == "" {
		if k.HealthAddr, err = freeAddr(); err != nil {
			return err
		}
		if k.MetricsAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	logFile, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	policy := k.PolicyConfigMap
	if policy == "" {
		policy = PolicyConfigMap
	}
	args := append([]string{"serve",
		"--policy-configmap", KpoguardNamespace + "/" + policy,
		"--kubeconfig", k.Kubeconfig,
		"--cert-dir", k.CertDir,
		"--host", k.Host, "--port", strconv.Itoa(k.Port),
		"--health-addr", k.HealthAddr, "--metrics-addr", k.MetricsAddr,
	}, k.ExtraArgs...)
	k.cmd = Command(k.Binary, args...)
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	if err := k.cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	k.exited = make(chan struct{})
	go func() { _ = k.cmd.Wait(); logFile.Close(); close(k.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + k.HealthAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-k.exited:
			return fmt.Errorf("kpoguard exited at start:\n%s", k.Logs())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kpoguard not ready within 30s:\n%s", k.Logs())
		}
	}
}

// Command is exec.Command for a child of a test: it ends when the test
// process dies without stopping it.
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = dieWithParent()
	return cmd
}

// Stop sends SIGTERM and waits for the exit.
func (k *Process) Stop() {
	terminate(k.cmd, k.exited)
	k.cmd = nil
}

// Kill kills kpoguard with SIGKILL, as a crash or a lost node ends it:
// nothing it would do on its way out happens.
func (k *Process) Kill() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Kill()
	<-k.exited
	k.cmd = nil
}

// terminate sends a started child SIGTERM and waits until exited closes,
// killing it after 10 seconds.
func terminate(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Logs returns what kpoguard has logged.
func (k *Process) Logs() string {
	b, _ := os.ReadFile(k.LogPath)
	return string(b)
}

// Metric returns the value of one metric series, e.g.
// `kpoguard_policy_reloads_total{result="failure"}`, or 0 when absent.
func (k *Process) Metric(series string) (float64, error) {
	lines, err := k.metrics()
	if err != nil {
		return 0, err
	}
	for _, line := range lines {
		if name, value, ok := strings.Cut(line, " "); ok && name == series {
			return strconv.ParseFloat(value, 64)
		}
	}
	return 0, nil
}

// Admissions returns how many admission requests each webhook path
// (mutate-pods, validate-pods, validate-policy, guard-workers) has answered, whatever it
// decided.
func (k *Process) Admissions() (map[string]float64, error) {
	lines, err := k.metrics()
	if err != nil {
		return nil, err
	}
	counts := map[string]float64{}
	for _, line := range lines {
		series, value, ok := strings.Cut(line, " ")
		labels, isAdmission := strings.CutPrefix(series, "kpoguard_admission_requests_total{")
		if !ok || !isAdmission {
			continue
		}
		_, hook, _ := strings.Cut(labels, `webhook="`)
		hook, _, _ = strings.Cut(hook, `"`)
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, err
		}
		counts[hook] += n
	}
	return counts, nil
}

// metrics returns the lines of kpoguard's /metrics.
func (k *Process) metrics() ([]string, error) {
	resp, err := http.Get("http://" + k.MetricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return strings.Split(string(body), "\n"), nil
}

// url is the HTTPS address of one of kpoguard's webhook paths.
func (k *Process) URL(path string) string {
	return fmt.Sprintf("https://%s%s", net.JoinHostPort(k.Host, strconv.Itoa(k.Port)), path)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
