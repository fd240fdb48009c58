package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// BenchmarkPodCreate times pod creations through the real API server with
// no webhook, with a no-op mutating + validating pair (controller-runtime
// handlers that allow everything, same selectors), and with kpoguard and
// the example policy (every rule on). Compare them with benchstat: the
// sub-benchmarks run interleaved, so drift hits all three alike.
func BenchmarkPodCreate(b *testing.B) {
	noop := startNoopWebhooks(b)
	setups := []struct {
		name    string
		install func(context.Context) error
	}{
		{"no-webhooks", func(context.Context) error { return nil }},
		{"noop-pair", noop.install},
		{"kpoguard", installKpoguardWebhooks},
	}
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			ctx := context.Background()
			removeWebhooks(b)
			if err := s.install(ctx); err != nil {
				b.Fatal(err)
			}
			pods := cluster.Client.CoreV1().Pods(taskNamespace)
			names := make([]string, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pod := sandbox.TaskPod(fmt.Sprintf("bench-%s-%d-%d", s.name, time.Now().UnixNano(), i))
				if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				names = append(names, pod.Name)
			}
			b.StopTimer()
			for _, n := range names {
				_ = pods.Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			}
		})
	}
	removeWebhooks(b)
	if err := installKpoguardWebhooks(context.Background()); err != nil {
		b.Fatal(err)
	}
}

func installKpoguardWebhooks(ctx context.Context) error {
	return cluster.InstallWebhooks(ctx)
}

func removeWebhooks(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	reg := cluster.Client.AdmissionregistrationV1()
	for _, name := range []string{cluster.Webhooks.Mutating.Name, "noop"} {
		if err := reg.MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatal(err)
		}
		if err := reg.ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatal(err)
		}
	}
	// Wait until the API server stops calling them: a dry-run task pod is
	// no longer stamped by kpoguard nor by the no-op pair.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pod, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(ctx, sandbox.TaskPod("unhooked-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(pod.Annotations) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("webhooks still called 30s after their removal: %v %v", err, pod.Annotations)
		}
	}
}

type noopWebhooks struct {
	url   string
	calls atomic.Int64
}

// startNoopWebhooks serves controller-runtime admission handlers that
// allow everything unchanged, counting calls so the benchmark knows when
// the API server calls them.
func startNoopWebhooks(b *testing.B) *noopWebhooks {
	wio := cluster.Env.WebhookInstallOptions
	cert, err := tls.LoadX509KeyPair(filepath.Join(wio.LocalServingCertDir, "tls.crt"), filepath.Join(wio.LocalServingCertDir, "tls.key"))
	if err != nil {
		b.Fatal(err)
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(wio.LocalServingHost, "0"),
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	n := &noopWebhooks{url: "https://" + l.Addr().String()}
	allow := &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		n.calls.Add(1)
		return admission.Allowed("")
	})}
	mux.Handle("/mutate", allow)
	mux.Handle("/validate", allow)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return n
}

func (n *noopWebhooks) install(ctx context.Context) error {
	reg := cluster.Client.AdmissionregistrationV1()
	ca := cluster.Env.WebhookInstallOptions.LocalServingCAData
	m := cluster.Webhooks.Mutating.DeepCopy()
	m.ObjectMeta = metav1.ObjectMeta{Name: "noop"}
	mutateURL, validateURL := n.url+"/mutate", n.url+"/validate"
	m.Webhooks[0].Name, m.Webhooks[0].ClientConfig = "mutate.noop.test", admissionregistrationv1.WebhookClientConfig{URL: &mutateURL, CABundle: ca}
	v := cluster.Webhooks.Validating.DeepCopy()
	v.ObjectMeta = metav1.ObjectMeta{Name: "noop"}
	v.Webhooks = v.Webhooks[:1]
	v.Webhooks[0].Name, v.Webhooks[0].ClientConfig = "validate.noop.test", admissionregistrationv1.WebhookClientConfig{URL: &validateURL, CABundle: ca}
	if _, err := reg.MutatingWebhookConfigurations().Create(ctx, m, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, v, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Both must be called: two calls for one probe.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		before := n.calls.Load()
		_, err := cluster.Client.CoreV1().Pods(taskNamespace).Create(ctx, sandbox.TaskPod("noop-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && n.calls.Load()-before == 2 {
			return nil
		}
	}
	return fmt.Errorf("no-op webhooks not called within 30s")
}
