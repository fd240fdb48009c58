package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kpoguard/kpoguard/certs"
	"github.com/kpoguard/kpoguard/registry"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

type serveFlags struct {
	policyFile      string
	policyConfigMap string
	policyPoll      time.Duration
	kubeconfig      string
	opts            webhook.ServerOptions

	workerSelector  string
	workerCacheSize int
	apiReadTimeout  time.Duration
	readNodes       bool

	selfManagedCerts string
	certHosts        string
	hosts            []string // --cert-hosts, parsed
	certClockOffset  time.Duration
	webhookConfigs   string
	certLifetimes    certs.Lifetimes
	certSync         time.Duration
	retireCAAfter    time.Duration

	registryLookups bool
	readPullSecrets bool
	registryCAFile  string
	registryClient  registry.ClientOptions
	registryCache   registry.CacheOptions
	lookupMargin    time.Duration
	pullSecretTTL   time.Duration
	verbosity       int
	decisionLog     string
	decisionSample  int

	audit auditFlags
}

func serve(args []string, stderr io.Writer) int {
	var f serveFlags
	fs := flag.NewFlagSet("kpoguard serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.policyFile, "policy-file", "", "policy file, reloaded when it changes")
	fs.StringVar(&f.policyConfigMap, "policy-configmap", "", "NAMESPACE/NAME of a ConfigMap whose policy.yaml key holds the policy, watched through the API")
	fs.DurationVar(&f.policyPoll, "policy-poll", time.Second, "how often --policy-file is checked for changes")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	fs.StringVar(&f.workerSelector, "worker-selector", "component=worker", "label selector of the Airflow worker pods a task pod's launching worker is looked up among (nodePool.parent); empty turns worker lookups off")
	fs.BoolVar(&f.readNodes, "read-nodes", true, "read the labels of workers' nodes (RBAC: get, list and watch on nodes), to verify a worker's queue label and copy nodePool.parent.nodeLabels")
	fs.IntVar(&f.workerCacheSize, "worker-cache-size", 1000, "workers kept in the worker cache (by namespace, name and UID, for 30s each); past it the least recently used is dropped and read again with a GET when next needed")
	fs.DurationVar(&f.apiReadTimeout, "api-read-timeout", 500*time.Millisecond, "how long a read missing from kpoguard's caches (a namespace's labels, a worker, a node) may wait on the API server")
	fs.StringVar(&f.opts.Host, "host", "", "address the webhook server listens on (default: all)")
	fs.IntVar(&f.opts.Port, "port", 9443, "HTTPS port of the webhook server")
	fs.StringVar(&f.opts.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key, reloaded when they change")
	fs.StringVar(&f.opts.HealthAddr, "health-addr", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&f.opts.MetricsAddr, "metrics-addr", ":8080", "address of /metrics")
	fs.Int64Var(&f.opts.MaxRequestBytes, "max-request-bytes", 4<<20, "largest AdmissionReview accepted")
	fs.StringVar(&f.selfManagedCerts, "self-managed-certs", "", "NAMESPACE/NAME of a Secret in which kpoguard keeps its own CA and serving certificate (instead of cert-manager); the serving pair is written to --cert-dir")
	fs.StringVar(&f.certHosts, "cert-hosts", "", "with --self-managed-certs: the DNS names and IPs the serving certificate covers, comma-separated")
	fs.StringVar(&f.webhookConfigs, "webhook-configurations", "", "with --self-managed-certs: the name of the mutating and validating webhook configurations whose caBundle kpoguard keeps")
	fs.DurationVar(&f.certLifetimes.Serving, "cert-lifetime", 90*24*time.Hour, "with --self-managed-certs: serving certificate lifetime; renewed with 30% left")
	fs.DurationVar(&f.certLifetimes.CA, "ca-lifetime", 5*365*24*time.Hour, "with --self-managed-certs: CA lifetime; renewed with 30% left, the old CA trusted until it expires")
	fs.DurationVar(&f.certSync, "cert-sync", time.Minute, "with --self-managed-certs: how often the Secret and caBundle are checked besides on every change to them; positive")
	fs.DurationVar(&f.retireCAAfter, "retire-ca-after", defaultRetireCAAfter, "with --self-managed-certs: how long the CAs a rotation replaces stay in the caBundle at least, for a replica whose syncs fail to catch up before its certificate stops being trusted; never less than two --cert-sync")
	fs.DurationVar(&f.certClockOffset, "cert-clock-offset", 0, "testing only: with --self-managed-certs, issue and check certificates by a clock this far ahead (negative: behind) of the system's, to simulate clock skew")
	fs.BoolVar(&f.registryLookups, "registry-lookups", true, "look images up in their registries for the image-architecture rule")
	fs.BoolVar(&f.readPullSecrets, "read-pull-secrets", true, "read pods' and their service accounts' pull secrets (RBAC: get on secrets and serviceaccounts) for the lookups of policies with usePullSecrets; false: lookups are anonymous")
	fs.StringVar(&f.registryCAFile, "registry-ca-file", "", "PEM file of CAs trusted for registries, besides the system's")
	fs.IntVar(&f.registryClient.PerRegistry, "registry-concurrency", 8, "concurrent requests to one registry host")
	fs.IntVar(&f.registryCache.Entries, "registry-cache-size", 10000, "entries in each lookup cache (tags, manifests)")
	fs.DurationVar(&f.registryCache.TagTTL, "registry-tag-ttl", 5*time.Minute, "how long a tag's digest is trusted")
	fs.DurationVar(&f.registryCache.StaleTTL, "registry-stale-ttl", time.Hour, "how long past --registry-tag-ttl a digest is served while it is refreshed in the background")
	fs.DurationVar(&f.registryCache.FailureTTL, "registry-failure-ttl", 15*time.Second, "how long a failed lookup is remembered")
	fs.DurationVar(&f.lookupMargin, "lookup-margin", 500*time.Millisecond, "time kept from the admission deadline for the rest of the request")
	fs.DurationVar(&f.pullSecretTTL, "pull-secret-ttl", time.Minute, "how long pull secrets read for lookups are kept")
	fs.IntVar(&f.verbosity, "v", 0, "log verbosity: 1 logs each failed image lookup with the registry's answer")
	fs.StringVar(&f.decisionLog, "decision-log", string(webhook.DecisionLogChanges), "which pod admission decisions get a log line: all, changes (changed, warned, audited, refused or failed), denials (refused or failed), off")
	fs.IntVar(&f.decisionSample, "decision-log-sample", 1, "with --decision-log=all: log 1 in N of the allowed and skipped decisions; the others are always logged")
	f.audit.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if (f.policyFile == "") == (f.policyConfigMap == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "kpoguard serve: give exactly one of --policy-file and --policy-configmap")
		return exitBadInput
	}
	if f.selfManagedCerts != "" || f.certHosts != "" {
		hosts, err := certs.ParseHosts(f.certHosts)
		if err != nil {
			fmt.Fprintf(stderr, "kpoguard serve: --cert-hosts: %v\n", err)
			return exitBadInput
		}
		f.hosts = hosts
	}
	if f.certSync <= 0 {
		// 0 would sync in a busy loop and retire replaced CAs at once.
		fmt.Fprintf(stderr, "kpoguard serve: --cert-sync must be positive; got %v\n", f.certSync)
		return exitBadInput
	}
	if f.retireCAAfter < 0 {
		fmt.Fprintf(stderr, "kpoguard serve: --retire-ca-after must not be negative; got %v\n", f.retireCAAfter)
		return exitBadInput
	}
	level, err := webhook.ParseDecisionLogLevel(f.decisionLog)
	if err != nil || f.decisionSample < 1 {
		fmt.Fprintf(stderr, "kpoguard serve: --decision-log must be all, changes, denials or off, and --decision-log-sample at least 1; got %q and %d\n", f.decisionLog, f.decisionSample)
		return exitBadInput
	}
	if os.Getenv("GOGC") == "" {
		// kpoguard's live heap is a few MiB, so the default GOGC=100
		// collects every few requests; four times the heap is still small.
		debug.SetGCPercent(400)
	}
	// logr's V(n) is slog's level -n.
	log := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-f.verbosity)}))
	ctrllog.SetLogger(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runServer(ctx, f, log, &webhook.DecisionLog{Level: level, Sample: f.decisionSample}); err != nil {
		log.Error(err, "kpoguard stopped")
		return exitDenied
	}
	return exitOK
}

func runServer(ctx context.Context, f serveFlags, log logr.Logger, decisions *webhook.DecisionLog) error {
	workers, err := labels.Parse(f.workerSelector)
	if err != nil {
		return fmt.Errorf("--worker-selector: %w", err)
	}
	metrics := webhook.NewMetrics()
	deps := &webhook.Deps{Policies: webhook.NewPolicyStore(metrics, log), Metrics: metrics, Log: log, Decisions: decisions}

	cfg, client, workerClient, err := kubeClients(f.kubeconfig)
	if err != nil && f.policyConfigMap != "" {
		return err
	}
	if client != nil {
		deps.Namespaces = webhook.NewNamespaceCache(ctx, client, f.apiReadTimeout)
		if f.workerSelector != "" {
			cache, err := webhook.NewWorkerCache(ctx, workerClient, workers, f.apiReadTimeout, f.workerCacheSize, metrics)
			if err != nil {
				return fmt.Errorf("--worker-cache-size: %w", err)
			}
			deps.Workers, deps.WorkerPods = cache, cache
			if !f.readNodes {
				deps.Workers = webhook.WithoutNodes{Workers: deps.Workers}
			}
		}
	} else {
		log.Info("no Kubernetes API access; overrides that select namespaces by label and worker lookups cannot be used", "reason", err.Error())
	}

	if f.policyFile != "" {
		err = webhook.WatchFile(ctx, f.policyFile, f.policyPoll, deps.Policies)
	} else {
		ns, name, ok := strings.Cut(f.policyConfigMap, "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("--policy-configmap %q is not NAMESPACE/NAME", f.policyConfigMap)
		}
		err = webhook.WatchConfigMap(ctx, client, ns, name, deps.Policies)
	}
	if err != nil {
		return fmt.Errorf("no valid policy to start with: %w", err)
	}
	var lookups *imageLookups
	if f.registryLookups {
		if lookups, err = newImageLookups(f, metrics, log); err != nil {
			return err
		}
		deps.Images = lookups.admission(client)
	}
	if f.selfManagedCerts != "" {
		if err := startCertManager(ctx, f, client, metrics, log); err != nil {
			return err
		}
	}
	if f.audit.interval > 0 {
		// On the way out the audit releases its Lease, so that another
		// replica takes over at once rather than after LeaseDuration.
		var auditClient kubernetes.Interface
		if cfg != nil {
			// A client of its own, so a rate limit of its own: a burst of
			// PolicyReport writes after a policy change touching many
			// namespaces must not hold up the namespace and pull-secret
			// reads admissions wait on.
			if auditClient, err = kubernetes.NewForConfig(cfg); err != nil {
				return err
			}
		}
		var auditImages review.ImageResolver
		if lookups != nil {
			auditImages = lookups.audit(auditClient)
		}
		auditCtx, stopAudit := context.WithCancel(ctx)
		done, err := startAudit(auditCtx, f.audit, cfg, auditClient, deps, auditImages, log)
		if err != nil {
			stopAudit()
			return err
		}
		defer func() { stopAudit(); <-done }()
	}
	log.Info("kpoguard serving", "version", version, "port", f.opts.Port)
	return webhook.Serve(ctx, f.opts, deps)
}

// imageLookups look images up in their registries: one HTTP client for
// all, so per-registry connection limits and
// kpoguard_registry_requests_total count every request kpoguard makes.
type imageLookups struct {
	f       serveFlags
	client  *registry.Client
	metrics *registry.Metrics
	onPanic func(any)
	log     logr.Logger
}

func newImageLookups(f serveFlags, metrics *webhook.Metrics, log logr.Logger) (*imageLookups, error) {
	m := registry.NewMetrics(metrics.Registry)
	f.registryClient.Metrics = m
	f.registryClient.UserAgent = "kpoguard/" + version
	if f.registryCAFile != "" {
		pool, err := certPool(f.registryCAFile)
		if err != nil {
			return nil, fmt.Errorf("--registry-ca-file: %w", err)
		}
		f.registryClient.RootCAs = pool
	}
	return &imageLookups{f: f, client: registry.NewClient(f.registryClient), metrics: m, onPanic: webhook.LookupPanics(metrics, log), log: log}, nil
}

// admission is the webhooks' resolver: its cache's lookups are
// kpoguard_registry_lookups_total, which KpoguardImageLookupsFailing
// watches.
func (l *imageLookups) admission(client kubernetes.Interface) *webhook.RegistryImages {
	return l.resolver(l.metrics, client)
}

// audit is the background audit's resolver: a cache of its own, whose
// lookups count in no lookup metric (an audit of long-running pods whose
// tags went away must not raise the admissions' alert), and pull-secret
// reads on client, the audit's, so they never wait on the admissions'
// rate limit.
func (l *imageLookups) audit(client kubernetes.Interface) *webhook.RegistryImages {
	return l.resolver(nil, client)
}

func (l *imageLookups) resolver(m *registry.Metrics, client kubernetes.Interface) *webhook.RegistryImages {
	opts := l.f.registryCache
	opts.Metrics, opts.OnPanic = m, l.onPanic
	images := &webhook.RegistryImages{
		Cache:   registry.NewCache(l.client, opts),
		Margin:  l.f.lookupMargin,
		Log:     l.log,
		OnPanic: l.onPanic,
	}
	// Without pull-secret RBAC (the chart's registry.pullSecrets off),
	// no read is attempted, refused and logged on every admission.
	if client != nil && l.f.readPullSecrets {
		images.Keychains = &webhook.PullSecretKeychains{Client: client, TTL: l.f.pullSecretTTL, OnPanic: l.onPanic}
	}
	return images
}

// certPool is the system's CAs plus those in the PEM file.
func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// defaultRetireCAAfter outlasts the 10 minutes without a sync after which
// KpoguardCertificateSyncFailing fires, so a replica that missed a CA
// rotation is alerted on 5 minutes before the API server stops trusting
// it. A replica that syncs picks the rotation up within seconds.
const defaultRetireCAAfter = 15 * time.Minute

// caRetirement is how long the CAs a rotation replaces stay in the
// caBundle: two polls, so that a replica whose watch missed the rotation
// catches up, and never less than --retire-ca-after.
func (f serveFlags) caRetirement() time.Duration {
	return max(f.retireCAAfter, 2*f.certSync)
}

// startCertManager keeps kpoguard's own CA and serving certificate, and
// returns once the serving pair is in --cert-dir.
func startCertManager(ctx context.Context, f serveFlags, client kubernetes.Interface, metrics *webhook.Metrics, log logr.Logger) error {
	ns, name, ok := strings.Cut(f.selfManagedCerts, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("--self-managed-certs %q is not NAMESPACE/NAME", f.selfManagedCerts)
	}
	// A CA must outlive two serving certificates, so one is always signed
	// by a CA the API server has trusted for a while.
	if l := f.certLifetimes; l.Serving <= 0 || l.CA < 2*l.Serving {
		return fmt.Errorf("--ca-lifetime (%v) must be at least twice --cert-lifetime (%v), and both positive", l.CA, l.Serving)
	}
	if client == nil || f.webhookConfigs == "" {
		return errors.New("--self-managed-certs needs API access and --webhook-configurations")
	}
	if err := os.MkdirAll(f.opts.CertDir, 0o700); err != nil {
		return err
	}
	m := &certs.Manager{
		Client: client, Namespace: ns, SecretName: name,
		Hosts: f.hosts, Lifetimes: f.certLifetimes,
		CertDir: f.opts.CertDir, WebhookConfigurations: f.webhookConfigs,
		// Replicas switch on the Secret's watch event; the periodic
		// sync catches one that missed it within an interval.
		RetireAfter: f.caRetirement(),
		Metrics:     certs.NewMetrics(metrics.Registry),
		Log:         log,
	}
	if offset := f.certClockOffset; offset != 0 {
		log.Info("certificates issued and checked by a shifted clock (testing only)", "offset", offset.String())
		m.Now = func() time.Time { return time.Now().Add(offset) }
	}
	if _, err := m.Run(ctx, f.certSync); err != nil {
		return fmt.Errorf("self-managed certificates: %w", err)
	}
	return nil
}

// Worker and node lookups' client-side rate limit. client-go limits each
// client to 5 requests a second (burst 10) unless told otherwise: shared,
// a burst of task pods from new workers would hold up the policy, namespace
// and pull-secret reads, and those the lookups, each past
// --api-read-timeout. A lookup is made only on a cache miss (a worker's
// first task, a node) or for the kubernetes-executor fallback, a few per
// admission at most; so this limit is a fuse against a loop, not a
// throttle, set above what hundreds of task pods a second need. The API
// server protects itself with its priority and fairness.
const (
	workerLookupQPS   = 100
	workerLookupBurst = 200
)

// kubeClients connects to the API server with --kubeconfig, $KUBECONFIG
// or the in-cluster service account: one client for worker and node
// lookups, with a rate limit of its own, and one for everything else,
// built from cfg.
func kubeClients(kubeconfig string) (cfg *rest.Config, api, workers kubernetes.Interface, err error) {
	if cfg, err = restConfig(kubeconfig); err != nil {
		return nil, nil, nil, err
	}
	if api, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, nil, err
	}
	// A rate limiter belongs to the client built from a config.
	wcfg := rest.CopyConfig(cfg)
	wcfg.QPS, wcfg.Burst = workerLookupQPS, workerLookupBurst
	if workers, err = kubernetes.NewForConfig(wcfg); err != nil {
		return nil, nil, nil, err
	}
	return cfg, api, workers, nil
}

// restConfig reads --kubeconfig, else $KUBECONFIG, else the in-cluster
// service account's configuration.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes API configuration: %w", err)
	}
	if cfg.Host == "" {
		return nil, errors.New("Kubernetes API configuration: no server")
	}
	return cfg, nil
}
