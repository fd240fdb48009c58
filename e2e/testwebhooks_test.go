package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// serveTestWebhooks serves admission handlers by path over TLS on
// loopback, with the serving certificate whose CA the sandbox hands the
// API server, until the test ends. It returns the base URL.
func serveTestWebhooks(tb testing.TB, handlers map[string]admission.Handler) string {
	tb.Helper()
	wio := cluster.Env.WebhookInstallOptions
	cert, err := tls.LoadX509KeyPair(filepath.Join(wio.LocalServingCertDir, "tls.crt"), filepath.Join(wio.LocalServingCertDir, "tls.key"))
	if err != nil {
		tb.Fatal(err)
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(wio.LocalServingHost, "0"),
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, h := range handlers {
		mux.Handle(path, &admission.Webhook{Handler: h})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "https://" + l.Addr().String()
}
