package audit

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease timings: a replica that stops cleanly hands the Lease over at
// once (it releases it); one that dies is replaced within LeaseDuration.
// An audit every few minutes needs no quicker takeover.
const (
	LeaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// leaseTimings are client-go's leader election timings; tests shorten
// them.
type leaseTimings struct {
	duration, renewDeadline, retryPeriod time.Duration
}

var defaultLeaseTimings = leaseTimings{LeaseDuration, renewDeadline, retryPeriod}

// Lead runs audit while this replica holds the Lease namespace/name, so
// that one replica audits at a time, until ctx ends. identity names the
// replica in the Lease (its pod name). Each term of leadership gets its
// own call of audit, and the next term starts only once the last call
// has returned: two never overlap.
func Lead(ctx context.Context, client kubernetes.Interface, namespace, name, identity string, m *Metrics, log logr.Logger, audit func(context.Context)) {
	lead(ctx, client, namespace, name, identity, m, log, audit, defaultLeaseTimings)
}

func lead(ctx context.Context, client kubernetes.Interface, namespace, name, identity string, m *Metrics, log logr.Logger, audit func(context.Context), t leaseTimings) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	for ctx.Err() == nil {
		// client-go runs OnStartedLeading in a goroutine it never waits
		// for; the term's context is handed here instead, and the audit
		// runs in this loop, so one term's audit has returned before the
		// next term can start.
		terms := make(chan context.Context, 1)
		elected := make(chan struct{})
		go func() {
			defer close(elected)
			// RunOrDie returns when leadership is lost, having cancelled
			// the term's context and released the Lease.
			leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
				Lock:            lock,
				LeaseDuration:   t.duration,
				RenewDeadline:   t.renewDeadline,
				RetryPeriod:     t.retryPeriod,
				ReleaseOnCancel: true,
				Name:            "kpoguard-audit",
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: func(term context.Context) { terms <- term },
					OnStoppedLeading: func() {}, // client-go requires one; the loop below logs the loss
				},
			})
		}()
		select {
		case term := <-terms:
			log.Info("audit lease acquired: this replica audits", "lease", namespace+"/"+name, "identity", identity)
			m.leading(true)
			audit(term)
			<-elected
			log.Info("audit lease lost", "lease", namespace+"/"+name, "identity", identity)
			// Only now, no pass in flight, do the figures drop: a pass
			// still writing reports cannot publish after them.
			m.leading(false)
		case <-elected:
			// ctx ended before the Lease was won.
		}
	}
}

// Alone runs audit with no Lease, for a single replica: it is the leader.
func Alone(ctx context.Context, m *Metrics, audit func(context.Context)) {
	m.leading(true)
	audit(ctx)
}
