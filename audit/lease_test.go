package audit

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// The Lease lost while a pass writes its reports: the pass publishes
// nothing, the replica's figures drop to zero once the pass has ended and
// stay there, and winning the Lease back starts a term of its own only
// after the last one's audit returned. Run with -race: two terms sharing
// a runner, or a publish after the drop, are what it catches.
func TestLeaseLostMidPass(t *testing.T) {
	p := examplePolicy(t, tightAccounts("audit")...)
	running := admitted(t, examplePolicy(t), kpoPod(t, "01-kpo-basic-no-resources.yaml"))
	base, _ := runnerOver(t, p, []*corev1.Pod{running}, 10)
	m := base.Metrics

	reports := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicyReports: "PolicyReportList"})
	var lists atomic.Int32
	writing, resume := make(chan struct{}), make(chan struct{})
	reports.PrependReactor("list", "policyreports", func(clienttesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) == 2 { // the second pass: hold its write
			close(writing)
			<-resume
		}
		return false, nil, nil
	})
	base.Reports = &ReportWriter{Client: reports, Name: DefaultReportName, Limit: 10}

	leases := fake.NewClientset()
	var renewalsFail atomic.Bool
	leases.PrependReactor("update", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		if renewalsFail.Load() {
			return true, nil, errors.New("etcd timed out")
		}
		return false, nil, nil
	})

	changed := make(chan struct{}, 1)
	terms := make(chan context.Context, 2)
	var inTerm atomic.Int32
	audit := func(ctx context.Context) {
		if inTerm.Add(1) != 1 {
			t.Error("two terms audit at once")
		}
		defer inTerm.Add(-1)
		terms <- ctx
		r := *base // each term its own runner, as serve's
		r.Run(ctx, time.Hour, changed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		lead(ctx, leases, "kpoguard", "kpoguard-audit", "replica-1", m, logr.Discard(), audit,
			leaseTimings{duration: 2 * time.Second, renewDeadline: 1500 * time.Millisecond, retryPeriod: 100 * time.Millisecond})
	}()
	defer func() { cancel(); <-stopped }()

	figures := func() (leader, reviewed, pods float64) {
		return testutil.ToFloat64(m.leader), testutil.ToFloat64(m.reviewed), testutil.ToFloat64(m.pods.WithLabelValues("service-account", "audit", "violated"))
	}
	first := <-terms
	waitFor(t, "the first pass's figures", func() bool { l, r, p := figures(); return l == 1 && r == 1 && p == 1 })
	changed <- struct{}{}
	<-writing
	renewalsFail.Store(true)
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the Lease was not lost within 5s of renewals failing")
	}
	if l, _, _ := figures(); l != 1 {
		t.Errorf("leader %v while the term's pass is still in flight, want 1 until it ends", l)
	}
	close(resume)
	waitFor(t, "the figures dropped", func() bool { l, r, p := figures(); return l == 0 && r == 0 && p == 0 })
	time.Sleep(300 * time.Millisecond) // several retry periods: nothing publishes late
	if l, r, p := figures(); l != 0 || r != 0 || p != 0 {
		t.Errorf("without the Lease: leader %v, reviewed %v, pods %v; want all 0", l, r, p)
	}
	if n := testutil.CollectAndCount(m.namespaces); n != 0 {
		t.Errorf("without the Lease: %d per-namespace series, want none", n)
	}

	renewalsFail.Store(false)
	select {
	case <-terms:
	case <-time.After(5 * time.Second):
		t.Fatal("the Lease was not won back within 5s")
	}
	waitFor(t, "the second term's figures", func() bool { l, r, p := figures(); return l == 1 && r == 1 && p == 1 })
	if got := testutil.ToFloat64(m.runs.WithLabelValues(runSuccess)); got != 2 {
		t.Errorf("%v successful passes, want 2: the interrupted one is not one", got)
	}
}
