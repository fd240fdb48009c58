package audit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// Runner audits the running task pods: one pass reviews each pod the
// lister holds (from an informer's cache: no request per pod) and
// publishes the findings as metrics and, with Reports, PolicyReports.
type Runner struct {
	// Pods lists the task pods to review, from a cache.
	Pods func() ([]*corev1.Pod, error)
	// Policy is the policy in force; nil before the first load.
	Policy    func() *policy.Policy
	Resolvers review.Resolvers
	Metrics   *Metrics
	// Reports, when set, receives each pass's findings.
	Reports *ReportWriter
	Log     logr.Logger
	// Now is time.Now unless a test sets it.
	Now func() time.Time
}

// errNoPolicy: nothing to audit against yet.
var errNoPolicy = errors.New("no policy loaded yet")

// Pass audits once. A pod whose review fails (a namespace's labels that
// cannot be read) fails the pass, and the last pass's figures stay; a
// report that cannot be written is returned and counted in
// kpoguard_audit_report_errors_total, the metrics published all the
// same, and written again at the next pass. A pass whose context ends
// publishes nothing.
func (r *Runner) Pass(ctx context.Context) error {
	start := r.now()
	pods, reviewed, err := r.review(ctx)
	if err != nil {
		r.Metrics.failed(r.now().Sub(start).Seconds())
		return err
	}
	if ctx.Err() != nil {
		// The Lease was lost or kpoguard stops: another replica publishes.
		return ctx.Err()
	}
	var reportErr error
	if r.Reports != nil {
		reportErr = r.Reports.Write(ctx, pods, slices.Sorted(maps.Keys(reviewed)), start)
		if ctx.Err() != nil {
			// The Lease was lost while writing: publishing now would
			// leave figures on a replica that no longer audits.
			return ctx.Err()
		}
		if reportErr != nil {
			r.Metrics.reportFailed()
		}
	}
	total := 0
	for _, n := range reviewed {
		total += n
	}
	end := r.now()
	r.Metrics.publish(Summarize(pods, total), end.Sub(start).Seconds(), float64(end.Unix()))
	return reportErr
}

// review reviews every running task pod in the cache, and counts them by
// namespace.
func (r *Runner) review(ctx context.Context) ([]PodFindings, map[string]int, error) {
	p := r.Policy()
	if p == nil {
		return nil, nil, errNoPolicy
	}
	pods, err := r.Pods()
	if err != nil {
		return nil, nil, fmt.Errorf("listing task pods: %w", err)
	}
	var out []PodFindings
	reviewed := map[string]int{}
	for _, pod := range pods {
		if !Running(pod) {
			continue
		}
		f, ok, err := Review(ctx, p, pod, r.Resolvers)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		reviewed[pod.Namespace]++
		if len(f.Findings) > 0 {
			out = append(out, f)
		}
	}
	return out, reviewed, nil
}

// Run audits every interval, and soon after each signal on changed (a
// new policy in force), until ctx ends. changed holds at most one signal
// (see webhook.PolicyStore.Changed), so a burst of policy changes makes
// at most two passes: one started by the first change, one after it for
// those that came while it ran. A signal left from before Run (a change
// while another replica held the Lease) is dropped: the first pass
// audits against the policy in force anyway.
func (r *Runner) Run(ctx context.Context, interval time.Duration, changed <-chan struct{}) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	select {
	case <-changed:
	default:
	}
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.Log.Error(err, "audit of the running task pods")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-changed:
		}
	}
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
