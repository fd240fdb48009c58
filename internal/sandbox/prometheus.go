package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"sigs.k8s.io/yaml"
)

// PrometheusOptions configure a Prometheus server for tests.
type PrometheusOptions struct {
	// Dir receives its configuration, its TSDB and its log.
	Dir string
	// Job names the scrape job of Targets.
	Job string
	// Targets are host:port metrics endpoints on 127.0.0.1.
	Targets []string
	// Labels are added to every target's series, as prometheus-operator
	// adds namespace.
	Labels map[string]string
	// RuleFiles are loaded and evaluated.
	RuleFiles []string
	// Interval is the scrape and rule evaluation interval.
	Interval time.Duration
}

// Prometheus is Debian's prometheus server (the package `make tools`
// installs) scraping targets on loopback, a child process that dies with
// its parent.
type Prometheus struct {
	URL string
	API promv1.API
	c   *component
}

// StartPrometheus starts Prometheus on a free loopback port and waits
// until it is ready. Stop ends it.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	binary, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, fmt.Errorf("prometheus is not installed: `make tools` installs Debian's prometheus package (hack/install-prometheus.sh)")
	}
	for _, target := range opts.Targets {
		// Tests never reach beyond this machine.
		if host, _, err := net.SplitHostPort(target); err != nil || host != "127.0.0.1" {
			return nil, fmt.Errorf("scrape target %q is not on 127.0.0.1", target)
		}
	}
	config, err := yaml.Marshal(map[string]any{
		"global":     map[string]any{"scrape_interval": opts.Interval.String(), "evaluation_interval": opts.Interval.String()},
		"rule_files": opts.RuleFiles,
		"scrape_configs": []any{map[string]any{
			"job_name":       opts.Job,
			"static_configs": []any{map[string]any{"targets": opts.Targets, "labels": opts.Labels}},
		}},
	})
	if err != nil {
		return nil, err
	}
	configFile := filepath.Join(opts.Dir, "prometheus.yml")
	if err := os.WriteFile(configFile, config, 0o600); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	url := "http://" + addr
	c := &component{
		name: "prometheus", binary: binary,
		args: []string{"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(opts.Dir, "tsdb"),
			"--web.listen-address=" + addr},
		logPath:   filepath.Join(opts.Dir, "prometheus.log"),
		healthURL: url + "/-/ready",
	}
	if err := c.start(ctx); err != nil {
		c.stop()
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		c.stop()
		return nil, err
	}
	return &Prometheus{URL: url, API: promv1.NewAPI(client), c: c}, nil
}

// Logs returns what Prometheus has logged.
func (p *Prometheus) Logs() string {
	b, _ := os.ReadFile(p.c.logPath)
	return string(b)
}

// Stop sends SIGTERM and waits for the exit.
func (p *Prometheus) Stop() { p.c.stop() }
