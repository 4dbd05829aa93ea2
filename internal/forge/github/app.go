package github

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// PublicAPIURL is github.com's REST API.
const PublicAPIURL = "https://api.github.com/"

// AppConfig configures a GitHub App installation client.
type AppConfig struct {
	AppID int64
	// PrivateKey is the App's PEM private key (PKCS#1 or PKCS#8 RSA).
	PrivateKey []byte
	// APIURL is the REST API root: empty for github.com, or a GitHub Enterprise Server URL
	// (https://ghe.example.com or https://ghe.example.com/api/v3/).
	APIURL string
	// WebHost is the host Builds name in spec.source.host; empty derives it from APIURL
	// (api.github.com → github.com, a GHES host stays itself).
	WebHost string
	// HTTPClient carries every request; its Transport is shared by all installations so that
	// connections are reused. Nil means a client with a 30 s timeout, which bounds how long a
	// hung forge can hold a reconciler worker.
	HTTPClient *http.Client
	// RefreshBefore is how long before expiry a cached installation token is replaced. GitHub
	// tokens live one hour, so the default 5 minutes means one mint per installation per ~55
	// minutes.
	RefreshBefore time.Duration
	// Now is the clock, for tests.
	Now func() time.Time
	Log *slog.Logger
}

// App authenticates as a GitHub App: a JWT (RS256, via ghinstallation's AppsTransport) to mint
// installation tokens, and those tokens, cached per installation, for the API calls the
// reporter makes. It also mints the per-build clone tokens, which are never cached.
type App struct {
	cfg     AppConfig
	apiURL  string
	webHost string
	appAPI  *gh.Client // authenticated with the App's JWT

	mu      sync.Mutex
	tokens  map[int64]*cachedToken
	clients map[int64]*gh.Client
}

type cachedToken struct {
	// mu is held while minting, so that concurrent callers share one mint.
	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

// NewAppFromKeyFile reads the private key from a file (a mounted Secret) and calls NewApp.
func NewAppFromKeyFile(cfg AppConfig, keyFile string) (*App, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading GitHub App private key: %w", err)
	}
	cfg.PrivateKey = pem
	return NewApp(cfg)
}

// NewApp validates cfg and returns an App. Nothing is sent to GitHub until a token is needed.
func NewApp(cfg AppConfig) (*App, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("GitHub App ID %d is not positive", cfg.AppID)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	apiURL, webHost, err := apiRoot(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if cfg.WebHost != "" {
		webHost = cfg.WebHost
	}
	tr := cfg.HTTPClient.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	atr, err := ghinstallation.NewAppsTransport(tr, cfg.AppID, cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("loading GitHub App private key: %w", err)
	}
	a := &App{cfg: cfg, apiURL: apiURL, webHost: webHost, tokens: map[int64]*cachedToken{}, clients: map[int64]*gh.Client{}}
	if a.appAPI, err = a.newClient(atr); err != nil {
		return nil, err
	}
	return a, nil
}

// apiRoot normalises the API URL and derives the web host Builds carry.
func apiRoot(raw string) (apiURL, webHost string, err error) {
	if raw == "" {
		return PublicAPIURL, "github.com", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", fmt.Errorf("GitHub API URL %q is not an http(s) URL", raw)
	}
	if u.Host == "api.github.com" {
		return PublicAPIURL, "github.com", nil
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), u.Host, nil
}

// Host is the forge host this App serves: a Build whose spec.source.host differs is not its.
func (a *App) Host() string { return a.webHost }

func (a *App) newClient(rt http.RoundTripper) (*gh.Client, error) {
	c := gh.NewClient(&http.Client{Transport: rt, Timeout: a.cfg.HTTPClient.Timeout})
	if a.apiURL == PublicAPIURL {
		return c, nil
	}
	// GHES: go-github appends api/v3/ unless the URL already ends with it.
	c, err := c.WithEnterpriseURLs(a.apiURL, a.apiURL)
	if err != nil {
		return nil, fmt.Errorf("setting GitHub Enterprise URL %s: %w", a.apiURL, err)
	}
	return c, nil
}

// InstallationToken returns a token for the installation's full permissions, minting one only
// when the cached token is missing or close to expiry.
func (a *App) InstallationToken(ctx context.Context, installationID int64) (string, error) {
	a.mu.Lock()
	e := a.tokens[installationID]
	if e == nil {
		e = &cachedToken{}
		a.tokens[installationID] = e
	}
	a.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := a.cfg.Now()
	if e.token != "" && now.Before(e.refreshAt) {
		return e.token, nil
	}
	tok, err := a.mint(ctx, installationID, &gh.InstallationTokenOptions{})
	if err != nil {
		return "", err
	}
	exp := tok.GetExpiresAt().Time
	// Keep a token until RefreshBefore its expiry, but at least half its life, so that a
	// short-lived token is not minted again on every call.
	margin := min(a.cfg.RefreshBefore, exp.Sub(now)/2)
	e.token, e.refreshAt = tok.GetToken(), exp.Add(-margin)
	a.cfg.Log.Debug("minted GitHub installation token", "installation", installationID, "expires", exp)
	return e.token, nil
}

// forget drops a cached token GitHub refused (401): revoked, or the installation's key rotated.
func (a *App) forget(installationID int64) {
	a.mu.Lock()
	e := a.tokens[installationID]
	a.mu.Unlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	e.token = ""
	e.mu.Unlock()
}

// CloneToken implements forge.TokenSource: a token for this Build's repository only, with
// contents:read only, so that the build pod can fetch the commit and nothing else. It is minted
// per Build and never cached: it lives in the Build's own Secret and dies with it.
func (a *App) CloneToken(ctx context.Context, b *v1alpha1.Build) (string, error) {
	s := &b.Spec.Source
	if s.Forge != v1alpha1.ForgeGitHub || s.Host != a.webHost {
		return "", fmt.Errorf("build %s/%s is from %s %s, not this GitHub App's %s", b.Namespace, b.Name, s.Forge, s.Host, a.webHost)
	}
	if s.InstallationID <= 0 {
		return "", fmt.Errorf("build %s/%s names no GitHub App installation", b.Namespace, b.Name)
	}
	_, repo, ok := strings.Cut(s.Repository, "/")
	if !ok || repo == "" {
		return "", fmt.Errorf("repository %q is not owner/name", s.Repository)
	}
	tok, err := a.mint(ctx, s.InstallationID, &gh.InstallationTokenOptions{
		Repositories: []string{repo},
		Permissions:  &gh.InstallationPermissions{Contents: gh.String("read")},
	})
	if err != nil {
		return "", err
	}
	// GitHub answers with the permissions it granted. Refuse a token that can write, whatever
	// the reason: it would end up in a build pod that runs the repository's code.
	if p := tok.GetPermissions(); p != nil {
		if w := writePermissions(p); len(w) > 0 {
			return "", fmt.Errorf("GitHub granted the clone token write permissions %v; refusing it", w)
		}
	}
	return tok.GetToken(), nil
}

// writePermissions lists the permissions in p that are not "read".
func writePermissions(p *gh.InstallationPermissions) []string {
	var out []string
	for name, v := range map[string]*string{
		"actions": p.Actions, "administration": p.Administration, "checks": p.Checks, "contents": p.Contents,
		"deployments": p.Deployments, "environments": p.Environments, "issues": p.Issues, "packages": p.Packages,
		"pages": p.Pages, "pull_requests": p.PullRequests, "repository_hooks": p.RepositoryHooks,
		"secrets": p.Secrets, "statuses": p.Statuses, "workflows": p.Workflows,
	} {
		if v != nil && *v != "read" {
			out = append(out, name+":"+*v)
		}
	}
	return out
}

func (a *App) mint(ctx context.Context, installationID int64, opts *gh.InstallationTokenOptions) (*gh.InstallationToken, error) {
	tok, resp, err := a.appAPI.Apps.CreateInstallationToken(ctx, installationID, opts)
	if err != nil {
		return nil, classify(fmt.Errorf("minting a token for GitHub App installation %d: %w", installationID, err), resp, a.cfg.Now())
	}
	if tok.GetToken() == "" || tok.GetExpiresAt().IsZero() {
		return nil, fmt.Errorf("minting a token for GitHub App installation %d: response has no token or expires_at", installationID)
	}
	return tok, nil
}

// Client returns the API client of one installation. Clients are kept so that go-github's
// knowledge of a rate limit (it refuses calls locally until the reset) survives between calls.
func (a *App) Client(installationID int64) (*gh.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[installationID]; c != nil {
		return c, nil
	}
	base := a.cfg.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c, err := a.newClient(&installationTransport{app: a, id: installationID, base: base})
	if err != nil {
		return nil, err
	}
	a.clients[installationID] = c
	return c, nil
}

// installationTransport authenticates each request with the installation's cached token.
type installationTransport struct {
	app  *App
	id   int64
	base http.RoundTripper
}

func (t *installationTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.app.InstallationToken(req.Context(), t.id)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "token "+tok)
	resp, err := t.base.RoundTrip(r)
	// 401: the token was revoked. 404 on a write (a status, a check run, of a repository that
	// just sent a webhook): the token may predate the repository joining the installation.
	// Either way a fresh token may succeed: mint one and try once more, rather than fail the
	// report for minutes. A 404 on a read is an answer (no .slipway.yaml), not retried: that
	// would cost a mint per build.
	retryable := resp != nil && (resp.StatusCode == http.StatusUnauthorized ||
		(resp.StatusCode == http.StatusNotFound && req.Method != http.MethodGet))
	if err != nil || !retryable {
		return resp, err
	}
	t.app.forget(t.id)
	fresh, ferr := t.app.InstallationToken(req.Context(), t.id)
	if ferr != nil || fresh == tok || (req.Body != nil && req.GetBody == nil) {
		return resp, nil
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, ferr = req.GetBody(); ferr != nil {
			return resp, nil
		}
	}
	retry.Header.Set("Authorization", "token "+fresh)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return t.base.RoundTrip(retry)
}

// installationFor checks that a Report is for this App and returns its API client.
func (a *App) installationFor(s *v1alpha1.Source) (*gh.Client, string, string, error) {
	if s.Forge != v1alpha1.ForgeGitHub || s.Host != a.webHost {
		return nil, "", "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("%s %s is not this GitHub App's host %s", s.Forge, s.Host, a.webHost)}
	}
	if s.InstallationID <= 0 {
		return nil, "", "", &forge.RetryError{Permanent: true, Err: errors.New("the Build names no GitHub App installation")}
	}
	owner, repo, ok := strings.Cut(s.Repository, "/")
	if !ok {
		return nil, "", "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("repository %q is not owner/name", s.Repository)}
	}
	c, err := a.Client(s.InstallationID)
	return c, owner, repo, err
}
