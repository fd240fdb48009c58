package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
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

type checkFlags struct {
	policyFile string
	input      string
	namespace  string
	nsLabels   string
	output     string
	lookups    lookupFlags
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
	f.lookups.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	f.log = f.lookups.logger(stderr)
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
	if slices.ContainsFunc(reports, func(r podReport) bool { return r.Decision == review.Denied }) {
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
	images, err := f.lookups.images("check", f.log)
	if err != nil {
		return nil, err
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

// checkPod reviews one pod as the two webhooks would in turn, through
// the same pipeline: the mutating rules, then the validating rules on the
// mutated pod. It makes no worker lookups: a policy that follows the
// launching worker decides by the queue label or the default queue.
func checkPod(p *policy.Policy, d document, namespace string, nsLabels map[string]string, images review.ImageResolver) (podReport, error) {
	raw, pod, err := decodePod(d.json)
	if err != nil {
		return podReport{}, err
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		return podReport{}, fmt.Errorf("is %s %s, not a v1 Pod", pod.APIVersion, pod.Kind)
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	if namespace == "" {
		namespace = "default"
	}
	res := review.Review(context.Background(), p, review.Request{
		Operation: review.Create,
		Namespace: namespace,
		Pod:       pod,
		Raw:       raw,
		// dry_run() output has no task label: KPO adds it at run time.
		AssumeTaskPod: true,
	}, review.Full, review.Resolvers{Namespaces: fixedLabels(nsLabels), Images: images})
	if res.Decision == review.Error {
		return podReport{}, res.Err
	}
	r := podReport{Source: d.source, Namespace: namespace, Name: pod.Name, Decision: res.Decision, Note: res.Note,
		Changes: res.Changes, Violations: res.Violations, Message: res.Message, Warnings: res.Warnings,
		AuditAnnotations: res.AuditAnnotations, pod: res.Pod}
	if res.Decision == review.Skipped {
		r.Skipped = res.Reason
		return r, nil
	}
	if r.Patch, err = json.Marshal(res.Patch); err != nil {
		return podReport{}, err
	}
	if res.Images != nil {
		r.Images = imageReports(res.Pod, res.Images)
	}
	return r, nil
}

// fixedLabels are the labels --namespace-labels gives the checked namespace.
type fixedLabels map[string]string

func (l fixedLabels) Labels(context.Context, string) (map[string]string, error) { return l, nil }

// dockerCredentials stands in for pull secrets: the user's Docker login.
type dockerCredentials struct{}

func (dockerCredentials) For(context.Context, *corev1.Pod) (authn.Keychain, error) {
	return authn.DefaultKeychain, nil
}
