package review

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/policy"
)

var update = flag.Bool("update", false, "rewrite the expected reviews in testdata/rules")

// rulesDir holds, for every rule, pods that pass it and pods that fail it
// (pod-security-admission's layout):
//
//	testdata/rules/<rule>/policy.yaml    the rule's section of spec.rules, and any other section it needs;
//	                                     every section it does not name is off
//	testdata/rules/<rule>/images.yaml    optional: image -> platforms, or error, for image lookups
//	testdata/rules/<rule>/pass/<pod>.yaml  pods the rule neither changes nor refuses
//	testdata/rules/<rule>/fail/<pod>.yaml  pods the rule changes or refuses
//	                                     (annotationParent on a pod sets the worker that launched it)
//	<pod>.review.json                    each pod's expected review (go test ./review -update rewrites them)
const rulesDir = "../testdata/rules"

// expectedReview is what a fixture's review is compared on.
type expectedReview struct {
	Decision   Decision              `json:"decision"`
	Changes    []policy.Change       `json:"changes,omitempty"`
	Violations []policy.Violation    `json:"violations,omitempty"`
	Message    string                `json:"message,omitempty"`
	Warnings   []string              `json:"warnings,omitempty"`
	Patch      []jsonpatch.Operation `json:"patch,omitempty"`
}

// ruleFixture is one pod of a rule's fixtures and its review.
type ruleFixture struct {
	rule   policy.RuleID
	pass   bool
	path   string
	review Result
}

// reviewRuleFixtures reviews every rule's fixtures, failing the test on
// a rule without pods of both kinds or a directory that names no rule.
func reviewRuleFixtures(t *testing.T) []ruleFixture {
	t.Helper()
	dirs, err := os.ReadDir(rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !slices.Contains(policy.RuleIDs(), policy.RuleID(d.Name())) {
			t.Errorf("%s: names no rule", filepath.Join(rulesDir, d.Name()))
		}
	}
	var out []ruleFixture
	for _, id := range policy.RuleIDs() {
		dir := filepath.Join(rulesDir, string(id))
		p := rulePolicy(t, id, dir)
		if p == nil {
			continue
		}
		images := fixtureImages(t, dir)
		for _, kind := range []string{"pass", "fail"} {
			pods, _ := filepath.Glob(filepath.Join(dir, kind, "*.yaml"))
			if len(pods) == 0 {
				t.Errorf("rule %s has no pods in %s", id, filepath.Join(dir, kind))
			}
			for _, file := range pods {
				raw, pod := readPod(t, file)
				res := Review(t.Context(), p, Request{Operation: Create, Namespace: pod.Namespace, Pod: pod, Raw: raw}, Full,
					Resolvers{Images: images, Parents: fixtureParent(t, file, pod)})
				if res.Decision == Error {
					t.Fatalf("%s: %v", file, res.Err)
				}
				out = append(out, ruleFixture{rule: id, pass: kind == "pass", path: file, review: res})
			}
		}
	}
	return out
}

// Every rule has pods that pass and pods that fail, each with the review
// it expects; a review file without its pod is stale.
func TestRuleFixtures(t *testing.T) {
	fixtures := reviewRuleFixtures(t)
	want := map[string]bool{}
	for _, f := range fixtures {
		name := strings.TrimSuffix(f.path, ".yaml") + ".review.json"
		want[name] = true
		t.Run(strings.TrimPrefix(f.path, rulesDir+"/"), func(t *testing.T) {
			res := f.review
			found := slices.ContainsFunc(res.Changes, func(c policy.Change) bool { return c.Rule == f.rule }) ||
				slices.ContainsFunc(res.Violations, func(v policy.Violation) bool { return v.Rule == f.rule })
			if found == f.pass {
				t.Errorf("in %s, but %s found something (%v): changes %v, violations %v", map[bool]string{true: "pass/", false: "fail/"}[f.pass], f.rule, found, res.Changes, res.Violations)
			}
			got, err := json.MarshalIndent(expectedReview{res.Decision, res.Changes, res.Violations, res.Message, res.Warnings, res.Patch}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			if *update {
				if err := os.WriteFile(name, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			expected, err := os.ReadFile(name)
			if err != nil {
				t.Fatalf("no expected review (go test ./review -run TestRuleFixtures -update): %v", err)
			}
			if string(expected) != string(got) {
				t.Errorf("%s drifted (go test ./review -run TestRuleFixtures -update):\n--- got\n%s\n--- want\n%s", name, got, expected)
			}
		})
	}
	reviews, _ := filepath.Glob(filepath.Join(rulesDir, "*", "*", "*.review.json"))
	for _, r := range reviews {
		if !want[r] && !*update {
			t.Errorf("%s: stale, its pod is gone", r)
		}
	}
}

// rulePolicy is a policy with the rule directory's sections of spec.rules
// and every other rule off.
func rulePolicy(t *testing.T, id policy.RuleID, dir string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Errorf("rule %s has no fixtures: %v", id, err)
		return nil
	}
	rules := map[string]any{}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	if _, ok := rules[policy.Section(id)]; !ok {
		t.Fatalf("%s/policy.yaml has no %s section", dir, policy.Section(id))
	}
	for _, other := range policy.RuleIDs() {
		if _, ok := rules[policy.Section(other)]; !ok {
			rules[policy.Section(other)] = map[string]any{"mode": "off"}
		}
	}
	doc, err := yaml.Marshal(map[string]any{
		"apiVersion": "kpoguard.io/v1alpha1", "kind": "PodPolicy",
		"metadata": map[string]any{"name": string(id)}, "spec": map[string]any{"rules": rules},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(doc)
	if err != nil {
		t.Fatalf("%s/policy.yaml: %v", dir, err)
	}
	return p
}

// fixtureImages answers image lookups from the rule directory's
// images.yaml: "linux/amd64, linux/arm64/v8", or "error: why".
func fixtureImages(t *testing.T, dir string) ImageResolver {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "images.yaml"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]string{}
	if err := yaml.UnmarshalStrict(data, &known); err != nil {
		t.Fatalf("%s/images.yaml: %v", dir, err)
	}
	return ImageResolverFunc(func(_ context.Context, _ *corev1.Pod, _ policy.ImageArchitectureConfig, images []string) map[string]policy.ImageFacts {
		out := map[string]policy.ImageFacts{}
		for _, image := range images {
			answer, ok := known[image]
			if why, failed := strings.CutPrefix(answer, "error: "); failed || !ok {
				if !ok {
					why = fmt.Sprintf("images.yaml does not list %s", image)
				}
				out[image] = policy.ImageFacts{Err: why}
				continue
			}
			var facts policy.ImageFacts
			for _, p := range strings.Split(answer, ",") {
				parts := strings.Split(strings.TrimSpace(p), "/")
				pl := policy.Platform{OS: parts[0], Architecture: parts[1]}
				if len(parts) > 2 {
					pl.Variant = parts[2]
				}
				facts.Platforms = append(facts.Platforms, pl)
			}
			out[image] = facts
		}
		return out
	})
}

// annotationParent, on a fixture pod, is the launching worker its review
// finds, as the JSON of a policy.Parent: {"Via": "identity", "Worker":
// "airflow-worker-0", "Queue": "nvme"}. Without it, no worker is looked up.
const annotationParent = "test.kpoguard.io/parent"

type fixedParent struct{ parent *policy.Parent }

func (f fixedParent) Parent(context.Context, *Request, policy.NodePoolConfig) *policy.Parent {
	return f.parent
}

func fixtureParent(t *testing.T, file string, pod *corev1.Pod) ParentResolver {
	t.Helper()
	text, ok := pod.Annotations[annotationParent]
	if !ok {
		return nil
	}
	var p policy.Parent
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		t.Fatalf("%s: annotation %s: %v", file, annotationParent, err)
	}
	return fixedParent{&p}
}

func readPod(t *testing.T, file string) ([]byte, *corev1.Pod) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if pod.Namespace == "" {
		t.Fatalf("%s: give the pod a namespace", file)
	}
	return raw, pod
}

// The messages docs/policy.md quotes are what the rules say: every
// finding quoted in its text blocks has the shape (its words, with other
// quoted names and numbers) of one that some rule fixture produces.
func TestDocsQuoteWhatRulesSay(t *testing.T) {
	produced := map[string]bool{}
	for _, f := range reviewRuleFixtures(t) {
		for _, c := range f.review.Changes {
			produced[shape(fmt.Sprintf("set [%s] %s=%s", c.Rule, c.Path, c.Value))] = true
		}
		for _, v := range f.review.Violations {
			produced[shape(v.String())] = true
		}
		for _, w := range f.review.Warnings {
			produced[shape(w)] = true
		}
	}
	quotes := docQuotes(t, "../docs/policy.md")
	if len(quotes) < 20 {
		t.Fatalf("found %d quoted findings in docs/policy.md: the extraction is broken", len(quotes))
	}
	for _, q := range quotes {
		if !produced[shape(q.text)] {
			t.Errorf("docs/policy.md:%d quotes a finding no rule fixture produces (add a fixture under testdata/rules, or correct the docs):\n%s", q.line, q.text)
		}
	}
}

type docQuote struct {
	line int
	text string
}

// finding matches a quoted finding: "[rule] ..." after kpoguard check's
// or kubectl's prefix.
var finding = regexp.MustCompile(`^\s*(denied |audit: |Warning: |set )?(kpoguard )?(\[[a-z-]+\] .*)$`)

// docQuotes returns the findings quoted in a Markdown file's text blocks,
// in kpoguard check's words: "set [rule] path=value" for a change, a
// violation as it reads in a denial, a warning as kubectl prints it.
func docQuotes(t *testing.T, file string) []docQuote {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []docQuote
	inText := false
	for i, line := range strings.Split(string(data), "\n") {
		// A fence may be indented, inside a list item.
		if fence := strings.TrimLeft(line, " "); strings.HasPrefix(fence, "```") {
			inText = fence == "```text"
			continue
		}
		m := finding.FindStringSubmatch(line)
		if !inText || m == nil {
			continue
		}
		text := m[3]
		switch {
		case m[1] == "set ":
			text = "set " + text
		case m[2] != "":
			text = "kpoguard " + text
		}
		out = append(out, docQuote{line: i + 1, text: text})
	}
	return out
}

var (
	quoted = regexp.MustCompile(`"[^"]*"`)
	number = regexp.MustCompile(`[0-9]+`)
)

// shape is a finding with its quoted names and numbers blanked, so that
// an example in the docs matches a fixture with other values.
func shape(s string) string {
	return number.ReplaceAllString(quoted.ReplaceAllString(s, `"…"`), "#")
}
