package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// roundTripper is the HTTP layer under go-containerregistry. It refuses
// plaintext HTTP to registries the policy does not list as insecure
// (go-containerregistry would otherwise fall back to it for private-range
// and loopback addresses), limits concurrent requests per host, retries
// within the caller's deadline honouring Retry-After, and counts requests.
type roundTripper struct {
	next     http.RoundTripper
	limit    int
	metrics  *Metrics
	attempts int
	backoff  time.Duration

	mu    sync.Mutex
	slots map[string]chan struct{}
}

type targetKey struct{}

// withTarget tells the transport which target a request is for.
func withTarget(ctx context.Context, t Target) context.Context {
	return context.WithValue(ctx, targetKey{}, t)
}

var errPlaintext = errors.New("plaintext HTTP refused: the policy does not list this registry as insecure")

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	t, _ := req.Context().Value(targetKey{}).(Target)
	if t.Class == "" {
		t.Class = ClassOther
	}
	if req.URL.Scheme != "https" && !t.Insecure {
		return nil, &Error{Reason: ReasonUnreachable, Err: fmt.Errorf("%s %s: %w", req.Method, req.URL.Host, errPlaintext)}
	}
	release, err := rt.acquire(req.Context(), req.URL.Host)
	if err != nil {
		return nil, err
	}
	defer release()
	for attempt := 1; ; attempt++ {
		resp, err := rt.next.RoundTrip(req)
		rt.observe(t.Class, req.Method, resp, err)
		wait, again := rt.retryAfter(req, resp, err, attempt)
		if !again || !fits(req.Context(), wait) {
			if err == nil && strings.Contains(req.URL.Path, "/manifests/") {
				resp.Body = &boundedBody{ReadCloser: resp.Body, left: maxManifestSize}
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
		}
		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
	}
}

// maxManifestSize bounds a manifest read: real ones are kilobytes, and
// go-containerregistry alone would read up to 100 MiB.
const maxManifestSize = 4 << 20

var errManifestTooLarge = &Error{Reason: ReasonInvalid, Err: fmt.Errorf("manifest larger than %d bytes", maxManifestSize)}

// boundedBody fails a read past its limit instead of truncating it.
type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	// One byte past the limit tells a body that is too large from one
	// that ends exactly there.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errManifestTooLarge
	}
	return n, err
}

// retryAfter says whether a failed attempt is worth repeating, and when.
// Only bodiless requests (GET and HEAD) are repeated.
func (rt *roundTripper) retryAfter(req *http.Request, resp *http.Response, err error, attempt int) (time.Duration, bool) {
	if attempt >= rt.attempts || req.Body != nil && req.Body != http.NoBody || req.Context().Err() != nil {
		return 0, false
	}
	wait := rt.backoff << (attempt - 1)
	if err != nil {
		return wait, isFlake(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			wait = d
		}
		return wait, true
	}
	return 0, false
}

// isFlake is a dropped connection, worth one more try; a refused
// connection or a TLS failure is not.
func isFlake(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// fits says whether waiting leaves time for another round trip before the
// deadline; without one, a wait of up to a few seconds is allowed.
func fits(ctx context.Context, wait time.Duration) bool {
	const roundTrip = 50 * time.Millisecond
	deadline, ok := ctx.Deadline()
	if !ok {
		return wait <= 5*time.Second
	}
	return time.Until(deadline) > wait+roundTrip
}

// parseRetryAfter reads seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func (rt *roundTripper) acquire(ctx context.Context, host string) (func(), error) {
	rt.mu.Lock()
	slot, ok := rt.slots[host]
	if !ok {
		slot = make(chan struct{}, rt.limit)
		rt.slots[host] = slot
	}
	rt.mu.Unlock()
	select {
	case slot <- struct{}{}:
		return func() { <-slot }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection slot to %s: %w", host, ctx.Err())
	}
}

func (rt *roundTripper) observe(class, method string, resp *http.Response, err error) {
	if rt.metrics == nil {
		return
	}
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		// Docker Hub: "RateLimit-Remaining: 76;w=21600".
		if v := resp.Header.Get("RateLimit-Remaining"); v != "" {
			n, _, _ := strings.Cut(v, ";")
			if left, err := strconv.ParseFloat(strings.TrimSpace(n), 64); err == nil {
				rt.metrics.rateLimitRemaining.WithLabelValues(class).Set(left)
			}
		}
	}
	rt.metrics.requests.WithLabelValues(class, method, code).Inc()
}
