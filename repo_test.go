// Package repo_test holds checks on the repository as a whole.
package repo_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
