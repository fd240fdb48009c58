package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Reason says why a lookup failed, in words fit for a metric label.
type Reason string

const (
	ReasonNotFound     Reason = "not_found"
	ReasonUnauthorized Reason = "unauthorized"
	ReasonRateLimited  Reason = "rate_limited"
	ReasonTimeout      Reason = "timeout"
	ReasonUnreachable  Reason = "unreachable"
	// ReasonInvalid is a reference or manifest kpoguard cannot read.
	ReasonInvalid Reason = "invalid"
	// ReasonUnlisted is a registry the policy does not let kpoguard ask.
	ReasonUnlisted Reason = "unlisted"
	// ReasonInternal is a lookup that panicked: a bug of kpoguard's.
	ReasonInternal Reason = "internal"
)

// Reasons lists every reason, for metrics that start at zero.
var Reasons = []Reason{ReasonNotFound, ReasonUnauthorized, ReasonRateLimited, ReasonTimeout, ReasonUnreachable, ReasonInvalid, ReasonUnlisted, ReasonInternal}

// Error is a failed lookup and its reason.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v", e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf classifies any lookup error.
func ReasonOf(err error) Reason {
	if e, ok := err.(*Error); ok {
		return e.Reason
	}
	return classify(err).Reason
}

// classify wraps an error from go-containerregistry or the network in an
// Error with its reason. Timeouts and registry answers come first: an
// error can hold several (a ping over HTTPS that timed out, and the
// plaintext fallback kpoguard refused).
func classify(err error) *Error {
	var terr *transport.Error
	var nerr net.Error
	var own *Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &Error{Reason: ReasonTimeout, Err: err}
	case errors.As(err, &terr):
		return &Error{Reason: statusReason(terr.StatusCode), Err: err}
	case errors.As(err, &nerr) && nerr.Timeout():
		return &Error{Reason: ReasonTimeout, Err: err}
	case errors.As(err, &own) && !errors.Is(own, errPlaintext):
		return own
	}
	// Unreachable, with every error's text: a refused plaintext fallback
	// must not hide why HTTPS failed.
	return &Error{Reason: ReasonUnreachable, Err: err}
}

func statusReason(code int) Reason {
	switch {
	case code == http.StatusNotFound:
		return ReasonNotFound
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ReasonUnauthorized
	case code == http.StatusTooManyRequests:
		return ReasonRateLimited
	case code == http.StatusGatewayTimeout || code == http.StatusRequestTimeout:
		return ReasonTimeout
	case code >= 500:
		return ReasonUnreachable
	}
	return ReasonInvalid
}
