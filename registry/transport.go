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
// plaintext HTTP except to the registry host the policy lists as insecure
// (go-containerregistry would otherwise fall back to it for private-range
// and loopback addresses, and follow a token realm or redirect anywhere),
// limits concurrent requests per host, retries within the admission's
// budget honouring Retry-After, bounds what it reads, and counts requests.
type roundTripper struct {
	next     http.RoundTripper
	limit    int
	metrics  *Metrics
	attempts int
	backoff  time.Duration

	mu    sync.Mutex
	slots map[string]*hostSlots
}

// hostSlots bound the requests in flight to one host; users counts the
// requests holding or waiting for one, so idle hosts are forgotten.
type hostSlots struct {
	ch    chan struct{}
	users int
}

type targetKey struct{}

// withTarget tells the transport which target a request is for.
func withTarget(ctx context.Context, t Target) context.Context {
	return context.WithValue(ctx, targetKey{}, t)
}

type budgetKey struct{}

// withBudget carries the admission's deadline into a request that runs
// detached from it: retries must fit before it, though the request itself
// may go on to fill the cache.
func withBudget(ctx context.Context, deadline time.Time) context.Context {
	return context.WithValue(ctx, budgetKey{}, deadline)
}

var errPlaintext = errors.New("plaintext HTTP refused: the policy does not list this registry as insecure")

// Bounds on what is read: real manifests and config blobs are kilobytes;
// go-containerregistry alone would read a manifest of up to 100 MiB and a
// blob of any size.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 4 << 20
	// maxRetryAfter caps a registry's Retry-After, which only decides
	// whether a retry fits in the budget.
	maxRetryAfter = time.Hour
)

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	t, _ := req.Context().Value(targetKey{}).(Target)
	if t.Class == "" {
		t.Class = ClassOther
	}
	if req.URL.Scheme != "https" && !(t.Insecure && t.Ref != nil && req.URL.Host == t.Ref.Context().RegistryStr()) {
		return nil, &Error{Reason: ReasonUnreachable, Err: fmt.Errorf("%s %s: %w", req.Method, req.URL.Host, errPlaintext)}
	}
	for attempt := 1; ; attempt++ {
		resp, err := rt.send(req)
		rt.observe(t.Class, req.Method, resp, err)
		wait, again := rt.retryAfter(req, resp, err, attempt)
		if !again || !fits(req.Context(), wait) {
			if err == nil {
				resp.Body = bounded(req.URL.Path, resp.Body)
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

// send makes one attempt in one of the host's slots; waiting for a retry
// holds none, so a rate-limited image does not stall the host's others.
func (rt *roundTripper) send(req *http.Request) (*http.Response, error) {
	release, err := rt.acquire(req.Context(), req.URL.Host)
	if err != nil {
		return nil, err
	}
	defer release()
	return rt.next.RoundTrip(req)
}

func bounded(path string, body io.ReadCloser) io.ReadCloser {
	switch {
	case strings.Contains(path, "/manifests/"):
		return &boundedBody{ReadCloser: body, left: maxManifestSize}
	case strings.Contains(path, "/blobs/"):
		return &boundedBody{ReadCloser: body, left: maxConfigSize}
	}
	return body
}

var errTooLarge = &Error{Reason: ReasonInvalid, Err: fmt.Errorf("a manifest or config blob larger than %d bytes", maxManifestSize)}

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
		return 0, errTooLarge
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
// admission's budget ends (or the request's own deadline); without either,
// a wait of up to a few seconds is allowed.
func fits(ctx context.Context, wait time.Duration) bool {
	const roundTrip = 50 * time.Millisecond
	deadline, ok := ctx.Value(budgetKey{}).(time.Time)
	if d, has := ctx.Deadline(); has && (!ok || d.Before(deadline)) {
		deadline, ok = d, true
	}
	if !ok {
		return wait <= 5*time.Second
	}
	return time.Until(deadline) > wait+roundTrip
}

// parseRetryAfter reads seconds or an HTTP date, capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && s >= 0 {
		return min(time.Duration(min(s, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

func (rt *roundTripper) acquire(ctx context.Context, host string) (func(), error) {
	rt.mu.Lock()
	s, ok := rt.slots[host]
	if !ok {
		s = &hostSlots{ch: make(chan struct{}, rt.limit)}
		rt.slots[host] = s
	}
	s.users++
	rt.mu.Unlock()
	done := func() {
		rt.mu.Lock()
		if s.users--; s.users == 0 {
			delete(rt.slots, host)
		}
		rt.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, fmt.Errorf("waiting for a connection slot to %s: %w", host, ctx.Err())
	}
}

// statusLabels are the HTTP statuses counted by code; others by class.
var statusLabels = map[int]bool{200: true, 206: true, 304: true, 307: true, 401: true, 403: true, 404: true, 405: true, 429: true, 500: true, 502: true, 503: true, 504: true}

func (rt *roundTripper) observe(class, method string, resp *http.Response, err error) {
	if rt.metrics == nil {
		return
	}
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode/100) + "xx"
		if statusLabels[resp.StatusCode] {
			code = strconv.Itoa(resp.StatusCode)
		}
		// Docker Hub: "RateLimit-Remaining: 76;w=21600". Only registries
		// the policy names: any host a pod names could set "other".
		if v := resp.Header.Get("RateLimit-Remaining"); v != "" && class != ClassOther {
			n, _, _ := strings.Cut(v, ";")
			if left, err := strconv.ParseFloat(strings.TrimSpace(n), 64); err == nil {
				rt.metrics.rateLimitRemaining.WithLabelValues(class).Set(left)
			}
		}
	}
	if method != http.MethodGet && method != http.MethodHead {
		method = "other"
	}
	rt.metrics.requests.WithLabelValues(class, method, code).Inc()
}
