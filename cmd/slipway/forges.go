package main

import (
	"fmt"
	"log/slog"
	"net/http"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildpage"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/controller"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/repoconfig"
	"github.com/slipway-dev/slipway/internal/report"
)

// forges is everything `serve` talks to the forges' APIs with, built once from the config.
// A forge configured for webhooks only contributes nothing here: its Builds get the default
// target, no clone token from the forge, and no reports.
type forges struct {
	channels []report.Channel
	// files reads .slipway.yaml per forge host.
	files repoconfig.Mux
	// tokens mints per-build clone tokens (GitHub App); other hosts fall back to the
	// configured clone token Secret.
	tokens map[forge.TokenKey]forge.TokenSource
	// key signs build links; nil without externalURL.
	key    []byte
	signer *buildpage.Signer
}

func newForges(c config.Serve, log *slog.Logger) (*forges, error) {
	f := &forges{files: repoconfig.Mux{}, tokens: map[forge.TokenKey]forge.TokenSource{}}
	if c.ExternalURL != "" {
		key, err := config.ReadSecret("buildPage.signingKeyFile", c.BuildPage.SigningKeyFile)
		if err != nil {
			return nil, err
		}
		if f.signer, err = buildpage.NewSigner(key, c.ExternalURL, c.BuildPage.LinkTTL.Duration); err != nil {
			return nil, fmt.Errorf("buildPage: %w", err)
		}
		f.key = key
	}
	if g := c.GitHub; g.AppID != 0 {
		app, err := github.NewAppFromKeyFile(github.AppConfig{AppID: g.AppID, APIURL: g.APIURL, WebHost: g.Host,
			Log: log.With("component", "github-app")}, g.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("github: %w", err)
		}
		host := app.Host()
		if g.Reporting != "statuses" {
			// "both" reports every state on both channels: 6 calls per build instead of 4,
			// the price of branch protection on statuses plus the checks UI.
			checks, err := github.NewChecks(app, github.CheckOptions{})
			if err != nil {
				return nil, err
			}
			f.channels = append(f.channels, report.Channel{Kind: "github-check", Forge: v1alpha1.ForgeGitHub,
				Host: host, Reporter: checks, State: checks.State, Details: true})
		}
		if g.Reporting != "checks" {
			statuses, err := github.NewStatuses(app)
			if err != nil {
				return nil, err
			}
			f.channels = append(f.channels, report.Channel{Kind: "github-status", Forge: v1alpha1.ForgeGitHub,
				Host: host, Reporter: statuses, State: github.StatusState})
		}
		contents, err := github.NewContents(app)
		if err != nil {
			return nil, err
		}
		f.files[repoconfig.ForgeHost{Forge: v1alpha1.ForgeGitHub, Host: host}] = contents
		f.tokens[forge.TokenKey{Forge: v1alpha1.ForgeGitHub, Host: host}] = app
	}
	if g := c.GitLab; g.TokenFile != "" {
		api, err := gitlab.NewAPIFromTokenFile(gitlab.APIConfig{URL: g.URL}, g.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("gitlab: %w", err)
		}
		// The API token can write (commit statuses need scope api), so it never goes into a
		// build pod: GitLab clones use the clone token Secret.
		f.channels = append(f.channels, report.Channel{Kind: "gitlab-status", Forge: v1alpha1.ForgeGitLab,
			Host: api.Host(), Reporter: api, State: gitlab.StatusState})
		f.files[repoconfig.ForgeHost{Forge: v1alpha1.ForgeGitLab, Host: api.Host()}] = api
	}
	return f, nil
}

// setupReporter registers the report reconciler when any forge can be reported to.
func (f *forges) setupReporter(mgr manager.Manager, logs report.LogSource, log *slog.Logger) error {
	if len(f.channels) == 0 {
		return nil
	}
	opts := report.Options{Channels: f.channels, Logs: logs}
	if f.signer != nil {
		opts.Links = f.signer
	}
	return report.Setup(mgr, &report.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Log: log.With("component", "report"), Opts: opts})
}

// buildPage serves the signed page behind every status link, or nothing without externalURL.
func (f *forges) buildPage(mux *http.ServeMux, reader client.Reader, logs report.LogSource, log *slog.Logger) error {
	if f.key == nil {
		return nil
	}
	h, err := buildpage.NewHandler(f.key, reader, logs, buildpage.HandlerOptions{Log: log.With("component", "build-page")})
	if err != nil {
		return err
	}
	mux.Handle(buildpage.Pattern, h)
	return nil
}

// podLogs reads builder logs for failure summaries and the build page.
func podLogs(cfg *rest.Config) (report.LogSource, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes clientset: %w", err)
	}
	return report.PodLogs{Client: cs, Container: podspec.BuilderName}, nil
}

// controllerOptions adds what the forges contribute to the controller: per-build clone tokens
// and the repository config resolver.
func (f *forges) controllerOptions(opts *controller.Options, fallback forge.TokenSource, allowed []string) {
	switch {
	case len(f.tokens) == 0 && fallback == nil:
		// Public repositories only: no per-build Secret at all.
	case fallback == nil:
		// Hosts without a token source clone without credentials.
		opts.Tokens = forge.TokenMux{Sources: f.tokens, Fallback: forge.NoToken{}}
	default:
		opts.Tokens = forge.TokenMux{Sources: f.tokens, Fallback: fallback}
	}
	opts.Resolver = repoconfig.Resolver{Files: f.files, Changes: f.files, Options: repoconfig.Options{
		RegistryPrefix: opts.Pod.RegistryPrefix, AllowedRegistries: allowed,
	}}
}
