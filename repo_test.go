// Package repo_test holds checks on the repository as a whole.
package repo_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// parentPath finds relative paths that climb to a parent directory.
var parentPath = regexp.MustCompile(`(?:\.\./)+[A-Za-z0-9_.-]*`)

// The repository stands alone: people clone it with nothing beside it, so
// no tracked file may read or name a path outside it, relative to where
// the file is read from (its own directory, or the root for commands).
func TestNoTrackedFileReachesOutside(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(data, 0) >= 0 {
			continue // binary
		}
		for _, hit := range outsidePaths(root, name, string(data)) {
			t.Errorf("%s names %q, outside the repository", name, hit)
		}
	}
}

// outsidePaths returns the paths in a file's text that leave root. Go
// tests and Markdown links are read from the file's directory; every other
// path (commands, programs run from the root, scripts) from the root.
func outsidePaths(root, file, text string) []string {
	var out []string
	for _, loc := range parentPath.FindAllStringIndex(text, -1) {
		if loc[0] > 0 && strings.ContainsRune("./-_"+alnum, rune(text[loc[0]-1])) {
			continue // inside a longer path, or an ellipsis
		}
		m := text[loc[0]:loc[1]]
		base := root
		if strings.HasSuffix(file, "_test.go") || (strings.HasSuffix(file, ".md") && strings.HasSuffix(text[:loc[0]], "](")) {
			base = filepath.Join(root, filepath.Dir(file))
		}
		if !within(root, filepath.Join(base, m)) {
			out = append(out, m)
		}
	}
	return out
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func TestOutsidePathsFindsEscapes(t *testing.T) {
	// Built, so that this file names no outside path itself.
	up := func(n int, rest string) string { return strings.Repeat(".."+string(filepath.Separator), n) + rest }
	for _, c := range []struct {
		file, text string
		want       int
	}{
		{"README.md", "see " + up(1, "shared/fixtures/kpo"), 1},
		{"cmd/kpoguard/main_test.go", up(2, "testdata/kpo"), 0}, // go test runs in the package's directory
		{"cmd/kpoguard/main_test.go", up(3, "shared/fixtures"), 1},
		{"hack/sandbox/main.go", "kubectl apply -f " + up(1, "shared/x.yaml"), 1}, // run from the root
		{"docs/policy.md", "[examples](" + up(1, "examples/policy.yaml)"), 0},
		{"docs/policy.md", "[proposal](" + up(2, "shared/design/ARCHITECTURE.md)"), 1},
		{"README.md", "testdata/kpo/01.yaml", 0},
		{"hack/build-tools.sh", `cd "$(dirname "$0")/.."`, 0},
		{"testdata/kpo/01.yaml", "# providers/cncf/kubernetes/." + up(1, "operators/pod.py"), 0}, // an ellipsis
	} {
		if got := outsidePaths("/repo", c.file, c.text); len(got) != c.want {
			t.Errorf("%s: %q: found %v, want %d", c.file, c.text, got, c.want)
		}
	}
}

const module = "github.com/kpoguard/kpoguard"

// An importRule limits a package's non-test imports (and those of the
// packages below it) that fall in a scope to the ones it allows.
type importRule struct {
	pkg   string   // relative to the module root
	scope string   // "" for every import outside the standard library, else this path and below
	allow []string // import paths, each with the packages below it
	may   string   // the rule in words, for the failure message
}

// The layering docs/architecture.md describes: policy stays pure (no
// client, no network, no registry), and the project's packages import one
// another in one direction only, with nothing of internal/ (test
// machinery such as envtest) in the binary.
var importRules = []importRule{
	{"policy", "", []string{"k8s.io/api", "k8s.io/apimachinery", "sigs.k8s.io/yaml", "sigs.k8s.io/json"},
		"policy may import only the standard library, k8s.io/api, k8s.io/apimachinery, sigs.k8s.io/yaml and sigs.k8s.io/json"},
	{"registry", module, nil, "registry may import no other package of the project"},
	{"certs", module, nil, "certs may import no other package of the project"},
	{"review", "", []string{module + "/policy", "k8s.io/api", "k8s.io/apimachinery", "gomodules.xyz/jsonpatch/v2"},
		"review may import only policy, the standard library, k8s.io/api, k8s.io/apimachinery and gomodules.xyz/jsonpatch/v2: its I/O comes through the resolvers it is given"},
	{"webhook", module, []string{module + "/policy", module + "/registry", module + "/review"},
		"of the project, webhook may import only policy, registry and review"},
	{"audit", module, []string{module + "/policy", module + "/review"},
		"of the project, audit may import only policy and review: its resolvers, like the webhooks', come from its caller"},
	{"cmd", module, []string{module + "/policy", module + "/registry", module + "/review", module + "/certs", module + "/webhook", module + "/audit"},
		"of the project, cmd may import only policy, registry, review, certs, webhook and audit"},
}

type listedPackage struct {
	ImportPath string
	Imports    []string // without those of its tests
}

func TestImportLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("reading go list's output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	for _, v := range importViolations(pkgs, importRules) {
		t.Error(v)
	}
}

// importViolations says how pkgs break rules, and which rule finds no
// package to check (so that a renamed package cannot escape its rule).
func importViolations(pkgs []listedPackage, rules []importRule) []string {
	var out []string
	for _, r := range rules {
		checked := false
		for _, p := range pkgs {
			if !under(p.ImportPath, module+"/"+r.pkg) {
				continue
			}
			checked = true
			for _, imp := range p.Imports {
				if r.limits(imp) && !slices.ContainsFunc(r.allow, func(a string) bool { return under(imp, a) }) {
					out = append(out, fmt.Sprintf("%s imports %s: %s", strings.TrimPrefix(p.ImportPath, module+"/"), imp, r.may))
				}
			}
		}
		if !checked {
			out = append(out, fmt.Sprintf("no package %s to check the rule %q on", r.pkg, r.may))
		}
	}
	return out
}

func (r importRule) limits(imp string) bool {
	if r.scope == "" {
		// Only the standard library's import paths have no dot in their
		// first element.
		first, _, _ := strings.Cut(imp, "/")
		return strings.Contains(first, ".")
	}
	return under(imp, r.scope)
}

// under reports whether path is pkg or a package below it.
func under(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

func TestImportViolationsFindsBrokenLayers(t *testing.T) {
	// Imports that keep every rule, one package per rule.
	allowed := map[string][]string{
		"policy":       {"fmt", "k8s.io/api/core/v1", "k8s.io/apimachinery/pkg/labels", "sigs.k8s.io/yaml"},
		"registry":     {"net/http", "github.com/google/go-containerregistry/pkg/v1/remote"},
		"certs":        {"crypto/x509", "k8s.io/client-go/kubernetes"},
		"review":       {module + "/policy", "gomodules.xyz/jsonpatch/v2", "k8s.io/api/core/v1"},
		"webhook":      {module + "/policy", module + "/review", "k8s.io/client-go/kubernetes"},
		"audit":        {module + "/policy", module + "/review", "k8s.io/client-go/tools/leaderelection"},
		"cmd/kpoguard": {module + "/certs", module + "/webhook", "sigs.k8s.io/controller-runtime/pkg/log"},
		"hack/sandbox": {module + "/internal/sandbox"},
	}
	for _, c := range []struct {
		pkg, imp string // an import added to pkg, or "" to drop pkg
		want     string // the violation, or ""
	}{
		{"", "", ""},
		{"policy", "k8s.io/client-go/kubernetes",
			"policy imports k8s.io/client-go/kubernetes: policy may import only the standard library, k8s.io/api, k8s.io/apimachinery, sigs.k8s.io/yaml and sigs.k8s.io/json"},
		{"policy", module + "/registry", "policy imports " + module + "/registry: policy may import only"},
		{"review", "k8s.io/client-go/kubernetes", "review imports k8s.io/client-go/kubernetes: review may import only"},
		{"policy", "k8s.io/apimachinery-extra/pkg", "policy imports k8s.io/apimachinery-extra/pkg:"},
		{"registry", module + "/policy", "registry imports " + module + "/policy: registry may import no other package of the project"},
		{"certs", module + "/internal/sandbox", "certs imports " + module + "/internal/sandbox: certs may import no other"},
		{"webhook", module + "/certs", "webhook imports " + module + "/certs: of the project, webhook may import only policy, registry and review"},
		{"audit", module + "/webhook", "audit imports " + module + "/webhook: of the project, audit may import only policy and review"},
		{"cmd/kpoguard", module + "/internal/sandbox", "cmd/kpoguard imports " + module + "/internal/sandbox: of the project, cmd may import only"},
		{"certs", "", `no package certs to check the rule "certs may import no other package of the project" on`},
	} {
		var pkgs []listedPackage
		for rel, imports := range allowed {
			if rel == c.pkg {
				if c.imp == "" {
					continue
				}
				imports = append(slices.Clone(imports), c.imp)
			}
			pkgs = append(pkgs, listedPackage{module + "/" + rel, imports})
		}
		got := importViolations(pkgs, importRules)
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("allowed imports: violations %q", got)
		case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
			t.Errorf("%s importing %q: violations %q, want one starting %q", c.pkg, c.imp, got, c.want)
		}
	}
}
