package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kpoguard/kpoguard/audit"
	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

// reportResultLimit bounds a PolicyReport: at about 600 bytes a result,
// 1,000 keep it well under etcd's object limit.
const reportResultLimit = 1000

type auditFlags struct {
	interval       time.Duration
	lease          string
	podSelector    string
	policyReports  bool
	reportName     string
	namespaceLimit int
}

func (a *auditFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&a.interval, "audit-interval", 0, "how often the running task pods are audited against the policy in force (and soon after each policy change); 0 turns the audit off. RBAC: list and watch on pods")
	fs.StringVar(&a.lease, "audit-lease", "", "NAMESPACE/NAME of the Lease that lets one replica audit at a time (RBAC: get, create and update on leases there); empty: this replica audits alone")
	fs.StringVar(&a.podSelector, "audit-pod-selector", policy.TaskPodLabel+"=True", "label selector of the pods the audit watches, filtered by the API server; keep it in step with the policy's taskPodSelector")
	fs.BoolVar(&a.policyReports, "audit-policy-reports", false, "write a wgpolicyk8s.io/v1alpha2 PolicyReport named --audit-report-name per namespace with running task pods (RBAC: list, create, update and delete on policyreports; get too, to take over a report written before kpoguard labelled its reports "+audit.ReportLabel+")")
	fs.StringVar(&a.reportName, "audit-report-name", audit.DefaultReportName, "the PolicyReports' name, and the value of their label "+audit.ReportLabel+": one per kpoguard release in a cluster (the chart passes its full name), so releases never write or delete each other's reports")
	fs.IntVar(&a.namespaceLimit, "audit-namespace-metrics-limit", 0, "publish kpoguard_audit_namespace_pods for the namespaces with the most findings, at most this many, the rest summed under task_namespace=\"_other\"; 0: no per-namespace series")
}

// startAudit starts the background audit of the running task pods, under
// the Lease when one is given, until ctx ends; done closes once it has
// stopped (and released the Lease). Only the replica that audits watches
// the task pods.
// images looks images up for the audit (nil: no registry lookups).
func startAudit(ctx context.Context, f auditFlags, cfg *rest.Config, client kubernetes.Interface, deps *webhook.Deps, images review.ImageResolver, log logr.Logger) (done <-chan struct{}, err error) {
	if client == nil {
		return nil, errors.New("--audit-interval needs API access")
	}
	// The name is an object's name and a label's value.
	if errs := append(validation.IsDNS1123Subdomain(f.reportName), validation.IsValidLabelValue(f.reportName)...); f.policyReports && len(errs) > 0 {
		return nil, fmt.Errorf("--audit-report-name %q: %s", f.reportName, strings.Join(errs, "; "))
	}
	if f.namespaceLimit < 0 {
		return nil, fmt.Errorf("--audit-namespace-metrics-limit %d is negative", f.namespaceLimit)
	}
	selector, err := labels.Parse(f.podSelector)
	if err != nil {
		return nil, fmt.Errorf("--audit-pod-selector: %w", err)
	}
	var leaseNS, leaseName string
	if f.lease != "" {
		var ok bool
		if leaseNS, leaseName, ok = strings.Cut(f.lease, "/"); !ok || leaseNS == "" || leaseName == "" {
			return nil, fmt.Errorf("--audit-lease %q is not NAMESPACE/NAME", f.lease)
		}
	}
	log = log.WithName("audit")
	runner := audit.Runner{
		Policy:    deps.Policies.Current,
		Resolvers: review.Resolvers{Namespaces: deps.Namespaces, Images: images},
		Metrics:   audit.NewMetrics(deps.Metrics.Registry, f.namespaceLimit),
		Log:       log,
	}
	if f.policyReports {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		runner.Reports = &audit.ReportWriter{Client: dyn, Name: f.reportName, Limit: reportResultLimit}
	}
	run := func(ctx context.Context) {
		pods, err := audit.WatchPods(ctx, client, selector)
		if err != nil {
			return // ctx ended: the Lease was lost, or kpoguard stops
		}
		// Each term of leadership audits with a runner of its own.
		term := runner
		term.Pods = pods
		term.Run(ctx, f.interval, deps.Policies.Changed())
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if leaseName == "" {
			audit.Alone(ctx, runner.Metrics, run)
			return
		}
		audit.Lead(ctx, client, leaseNS, leaseName, replicaIdentity(), runner.Metrics, log, run)
	}()
	return stopped, nil
}

// replicaIdentity names this replica in the Lease: its pod's name, which
// the chart passes as POD_NAME, else the host name.
func replicaIdentity() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Sprintf("kpoguard-%d", os.Getpid())
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
