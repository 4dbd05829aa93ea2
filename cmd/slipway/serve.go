package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/controller"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/intake"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/report"
)

// drainTimeout is how long in-flight deliveries may finish after SIGTERM; Kubernetes' default
// grace period is 30 s.
const drainTimeout = 20 * time.Second

func newServeCommand() *cobra.Command {
	var configPath string
	flagValues := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive forge webhooks and record them as Builds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := config.Default()
			if configPath != "" {
				var err error
				if c, err = config.Load(configPath); err != nil {
					return err
				}
			}
			// Flags override the file, but only those given on the command line.
			f := cmd.Flags()
			for name, dst := range map[string]*string{
				"listen": &c.Listen, "kubeconfig": &c.Kubeconfig, "namespace": &c.Namespace,
				"github-webhook-secret-file": &c.GitHub.WebhookSecretFile,
				"gitlab-webhook-secret-file": &c.GitLab.WebhookSecretFile,
				"gitlab-signing-secret-file": &c.GitLab.SigningSecretFile,
			} {
				if f.Changed(name) {
					v, _ := f.GetString(name)
					*dst = v
				}
			}
			if f.Changed("controller") {
				c.Controller.Enabled, _ = f.GetBool("controller")
			}
			if err := c.Validate(); err != nil {
				return fmt.Errorf("invalid configuration: %w", err)
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			srv, mgr, err := newServer(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.Listen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", c.Listen, err)
			}
			return serve(cmd.Context(), srv, mgr, ln, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML configuration file; flags override its keys")
	f.StringVar(&flagValues.Listen, "listen", flagValues.Listen, "address for webhooks, health and metrics")
	f.StringVar(&flagValues.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	f.StringVar(&flagValues.Namespace, "namespace", flagValues.Namespace, "namespace where Builds are created")
	f.StringVar(&flagValues.GitHub.WebhookSecretFile, "github-webhook-secret-file", "", "file holding the GitHub App's webhook secret")
	f.StringVar(&flagValues.GitLab.WebhookSecretFile, "gitlab-webhook-secret-file", "", "file holding GitLab's X-Gitlab-Token secret")
	f.StringVar(&flagValues.GitLab.SigningSecretFile, "gitlab-signing-secret-file", "", "file holding GitLab's webhook signing token (optional)")
	f.Bool("controller", true, "run the Build controller (leader-elected) next to intake")
	return cmd
}

// newServer wires intake, health and metrics, and the controller manager when enabled.
func newServer(ctx context.Context, c config.Serve, log *slog.Logger) (*http.Server, manager.Manager, error) {
	receivers, err := newReceivers(c)
	if err != nil {
		return nil, nil, err
	}
	restCfg, err := restConfig(c.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, nil, fmt.Errorf("building scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, nil, fmt.Errorf("building scheme: %w", err)
	}
	kube, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating discovery client: %w", err)
	}

	fg, err := newForges(c, log)
	if err != nil {
		return nil, nil, err
	}
	logs, err := podLogs(restCfg)
	if err != nil {
		return nil, nil, err
	}
	var mgr manager.Manager
	var reader client.Reader = kube
	if c.Controller.Enabled {
		if mgr, err = newManager(ctx, restCfg, scheme, c, fg, logs, log); err != nil {
			return nil, nil, err
		}
		reader = mgr.GetClient()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := intake.NewMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("registering metrics: %w", err)
	}
	h, err := intake.NewHandler(intake.Options{
		Client: kube, Namespace: c.Namespace, Receivers: receivers, Log: log, Metrics: metrics,
	})
	if err != nil {
		return nil, nil, err
	}

	mux := http.NewServeMux()
	h.Register(mux)
	if err := fg.buildPage(mux, reader, logs, log); err != nil {
		return nil, nil, err
	}
	// One /metrics for intake's registry and controller-runtime's (reconcile counts, queue depth).
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, ctrlmetrics.Registry}, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Ready only while the API server answers: without it no delivery can be recorded, and
		// a 503 from a load balancer is better than accepting and failing.
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := disco.RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err != nil {
			http.Error(w, "API server unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})

	return &http.Server{
		Addr:              c.Listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
	}, mgr, nil
}

// serve answers on ln until ctx is done, then drains in-flight deliveries: a delivery that was
// being recorded is answered, so the forge does not count it as failed.
//
// The manager (nil when the controller is off) runs beside it. Intake answers on every replica;
// only the manager waits for leadership.
func serve(ctx context.Context, srv *http.Server, mgr manager.Manager, ln net.Listener, log *slog.Logger) error {
	log.Info("serving", "addr", ln.Addr().String(), "controller", mgr != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	mgrErr := make(chan error, 1)
	if mgr != nil {
		go func() { mgrErr <- mgr.Start(mgrCtx) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case err := <-mgrErr:
		// The manager returns early when it loses its lease; exit so the pod restarts clean.
		_ = srv.Close()
		return fmt.Errorf("controller stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", drainTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("draining: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	stopMgr()
	if mgr != nil {
		if err := <-mgrErr; err != nil {
			return fmt.Errorf("stopping controller: %w", err)
		}
	}
	log.Info("stopped")
	return nil
}

// newManager builds the leader-elected controller manager, watching the build namespace only.
func newManager(ctx context.Context, restCfg *rest.Config, scheme *runtime.Scheme, c config.Serve, fg *forges, logs report.LogSource, log *slog.Logger) (manager.Manager, error) {
	cc := c.Controller
	leaseNS := cc.LeaderElectionNamespace
	if leaseNS == "" {
		leaseNS = c.Namespace
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        logr.FromSlogHandler(log.Handler()),
		Metrics:                       metricsserver.Options{BindAddress: "0"}, // served on --listen
		HealthProbeBindAddress:        "0",
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{c.Namespace: {}}},
		LeaderElection:                cc.LeaderElection,
		LeaderElectionID:              "slipway-controller",
		LeaderElectionNamespace:       leaseNS,
		LeaderElectionReleaseOnCancel: true,
		// The name check guards against two controllers sharing metrics in one process; serve
		// runs one manager per process, and tests run several in sequence.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating controller manager: %w", err)
	}
	opts := controller.Options{
		Pod: podspec.Settings{
			Shape: podspec.Shape(cc.Shape), BuilderImage: cc.BuilderImage, BuildKitImage: cc.BuildKitImage,
			ImagePullPolicy: cc.ImagePullPolicy, BuilderResources: cc.BuilderResources, BuildKitResources: cc.BuildKitResources,
			NodeSelector: cc.NodeSelector, Tolerations: cc.Tolerations, PriorityClassName: cc.PriorityClassName,
			DefaultTimeout: cc.DefaultTimeout.Duration, RegistryPrefix: cc.RegistryPrefix,
			InsecureRegistries: cc.InsecureRegistries, PushSecretName: cc.PushSecretName,
			BuildKitConfigMap: cc.BuildKitConfigMap,
		},
		Limits: controller.Limits{MaxRunning: cc.MaxRunning, MaxRunningPerRepo: cc.MaxRunningPerRepo},
		Supersede: controller.SupersedePolicy{Branches: cc.Supersede.Branches, Tags: cc.Supersede.Tags,
			PullRequests: cc.Supersede.PullRequests, Repos: cc.Supersede.Repos},
		Waits:        controller.Waits{ImagePull: cc.ImagePullTimeout.Duration, Unschedulable: cc.UnschedulableTimeout.Duration},
		PodRetention: cc.PodRetention.Duration,
		KeepPerRepo:  cc.KeepPerRepo,
		KeepFor:      cc.KeepFor.Duration,
		CancelGrace:  10 * time.Second,
		Now:          time.Now,
	}
	for _, p := range cc.Pools {
		opts.Pools = append(opts.Pools, controller.Pool{Name: p.Name, Shape: podspec.Shape(p.Shape),
			NodeSelector: p.NodeSelector, Tolerations: p.Tolerations, Repos: p.Repos})
	}
	if err := opts.Pod.Validate(); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	var fallback forge.TokenSource
	if cc.CloneTokenSecret != "" {
		fallback = controller.SecretToken{Reader: mgr.GetAPIReader(), Name: cc.CloneTokenSecret}
	}
	fg.controllerOptions(&opts, fallback, cc.AllowedRegistries)
	r := &controller.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("slipway"),
		Log: log.With("component", "controller"), Opts: opts,
	}
	if err := controller.Setup(ctx, mgr, r); err != nil {
		return nil, err
	}
	if err := fg.setupReporter(mgr, logs, log); err != nil {
		return nil, err
	}
	return mgr, nil
}

func newReceivers(c config.Serve) (map[v1alpha1.Forge]forge.Receiver, error) {
	rs := map[v1alpha1.Forge]forge.Receiver{}
	if c.GitHub.WebhookSecretFile != "" {
		secret, err := config.ReadSecret("github.webhookSecretFile", c.GitHub.WebhookSecretFile)
		if err != nil {
			return nil, err
		}
		if rs[v1alpha1.ForgeGitHub], err = github.NewReceiver(secret); err != nil {
			return nil, err
		}
	}
	if c.GitLab.WebhookSecretFile != "" {
		token, err := config.ReadSecret("gitlab.webhookSecretFile", c.GitLab.WebhookSecretFile)
		if err != nil {
			return nil, err
		}
		var signing []byte
		if c.GitLab.SigningSecretFile != "" {
			if signing, err = config.ReadSecret("gitlab.signingSecretFile", c.GitLab.SigningSecretFile); err != nil {
				return nil, err
			}
		}
		if rs[v1alpha1.ForgeGitLab], err = gitlab.NewReceiver(token, signing, nil); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (pass --kubeconfig outside a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

func ptr[T any](v T) *T { return &v }
