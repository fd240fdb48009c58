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

// Lead runs audit while this replica holds the Lease namespace/name, so
// that one replica audits at a time, until ctx ends. identity names the
// replica in the Lease (its pod name).
func Lead(ctx context.Context, client kubernetes.Interface, namespace, name, identity string, m *Metrics, log logr.Logger, audit func(context.Context)) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	for ctx.Err() == nil {
		// RunOrDie returns when leadership is lost; stand again.
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   LeaseDuration,
			RenewDeadline:   renewDeadline,
			RetryPeriod:     retryPeriod,
			ReleaseOnCancel: true,
			Name:            "kpoguard-audit",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("audit lease acquired: this replica audits", "lease", namespace+"/"+name, "identity", identity)
					m.leading(true)
					audit(ctx)
				},
				OnStoppedLeading: func() {
					log.Info("audit lease lost", "lease", namespace+"/"+name, "identity", identity)
					m.leading(false)
				},
			},
		})
	}
}

// Alone runs audit with no Lease, for a single replica: it is the leader.
func Alone(ctx context.Context, m *Metrics, audit func(context.Context)) {
	m.leading(true)
	audit(ctx)
}
