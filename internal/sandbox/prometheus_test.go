package sandbox

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// Prometheus scrapes a target on loopback with the rule files given, and
// Stop ends its process.
func TestPrometheusScrapesAndStops(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE demo_total counter\ndemo_total 7")
	}))
	defer target.Close()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("groups:\n  - name: demo\n    rules:\n      - alert: DemoSeen\n        expr: demo_total > 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := StartPrometheus(t.Context(), PrometheusOptions{
		Dir: dir, Job: "demo", Targets: []string{strings.TrimPrefix(target.URL, "http://")},
		Labels: map[string]string{"namespace": "ns"}, RuleFiles: []string{rules}, Interval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	var got model.Vector
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		value, _, _, err := p.API.Query(t.Context(), `demo_total{job="demo",namespace="ns"}`, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, _ = value.(model.Vector)
	}
	if len(got) != 1 || got[0].Value != 7 {
		t.Fatalf("demo_total as scraped: %v, want 7\n%s", got, p.Logs())
	}
	rulesLoaded, err := p.API.Rules(t.Context(), nil)
	if err != nil || len(rulesLoaded.Groups) != 1 || len(rulesLoaded.Groups[0].Rules) != 1 {
		t.Errorf("rules loaded: %+v, %v; want the one alert", rulesLoaded, err)
	}
	pid := p.c.cmd.Process.Pid
	p.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("prometheus (pid %d) still runs after Stop", pid)
	}
}

// Without the prometheus package, or with a target off this machine,
// StartPrometheus refuses and says why.
func TestStartPrometheusRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, path, target, want string
	}{
		{"not installed", t.TempDir(), "127.0.0.1:9", "`make tools` installs Debian's prometheus package"},
		{"target off loopback", "", "192.0.2.1:8080", `scrape target "192.0.2.1:8080" is not on 127.0.0.1`},
		{"target by name", "", "localhost:8080", `scrape target "localhost:8080" is not on 127.0.0.1`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			p, err := StartPrometheus(t.Context(), PrometheusOptions{Dir: t.TempDir(), Job: "x", Targets: []string{tt.target}, Interval: time.Second})
			if err == nil {
				p.Stop()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("StartPrometheus: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
