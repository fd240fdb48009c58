package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Paths the webhooks are served on.
const (
	PathMutatePods     = "/mutate-pods"
	PathValidatePods   = "/validate-pods"
	PathValidatePolicy = "/validate-policy"
	PathGuardWorkers   = "/guard-workers"
)

// ServerOptions configure the HTTPS webhook server and its plain-HTTP
// health and metrics listeners.
type ServerOptions struct {
	Host    string
	Port    int
	CertDir string
	// HealthAddr serves /healthz and /readyz; MetricsAddr serves /metrics.
	HealthAddr  string
	MetricsAddr string
	// MaxRequestBytes bounds an AdmissionReview; larger bodies are refused
	// before they are read.
	MaxRequestBytes int64
}

// Serve runs the webhook, health and metrics servers until ctx ends.
// Serving certificates are read from CertDir and reloaded when they change.
func Serve(ctx context.Context, opts ServerOptions, d *Deps) error {
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    opts.Host,
		Port:    opts.Port,
		CertDir: opts.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// HTTP/2 is off: its rapid-reset and stream-multiplexing
			// attacks are not worth the API server's few connections.
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	for path, h := range map[string]admission.Handler{
		PathMutatePods:     d.MutatePods(),
		PathValidatePods:   d.ValidatePods(),
		PathValidatePolicy: d.ValidatePolicy(),
		PathGuardWorkers:   d.GuardWorkers(),
	} {
		srv.Register(path, Bounded(opts.MaxRequestBytes, newWebhook(h)))
	}

	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	health.HandleFunc("/readyz", d.readiness(srv.StartedChecker(), filepath.Join(opts.CertDir, "tls.crt"), time.Now))
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{}))

	g, ctx := errgroup.WithContext(ctx)
	go d.watchCertExpiry(ctx, filepath.Join(opts.CertDir, "tls.crt"), time.Minute)
	g.Go(func() error { return srv.Start(ctx) })
	g.Go(func() error { return listen(ctx, opts.HealthAddr, health) })
	g.Go(func() error { return listen(ctx, opts.MetricsAddr, metrics) })
	return g.Wait()
}

// readiness is /readyz: ready with a policy, the webhook server started and
// a certificate the API server accepts now. Certificate upkeep errors do
// not count while the served certificate is still good.
func (d *Deps) readiness(started func(*http.Request) error, certPath string, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.Policies.Current() == nil {
			http.Error(w, errNoPolicy.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := started(r); err != nil {
			http.Error(w, "webhook server not serving: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := servedCertValid(certPath, now()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// newWebhook serves an admission handler over HTTP.
func newWebhook(h admission.Handler) http.Handler {
	return &admission.Webhook{Handler: h, LogConstructor: plainLogger}
}

// plainLogger skips controller-runtime's per-request logger, which costs
// allocations on every request; kpoguard's handlers log the request UID
// themselves where it matters.
func plainLogger(base logr.Logger, _ *admission.Request) logr.Logger { return base }

func listen(ctx context.Context, addr string, h http.Handler) error {
	s := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(shutdown)
	}()
	if err := s.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", addr, err)
	}
	return nil
}

// Bounded refuses bodies over max bytes before reading them, and gives the
// request the deadline the API server asked for with ?timeout=, so that
// lookups stop before the API server gives up on us.
func Bounded(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			http.Error(w, fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, max), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		if timeout, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
