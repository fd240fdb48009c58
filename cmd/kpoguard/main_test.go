package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	examplePolicy = "../../examples/policy.yaml"
	kpoFixtures   = "../../testdata/kpo"
	ownFixtures   = "../../testdata/pods"
	goldenDir     = "../../testdata/golden"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExitCodes(t *testing.T) {
	badPolicy := writeFile(t, "bad.yaml", "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: {rules: {defaultResources: {mode: maybe}}}\n")
	notPod := writeFile(t, "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
	badYAML := writeFile(t, "bad-pod.yaml", "apiVersion: v1\nkind: Pod\nspec: [\n")
	onlyComments := writeFile(t, "empty.yaml", "# nothing here\n---\n# nor here\n")
	admitted := filepath.Join(kpoFixtures, "01-kpo-basic-no-resources.yaml")
	denied := filepath.Join(ownFixtures, "10-pvc-task.yaml")
	tests := []struct {
		name      string
		args      []string
		stdin     string
		code      int
		stdoutHas string
		stderrHas string
	}{
		{name: "admitted", args: []string{"check", "--offline", "-p", examplePolicy, "-f", admitted}, code: 0, stdoutHas: "): mutated"},
		{name: "denied", args: []string{"check", "--offline", "-p", examplePolicy, "-f", denied}, code: 1, stdoutHas: "denied [no-persistent-volumes]"},
		{name: "stdin", args: []string{"check", "--offline", "-p", examplePolicy, "-f", "-"}, stdin: readFile(t, denied), code: 1, stdoutHas: "(<stdin>): denied"},
		{name: "directory with a denied pod", args: []string{"check", "--offline", "-p", examplePolicy, "-f", ownFixtures}, code: 1, stdoutHas: "checked as a task pod anyway"},
		{name: "dry_run() output", args: []string{"check", "--offline", "-p", examplePolicy, "-f", filepath.Join(ownFixtures, "15-kpo-dry-run.yaml")}, code: 0,
			stdoutHas: "set [image-pull-secrets] spec.imagePullSecrets[0]=platform-registry"},
		{name: "dry_run() output with a field the renaming cannot place", args: []string{"check", "--offline", "-p", examplePolicy, "-f", "-"}, code: 2,
			stdin:     "api_version: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: base, image: x, not_a_field: 1}]\n",
			stderrHas: `unknown field "spec.containers[0].not_a_field"`},
		{name: "exempt namespace", args: []string{"check", "--offline", "-p", examplePolicy, "-f", denied, "-n", "kube-system"}, code: 0, stdoutHas: "not checked: exempt-namespace"},
		{name: "no flags", args: []string{"check"}, code: 2, stderrHas: "usage: kpoguard check"},
		{name: "unknown output", args: []string{"check", "--offline", "-p", examplePolicy, "-f", admitted, "-o", "xml"}, code: 2, stderrHas: "usage"},
		{name: "missing policy file", args: []string{"check", "--offline", "-p", "nope.yaml", "-f", admitted}, code: 2, stderrHas: "nope.yaml: no such file"},
		{name: "invalid policy", args: []string{"check", "--offline", "-p", badPolicy, "-f", admitted}, code: 2, stderrHas: `spec.rules.defaultResources.mode: Unsupported value: "maybe"`},
		{name: "not a pod", args: []string{"check", "--offline", "-p", examplePolicy, "-f", notPod}, code: 2, stderrHas: "is v1 Service, not a v1 Pod"},
		{name: "bad YAML", args: []string{"check", "--offline", "-p", examplePolicy, "-f", badYAML}, code: 2, stderrHas: "not valid YAML"},
		{name: "no pods", args: []string{"check", "--offline", "-p", examplePolicy, "-f", onlyComments}, code: 2, stderrHas: "no pods found"},
		{name: "missing input", args: []string{"check", "--offline", "-p", examplePolicy, "-f", "missing.yaml"}, code: 2, stderrHas: "missing.yaml"},
		{name: "bad namespace labels", args: []string{"check", "--offline", "-p", examplePolicy, "-f", admitted, "--namespace-labels", "tier"}, code: 2, stderrHas: `"tier" is not key=value`},
		{name: "lint valid", args: []string{"policy", "lint", "-p", examplePolicy}, code: 0, stdoutHas: `valid policy "platform"`},
		{name: "lint invalid", args: []string{"policy", "lint", "-p", badPolicy}, code: 2, stderrHas: "invalid policy: 1 error(s)"},
		{name: "lint without file", args: []string{"policy", "lint"}, code: 2, stderrHas: "usage: kpoguard policy lint"},
		{name: "version", args: []string{"version"}, code: 0, stdoutHas: "kpoguard dev"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderrHas: `unknown command "frobnicate"`},
		{name: "no command", args: nil, code: 2, stderrHas: "Usage:"},
		{name: "serve without a policy", args: []string{"serve"}, code: 2, stderrHas: "exactly one of --policy-file and --policy-configmap"},
		{name: "serve with a CA shorter than two certificates", args: []string{"serve", "--policy-file", examplePolicy, "--health-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--kubeconfig", "/nonexistent", "--self-managed-certs", "kpoguard/tls", "--cert-hosts", "x", "--webhook-configurations", "x", "--ca-lifetime", "1h", "--cert-lifetime", "1h"},
			code: 1, stderrHas: "--ca-lifetime (1h0m0s) must be at least twice --cert-lifetime (1h0m0s)"},
		{name: "serve with a bad policy", args: []string{"serve", "--policy-file", badPolicy, "--health-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--kubeconfig", "/nonexistent"},
			code: 1, stderrHas: "no valid policy to start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdoutHas) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdoutHas, stdout)
			}
			if !strings.Contains(stderr, tt.stderrHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrHas, stderr)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// podFixtures lists every pod fixture, KPO's and our own; a directory
// without any fails the test rather than shrinking it.
func podFixtures(t *testing.T) []string {
	t.Helper()
	var fixtures []string
	for _, dir := range []string{kpoFixtures, ownFixtures} {
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no fixtures in %s: %v", dir, err)
		}
		fixtures = append(fixtures, files...)
	}
	return fixtures
}

// TestGolden checks every fixture, KPO's and our own, against the example
// policy: the text report and the JSON patch. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	want := map[string]bool{}
	for _, f := range podFixtures(t) {
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)) + ".golden"
		want[name] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, text, stderr := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", f)
			_, patch, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", f, "-o", "patch")
			if stderr != "" {
				t.Fatalf("stderr: %s", stderr)
			}
			got := strings.ReplaceAll(text+patch, filepath.Dir(f)+"/", "")
			path := filepath.Join(goldenDir, name)
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if golden := readFile(t, path); got != golden {
				t.Errorf("%s drifted (go test ./cmd/kpoguard -run TestGolden -update):\n--- got\n%s\n--- want\n%s", path, got, golden)
			}
		})
	}
	// A golden file without a fixture is stale.
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.golden"))
	var stale []string
	for _, f := range files {
		if !want[filepath.Base(f)] {
			stale = append(stale, f)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 && !*update {
		t.Errorf("golden files without a fixture: %v", stale)
	}
}

func TestJSONOutput(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", filepath.Join(ownFixtures, "11-oversized-cross-account.yaml"), "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var reports []struct {
		Name       string
		Decision   string
		Violations []struct{ Rule, Mode, Path string }
	}
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].Decision != "denied" || len(reports[0].Violations) != 7 {
		t.Fatalf("reports = %+v", reports)
	}
	rules := make([]string, len(reports[0].Violations))
	for i, v := range reports[0].Violations {
		rules[i] = v.Rule
	}
	want := "max-resources max-resources max-resources max-resources ephemeral-storage service-account image-architecture"
	if got := strings.Join(rules, " "); got != want {
		t.Errorf("rules %q, want %q", got, want)
	}
}

// Overrides that select namespaces by label are exercised with
// --namespace-labels.
func TestNamespaceOverrides(t *testing.T) {
	pod := filepath.Join(kpoFixtures, "01-kpo-basic-no-resources.yaml")
	_, plain, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", pod)
	_, large, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", pod, "--namespace-labels", "kpoguard.io/tier=large")
	if !strings.Contains(plain, "limits[cpu]=1\n") || !strings.Contains(large, "limits[cpu]=2\n") {
		t.Errorf("tier=large override not applied:\nplain:\n%s\nlarge:\n%s", plain, large)
	}
	code, ml, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", filepath.Join(ownFixtures, "11-oversized-cross-account.yaml"), "-n", "astronomer-ml-team")
	if code != 1 || strings.Contains(ml, "[ephemeral-storage] volume") || !strings.Contains(ml, `service account "finance-admin"`) {
		t.Errorf("ml-team override: emptyDir should be allowed and finance-admin still refused:\n%s", ml)
	}
}

func TestYAMLOutputIsTheMutatedPod(t *testing.T) {
	_, out, _ := runCLI(t, "", "check", "--offline", "-p", examplePolicy, "-f", filepath.Join(kpoFixtures, "01-kpo-basic-no-resources.yaml"), "-o", "yaml")
	for _, want := range []string{"kpoguard.io/mutations:", "kpoguard.io/policy:", "name: env-secrets", "kpoguard.io/node-pool: default", "cpu: \"1\""} {
		if !strings.Contains(out, want) {
			t.Errorf("yaml output lacks %q:\n%s", want, out)
		}
	}
}

// check looks images up in their registries and prints what it found.
func TestCheckLooksUpImages(t *testing.T) {
	s := registrytest.New(t)
	ca := writeFile(t, "ca.pem", string(s.CertPEM))
	pol := writeFile(t, "policy.yaml", "apiVersion: kpoguard.io/v1alpha1\nkind: PodPolicy\nspec: {rules: {imageArchitecture: {lookupTimeout: 2s}}}\n")
	pod := func(images ...string) string {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: task, labels: {kubernetes_pod_operator: \"True\"}}\nspec:\n  containers:\n")
		for i, image := range images {
			fmt.Fprintf(&b, "  - {name: c%d, image: %q}\n", i, image)
		}
		return writeFile(t, "pod.yaml", b.String())
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		has     []string
		hasNone string
	}{
		{name: "multi-arch and amd64 admitted", args: []string{"-f", pod(s.Ref(registrytest.MultiArch), s.Ref(registrytest.AMD64))}, code: 0,
			has: []string{"image " + s.Ref(registrytest.MultiArch) + ": linux/amd64, linux/arm64/v8\n", "image " + s.Ref(registrytest.AMD64) + ": linux/amd64\n"}},
		{name: "arm64-only denied", args: []string{"-f", pod(s.Ref(registrytest.ARM64Only))}, code: 1,
			has: []string{"image " + s.Ref(registrytest.ARM64Only) + ": linux/arm64/v8\n", "denied [image-architecture]", "docker buildx build --platform linux/amd64"}},
		{name: "single arm64 manifest denied", args: []string{"-f", pod(s.Ref(registrytest.ARM64))}, code: 1,
			has: []string{"image " + s.Ref(registrytest.ARM64) + ": linux/arm64/v8\n", `it would fail with "exec format error"`}},
		{name: "missing image: a warning", args: []string{"-f", pod(s.Ref(registrytest.Missing))}, code: 0,
			has: []string{"lookup failed: the registry has no such image", "Warning: kpoguard [image-architecture]"}},
		{name: "offline", args: []string{"--offline", "-f", pod(s.Ref(registrytest.ARM64Only))}, code: 0, hasNone: "image "},
		{name: "JSON report", args: []string{"-o", "json", "-f", pod(s.Ref(registrytest.ManifestList))}, code: 0,
			has: []string{`"image": "` + s.Ref(registrytest.ManifestList) + `"`, `"linux/arm64/v8"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check", "-p", pol, "--registry-ca-file", ca}, tt.args...)
			code, stdout, stderr := runCLI(t, "", args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, want := range tt.has {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if tt.hasNone != "" && strings.Contains(stdout, tt.hasNone) {
				t.Errorf("stdout has %q:\n%s", tt.hasNone, stdout)
			}
		})
	}
	_, _, stderr := runCLI(t, "", "check", "-p", pol, "--registry-ca-file", ca, "-v", "-f", pod(s.Ref(registrytest.Missing)))
	if !strings.Contains(stderr, "image lookup failed") || !strings.Contains(stderr, "404 Not Found") {
		t.Errorf("-v: stderr lacks the registry's answer:\n%s", stderr)
	}
	code, _, stderr := runCLI(t, "", "check", "-p", pol, "--registry-ca-file", pol, "-f", pod("alpine"))
	if code != 2 || !strings.Contains(stderr, "holds no PEM certificate") {
		t.Errorf("a CA file without certificates: exit %d, stderr %q", code, stderr)
	}
}
