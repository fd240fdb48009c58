package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kpoguard/kpoguard/audit"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

const auditUsage = `usage: kpoguard audit [--kubeconfig FILE] [-n NAMESPACE] [-o text|json] [--policy-file FILE | --policy-configmap NS/NAME] [--offline] [-v]

Reviews the running task pods of a live cluster against a policy, as the
background audit of kpoguard serve does: each pod as if it were created
now, through the webhooks' mutating and validating rules. A pod admitted
under the same policy has no findings; "changed" findings are what the
mutating rules would now change, "violated" ones what the validating
rules now find. Findings of node-pool are left out for policies that
follow the launching worker (nodePool.parent): a running pod's worker is
not known. Exempt users do not apply: a pod does not say who created it.

The policy is the chart's ConfigMap unless --policy-file is given. Unless
--offline, images are looked up in their registries, with your Docker
credentials, as kpoguard check does.

Exit status: 0 no pod would be denied, 1 a pod would be denied (an
enforce-mode violation), 2 bad input or an API error.
`

type auditCLIFlags struct {
	kubeconfig      string
	namespace       string
	output          string
	policyFile      string
	policyConfigMap string
	podSelector     string
	lookups         lookupFlags
	log             logr.Logger
}

func auditCommand(args []string, stdout, stderr io.Writer) int {
	var f auditCLIFlags
	fs := flag.NewFlagSet("kpoguard audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditUsage); fs.PrintDefaults() }
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	fs.StringVar(&f.namespace, "n", "", "namespace to audit (default: all)")
	fs.StringVar(&f.output, "o", "text", "output: text (a table) or json")
	fs.StringVar(&f.policyFile, "policy-file", "", "policy file to audit against, instead of the cluster's")
	fs.StringVar(&f.policyConfigMap, "policy-configmap", "kpoguard/kpoguard-policy", "NAMESPACE/NAME of the ConfigMap holding the policy in force (the chart's: <release namespace>/<fullname>-policy)")
	fs.StringVar(&f.podSelector, "pod-selector", policy.TaskPodLabel+"=True", "label selector of the task pods, filtered by the API server")
	f.lookups.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	f.log = f.lookups.logger(stderr)
	if fs.NArg() > 0 || !slices.Contains([]string{"text", "json"}, f.output) {
		fs.Usage()
		return exitBadInput
	}
	selector, err := labels.Parse(f.podSelector)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard audit: --pod-selector: %v\n", err)
		return exitBadInput
	}
	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard audit: %v\n", err)
		return exitBadInput
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard audit: %v\n", err)
		return exitBadInput
	}
	return auditCluster(context.Background(), client, f, selector, stdout, stderr)
}

// auditCluster audits the cluster client reaches, prints the findings
// and returns the exit status.
func auditCluster(ctx context.Context, client kubernetes.Interface, f auditCLIFlags, selector labels.Selector, stdout, stderr io.Writer) int {
	rep, err := runAudit(ctx, client, f, selector)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard audit: %v\n", err)
		return exitBadInput
	}
	if err := printAudit(stdout, f.output, rep); err != nil {
		fmt.Fprintf(stderr, "kpoguard audit: %v\n", err)
		return exitBadInput
	}
	if slices.ContainsFunc(rep.Pods, audit.PodFindings.Denied) {
		return exitDenied
	}
	return exitOK
}

// auditReport is what `kpoguard audit -o json` prints.
type auditReport struct {
	Policy struct {
		Name string `json:"name"`
		Hash string `json:"hash"`
	} `json:"policy"`
	// Reviewed counts the running task pods reviewed.
	Reviewed int `json:"reviewed"`
	// Pods are those with findings, by namespace and name.
	Pods []audit.PodFindings `json:"pods"`
}

// runAudit reviews the running task pods the selector selects.
func runAudit(ctx context.Context, client kubernetes.Interface, f auditCLIFlags, selector labels.Selector) (auditReport, error) {
	var rep auditReport
	p, err := auditPolicy(ctx, client, f)
	if err != nil {
		return rep, err
	}
	rep.Policy.Name, rep.Policy.Hash = p.Name(), p.Hash()
	pods, err := audit.ListPods(ctx, client, f.namespace, selector)
	if err != nil {
		return rep, fmt.Errorf("listing task pods: %w", err)
	}
	resolvers := review.Resolvers{Namespaces: &audit.NamespaceLabels{Client: client}}
	if resolvers.Images, err = f.lookups.images("audit", f.log); err != nil {
		return rep, err
	}
	rep.Pods = []audit.PodFindings{}
	for _, pod := range pods {
		if !audit.Running(pod) {
			continue
		}
		found, reviewed, err := audit.Review(ctx, p, pod, resolvers)
		if err != nil {
			return rep, err
		}
		if !reviewed {
			continue
		}
		rep.Reviewed++
		if len(found.Findings) > 0 {
			rep.Pods = append(rep.Pods, found)
		}
	}
	slices.SortFunc(rep.Pods, func(a, b audit.PodFindings) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return rep, nil
}

// auditPolicy reads the policy from --policy-file, else from the
// ConfigMap in the cluster.
func auditPolicy(ctx context.Context, client kubernetes.Interface, f auditCLIFlags) (*policy.Policy, error) {
	if f.policyFile != "" {
		data, err := os.ReadFile(f.policyFile)
		if err != nil {
			return nil, err
		}
		p, err := policy.Load(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.policyFile, err)
		}
		return p, nil
	}
	ns, name, ok := strings.Cut(f.policyConfigMap, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--policy-configmap %q is not NAMESPACE/NAME", f.policyConfigMap)
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	data, ok := cm.Data[webhook.PolicyKey]
	if !ok {
		return nil, fmt.Errorf("configmap %s has no key %q", f.policyConfigMap, webhook.PolicyKey)
	}
	p, err := policy.Load([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("configmap %s: %w", f.policyConfigMap, err)
	}
	return p, nil
}

func printAudit(w io.Writer, output string, rep auditReport) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tDAG\tTASK\tRULE\tMODE\tRESULT\tMESSAGE")
	for _, p := range rep.Pods {
		for _, f := range p.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, orDash(p.Task.DagID), orDash(p.Task.TaskID), f.Rule, f.Mode, f.Result, f.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d running task pods reviewed against policy %s (%s), %d with findings\n", rep.Reviewed, rep.Policy.Name, rep.Policy.Hash, len(rep.Pods))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
