// Command cert-manager runs the parts of cert-manager that kpoguard's chart
// relies on in certManager mode, against the API server named by
// --kubeconfig, so the end-to-end tests exercise the real controllers rather
// than a stand-in. cert-manager's cmd/controller and cmd/cainjector are
// separate modules the Go module proxy does not serve; the controllers
// themselves live in the root module and are wired here as a library,
// through the constructors they register (controllerpkg.Register), a
// controllerpkg.ContextFactory over the API server, and cainjector's
// RegisterAllInjectors on a controller-runtime manager:
//
//   - the Certificate controllers (trigger, key manager, request manager,
//     issuing, readiness, revision manager),
//   - the CertificateRequest approver and the SelfSigned and CA signers,
//   - the Issuer controller with the SelfSigned and CA issuers,
//   - cainjector for Validating- and MutatingWebhookConfigurations
//     (cert-manager.io/inject-ca-from).
//
// Built into bin/cert-manager by hack/build-tools.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The Issuer controller and the signers find issuer types in a registry
	// these packages fill when imported.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// controllers are the names the controller packages register themselves
// under (controllerpkg.Register in their init functions).
var controllers = []string{
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	issuers.ControllerName,
}

func main() {
	// A flag set of our own: controller-runtime registers its own
	// --kubeconfig on the global one.
	flags := flag.NewFlagSet("cert-manager", flag.ExitOnError)
	klog.InitFlags(flags)
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the API server to run against")
	_ = flags.Parse(os.Args[1:])
	// controller-runtime (cainjector) logs through klog like the rest.
	ctrl.SetLogger(klog.NewKlogr())
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cert-manager: --kubeconfig is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig); err != nil {
		klog.ErrorS(err, "cert-manager stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string) error {
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig: kubeconfig,
		// cert-manager's defaults for backing off a failed issuance.
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return err
	}
	var loops []controllerpkg.Interface
	for _, name := range controllers {
		c, err := controllerpkg.Known()[name](factory)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		loops = append(loops, c)
	}
	// The controllers share the factory's informer factories, which start
	// only the informers asked for before Start: start them after every
	// controller has registered its own.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())

	injector, err := newCAInjector(ctx, shared.RESTConfig)
	if err != nil {
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	for _, c := range loops {
		g.Go(func() error { return c.Run(2, ctx) })
	}
	g.Go(func() error { return injector.Start(ctx) })
	return g.Wait()
}

// newCAInjector sets cainjector up for webhook configurations only. Its
// reconcilers watch only Secrets' metadata and expect the manager's client
// to read Secrets from the API server, not from a cache (the DisableFor
// their setup.go names).
func newCAInjector(ctx context.Context, cfg *rest.Config) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, admissionregistrationv1.AddToScheme, cmapi.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Client: client.Options{Cache: &client.CacheOptions{
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
		},
	})
	return mgr, err
}
