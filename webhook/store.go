package webhook

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/kpoguard/kpoguard/policy"
)

// PolicyStore holds the policy in force. A source offers it new documents;
// one that does not load is refused and the last good policy stays.
type PolicyStore struct {
	current atomic.Pointer[policy.Policy]
	metrics *Metrics
	log     logr.Logger
	changed chan struct{}
}

// NewPolicyStore returns an empty store; Offer must succeed once before
// the webhooks can serve.
func NewPolicyStore(metrics *Metrics, log logr.Logger) *PolicyStore {
	return &PolicyStore{metrics: metrics, log: log, changed: make(chan struct{}, 1)}
}

// Changed receives when another policy (by hash) replaces the one in
// force; changes made before the last was received are signalled once.
// The background audit re-runs on it. One receiver only.
func (s *PolicyStore) Changed() <-chan struct{} { return s.changed }

// Current returns the policy in force, or nil before the first load.
func (s *PolicyStore) Current() *policy.Policy { return s.current.Load() }

// Offer loads a policy document from origin (a file or ConfigMap name, for
// logs). On success it is in force; on failure the previous one stays and
// the error is returned, logged and counted.
func (s *PolicyStore) Offer(data []byte, origin string) error {
	p, err := policy.Load(data)
	if err != nil {
		s.Refuse(err, origin)
		return err
	}
	old := s.current.Swap(p)
	s.metrics.PolicyLoaded(float64(time.Now().Unix()))
	if old == nil || old.Hash() != p.Hash() {
		s.log.Info("policy in force", "origin", origin, "name", p.Name(), "hash", p.Hash(), "warnings", p.Warnings())
	}
	if old != nil && old.Hash() != p.Hash() {
		select {
		case s.changed <- struct{}{}:
		default: // a change is already waiting to be received
		}
	}
	return nil
}

// Refuse records a policy source that could not be read or loaded.
func (s *PolicyStore) Refuse(err error, origin string) {
	s.metrics.PolicyRefused()
	if kept := s.current.Load(); kept != nil {
		s.log.Error(err, "policy refused; the last good policy stays in force", "origin", origin, "kept", kept.Hash())
		return
	}
	s.log.Error(err, "policy refused", "origin", origin)
}

var errNoPolicy = errors.New("no policy has been loaded yet")
