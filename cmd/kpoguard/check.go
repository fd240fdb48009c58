package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/registry"
	"github.com/kpoguard/kpoguard/webhook"
)

const checkUsage = `usage: kpoguard check -p POLICY -f FILE|DIR|- [-n NAMESPACE] [-o text|yaml|patch|json] [--offline] [-v]

Runs each pod through kpoguard's mutating and validating rules, as the
webhooks would at admission, and prints the decision, every change and
every violation. Pods may be multi-document YAML or JSON, such as the
output of KubernetesPodOperator's dry_run(). A directory is read for
*.yaml, *.yml and *.json files.

Unless --offline, each image is looked up in its registry, as the policy
says (mirrors, timeout, trusted images), and the platforms found are
printed. Where the policy reads pull secrets, check uses your Docker
credentials (~/.docker/config.json) instead.

Exit status: 0 every pod admitted, 1 a pod denied, 2 bad input.
`

// podReport is what check prints for one pod.
type podReport struct {
	Source     string             `json:"source"`
	Namespace  string             `json:"namespace"`
	Name       string             `json:"name"`
	Decision   string             `json:"decision"`
	Skipped    string             `json:"skipped,omitempty"`
	Note       string             `json:"note,omitempty"`
	Changes    []policy.Change    `json:"changes,omitempty"`
	Violations []policy.Violation `json:"violations,omitempty"`
	Patch      json.RawMessage    `json:"patch,omitempty"`
	Images     []imageReport      `json:"images,omitempty"`

	pod *corev1.Pod
}

// imageReport is what a registry said of one image.
type imageReport struct {
	Image     string   `json:"image"`
	Platforms []string `json:"platforms,omitempty"`
	Error     string   `json:"error,omitempty"`
	Trusted   bool     `json:"trusted,omitempty"`
}

type checkFlags struct {
	policyFile string
	input      string
	namespace  string
	nsLabels   string
	output     string
	offline    bool
	caFile     string
	// log receives each failed lookup's details with -v.
	log logr.Logger
}

func check(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f checkFlags
	fs := flag.NewFlagSet("kpoguard check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkUsage); fs.PrintDefaults() }
	fs.StringVar(&f.policyFile, "p", "", "policy file (required)")
	fs.StringVar(&f.input, "f", "", "pod file, directory, or - for standard input (required)")
	fs.StringVar(&f.namespace, "n", "", "namespace to check the pods in (default: each pod's own, else \"default\")")
	fs.StringVar(&f.nsLabels, "namespace-labels", "", "labels of that namespace, for overrides that select by label: key=value,...")
	fs.StringVar(&f.output, "o", "text", "output: text, yaml (the mutated pods), patch (JSON patches) or json (a report)")
	fs.BoolVar(&f.offline, "offline", false, "do not look images up in their registries")
	fs.StringVar(&f.caFile, "registry-ca-file", "", "PEM file of CAs trusted for registries, besides the system's")
	verbose := fs.Bool("v", false, "print each failed lookup's details (the registry's answer) to standard error")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	f.log = logr.Discard()
	if *verbose {
		f.log = logr.FromSlogHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-1)}))
	}
	if f.policyFile == "" || f.input == "" || fs.NArg() > 0 || !slices.Contains([]string{"text", "yaml", "patch", "json"}, f.output) {
		fs.Usage()
		return exitBadInput
	}
	reports, err := runCheck(f, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard: %v\n", err)
		return exitBadInput
	}
	if err := printReports(stdout, f.output, reports); err != nil {
		fmt.Fprintf(stderr, "kpoguard: %v\n", err)
		return exitBadInput
	}
	if slices.ContainsFunc(reports, func(r podReport) bool { return r.Decision == "denied" }) {
		return exitDenied
	}
	return exitOK
}

func runCheck(f checkFlags, stdin io.Reader) ([]podReport, error) {
	data, err := os.ReadFile(f.policyFile)
	if err != nil {
		return nil, err
	}
	p, err := policy.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.policyFile, err)
	}
	labels, err := parseLabels(f.nsLabels)
	if err != nil {
		return nil, err
	}
	docs, err := readDocuments(f.input, stdin)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no pods found", f.input)
	}
	var images webhook.ImageResolver
	if !f.offline {
		opts := registry.ClientOptions{UserAgent: "kpoguard-check/" + version}
		if f.caFile != "" {
			if opts.RootCAs, err = certPool(f.caFile); err != nil {
				return nil, fmt.Errorf("--registry-ca-file: %w", err)
			}
		}
		images = &webhook.RegistryImages{
			Cache:     registry.NewCache(registry.NewClient(opts), registry.CacheOptions{}),
			Keychains: dockerCredentials{},
			Log:       f.log,
		}
	}
	reports := make([]podReport, 0, len(docs))
	for _, d := range docs {
		r, err := checkPod(p, d, f.namespace, labels, images)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.source, err)
		}
		reports = append(reports, r)
	}
	return reports, nil
}

// checkPod runs one pod through the rules as the two webhooks would: the
// mutating rules, then the validating rules on the mutated pod.
func checkPod(p *policy.Policy, d document, namespace string, nsLabels map[string]string, images webhook.ImageResolver) (podReport, error) {
	raw, pod, err := decodePod(d.json)
	if err != nil {
		return podReport{}, err
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		return podReport{}, fmt.Errorf("is %s %s, not a v1 Pod", pod.APIVersion, pod.Kind)
	}
	if err := policy.CheckQuantities(pod); err != nil {
		return podReport{}, err
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	if namespace == "" {
		namespace = "default"
	}
	r := podReport{Source: d.source, Namespace: namespace, Name: pod.Name, Decision: "admitted", pod: pod}
	// A pod given to check is checked as a task pod even without the
	// task label: dry_run() output has none, as KPO adds it at run time.
	switch reason := p.Skips(namespace, pod.Labels, policy.Requester{}); reason {
	case "":
	case policy.SkipNotTaskPod:
		r.Note = "the pod does not match the policy's taskPodSelector; checked as a task pod anyway (KPO adds its labels at run time)"
	default:
		r.Skipped = reason
		return r, nil
	}
	rules, err := p.RulesFor(policy.Namespace{Name: namespace, Labels: nsLabels})
	if err != nil {
		return podReport{}, err
	}
	mutated := pod.DeepCopy()
	r.Changes = rules.Mutate(mutated, policy.Facts{})
	webhook.Annotate(mutated, policy.Applied(r.Changes), p.Hash())
	patch, err := webhook.PodPatch(raw, pod, mutated)
	if err != nil {
		return podReport{}, err
	}
	if r.Patch, err = json.Marshal(patch); err != nil {
		return podReport{}, err
	}
	r.pod = mutated
	facts := policy.Facts{}
	if cfg := rules.ImageArchitecture; images != nil && cfg.Mode != policy.Off {
		facts.Images = images.Resolve(context.Background(), mutated, cfg, webhook.LookupImages(mutated, cfg))
		r.Images = imageReports(mutated, cfg, facts.Images)
	}
	r.Violations = rules.Validate(mutated, facts)
	if len(policy.Denials(r.Violations)) > 0 {
		r.Decision = "denied"
	}
	return r, nil
}

func imageReports(pod *corev1.Pod, cfg policy.ImageArchitectureConfig, facts map[string]policy.ImageFacts) []imageReport {
	var out []imageReport
	for _, image := range policy.Images(pod) {
		r := imageReport{Image: image, Trusted: cfg.Trusted(image)}
		f := facts[image]
		r.Error = f.Err
		for _, p := range f.Platforms {
			r.Platforms = append(r.Platforms, p.String())
		}
		out = append(out, r)
	}
	return out
}

// dockerCredentials stands in for pull secrets: the user's Docker login.
type dockerCredentials struct{}

func (dockerCredentials) For(context.Context, *corev1.Pod) (authn.Keychain, error) {
	return authn.DefaultKeychain, nil
}

func printReports(w io.Writer, output string, reports []podReport) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	case "patch":
		for _, r := range reports {
			fmt.Fprintf(w, "# %s/%s (%s)\n%s\n", r.Namespace, r.Name, r.Source, orEmptyPatch(r.Patch))
		}
		return nil
	case "yaml":
		for i, r := range reports {
			out, err := yaml.Marshal(r.pod)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			fmt.Fprintf(w, "# %s: %s\n%s", r.Source, r.Decision, out)
		}
		return nil
	}
	for _, r := range reports {
		printText(w, r)
	}
	return nil
}

func orEmptyPatch(p json.RawMessage) string {
	if len(p) == 0 || string(p) == "null" {
		return "[]"
	}
	return string(p)
}

func printText(w io.Writer, r podReport) {
	fmt.Fprintf(w, "pod %s/%s (%s): %s", r.Namespace, r.Name, r.Source, r.Decision)
	if r.Skipped != "" {
		fmt.Fprintf(w, ", not checked: %s\n", r.Skipped)
		return
	}
	fmt.Fprintln(w)
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
	for _, img := range r.Images {
		switch {
		case img.Trusted:
			fmt.Fprintf(w, "  image %s: trusted, not looked up\n", img.Image)
		case img.Error != "":
			fmt.Fprintf(w, "  image %s: lookup failed: %s\n", img.Image, img.Error)
		default:
			fmt.Fprintf(w, "  image %s: %s\n", img.Image, strings.Join(img.Platforms, ", "))
		}
	}
	for _, c := range r.Changes {
		verb := "set"
		if c.Mode != policy.Enforce {
			verb = "would set (" + string(c.Mode) + " mode)"
		}
		fmt.Fprintf(w, "  %s [%s] %s=%s\n", verb, c.Rule, c.Path, c.Value)
	}
	for _, v := range r.Violations {
		kind := map[policy.Mode]string{policy.Enforce: "denied", policy.Warn: "warning", policy.Audit: "audit"}[v.Mode]
		fmt.Fprintf(w, "  %s %s\n", kind, v)
	}
}

// decodePod reads a pod as kubectl writes it, or as KPO's dry_run() prints
// it (the Python client's snake_case names), which is renamed first and
// then decoded strictly, so a name the renaming missed is an error rather
// than silently dropped. It returns the pod's JSON in the API's names.
func decodePod(data []byte) ([]byte, *corev1.Pod, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a valid pod: %w", err)
	}
	pod := &corev1.Pod{}
	if !isPythonDict(doc) {
		if err := json.Unmarshal(data, pod); err != nil {
			return nil, nil, fmt.Errorf("not a valid pod: %w", err)
		}
		return data, pod, nil
	}
	raw, err := json.Marshal(fromPythonDict(doc))
	if err != nil {
		return nil, nil, err
	}
	strict, err := kjson.UnmarshalStrict(raw, pod)
	if err != nil {
		return nil, nil, fmt.Errorf("not a valid pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, nil, fmt.Errorf("not a valid pod: %w", errors.Join(strict...))
	}
	return raw, pod, nil
}

// document is one YAML or JSON document, converted to JSON.
type document struct {
	source string
	json   []byte
}

func readDocuments(input string, stdin io.Reader) ([]document, error) {
	if input == "-" {
		return splitDocuments("<stdin>", stdin)
	}
	info, err := os.Stat(input)
	if err != nil {
		return nil, err
	}
	files := []string{input}
	if info.IsDir() {
		entries, err := os.ReadDir(input)
		if err != nil {
			return nil, err
		}
		files = nil
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(input, e.Name()))
			}
		}
	}
	var docs []document
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		d, err := splitDocuments(name, fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

// splitDocuments reads multi-document YAML (or JSON); documents holding
// only comments are skipped.
func splitDocuments(name string, r io.Reader) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: not valid YAML: %w", name, i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		source := name
		if i > 1 {
			source = fmt.Sprintf("%s#%d", name, i)
		}
		docs = append(docs, document{source: source, json: j})
	}
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--namespace-labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
