package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// kpoguardProcess is bin/kpoguard serve, run as a real process.
type kpoguardProcess struct {
	kubeconfig  string
	certDir     string
	host        string
	port        int
	logPath     string
	healthAddr  string
	metricsAddr string
	cmd         *exec.Cmd
	exited      chan struct{}
}

func (k *kpoguardProcess) start(ctx context.Context) error {
	var err error
	if k.healthAddr == "" {
		if k.healthAddr, err = freeAddr(); err != nil {
			return err
		}
		if k.metricsAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	logFile, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	k.cmd = exec.Command(filepath.Join(binDir, "kpoguard"), "serve",
		"--policy-configmap", kpoguardNamespace+"/"+policyConfigMap,
		"--kubeconfig", k.kubeconfig,
		"--cert-dir", k.certDir,
		"--host", k.host, "--port", strconv.Itoa(k.port),
		"--health-addr", k.healthAddr, "--metrics-addr", k.metricsAddr)
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	if err := k.cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	k.exited = make(chan struct{})
	go func() { _ = k.cmd.Wait(); logFile.Close(); close(k.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + k.healthAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-k.exited:
			return fmt.Errorf("kpoguard exited at start:\n%s", k.logs())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kpoguard not ready within 30s:\n%s", k.logs())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (k *kpoguardProcess) stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
	k.cmd = nil
}

func (k *kpoguardProcess) logs() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// metric returns the value of one metric series, e.g.
// `kpoguard_policy_reloads_total{result="failure"}`, or 0 when absent.
func (k *kpoguardProcess) metric(series string) (float64, error) {
	resp, err := http.Get("http://" + k.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && name == series {
			return strconv.ParseFloat(value, 64)
		}
	}
	return 0, nil
}

// url is the HTTPS address of one of kpoguard's webhook paths.
func (k *kpoguardProcess) url(path string) string {
	return fmt.Sprintf("https://%s%s", net.JoinHostPort(k.host, strconv.Itoa(k.port)), path)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
