package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	gl "github.com/xanzy/go-gitlab"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

// MaxDescription is GitLab's limit for a commit status description.
const MaxDescription = 255

// APIConfig configures the API client of one GitLab host.
type APIConfig struct {
	// URL is the GitLab instance (https://gitlab.example.com) or its API root (.../api/v4).
	URL string
	// Token is a project, group or bot user access token with the api scope (commit statuses
	// need it) for the projects Slipway builds.
	Token string
	// HTTPClient carries the requests; nil means one with a 30 s timeout, which bounds how long
	// a hung GitLab can hold a reconciler worker.
	HTTPClient *http.Client
	Now        func() time.Time
}

// API is Slipway's client of one GitLab host: commit statuses (forge.Reporter) and repository
// files and comparisons (repoconfig.ConfigSource, repoconfig.ChangeSource).
type API struct {
	client *gl.Client
	host   string
	now    func() time.Time
}

// noWait is a rate limiter that never waits: go-gitlab's default limiter blocks the calling
// goroutine, and a reconciler worker must not sleep; rate limits come back as errors instead.
type noWait struct{}

func (noWait) Wait(context.Context) error { return nil }

// NewAPIFromTokenFile reads the token from a file (a mounted Secret) and calls NewAPI.
func NewAPIFromTokenFile(cfg APIConfig, tokenFile string) (*API, error) {
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("reading GitLab token: %w", err)
	}
	cfg.Token = strings.TrimSpace(string(b))
	return NewAPI(cfg)
}

// NewAPI validates cfg and returns a client. go-gitlab's own retries are off: they sleep, and
// the reporter reconciler retries by requeueing instead.
func NewAPI(cfg APIConfig) (*API, error) {
	if cfg.Token == "" {
		return nil, errors.New("GitLab API token is empty")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("GitLab URL %q is not an http(s) URL", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/api/v4") {
		u.Path += "/api/v4"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c, err := gl.NewClient(cfg.Token, gl.WithBaseURL(u.String()), gl.WithHTTPClient(cfg.HTTPClient),
		gl.WithoutRetries(), gl.WithCustomLimiter(noWait{}))
	if err != nil {
		return nil, fmt.Errorf("creating GitLab client for %s: %w", u, err)
	}
	return &API{client: c, host: u.Host, now: cfg.Now}, nil
}

// Host is the GitLab host this client serves.
func (a *API) Host() string { return a.host }

// StatusState maps a Build's state to a GitLab commit status state. GitLab has no "timed out"
// and no "error": both are failed.
func StatusState(s forge.State) string {
	switch s {
	case forge.StatePending:
		return "pending"
	case forge.StateRunning:
		return "running"
	case forge.StateSucceeded:
		return "success"
	case forge.StateFailed, forge.StateErrored, forge.StateTimedOut:
		return "failed"
	case forge.StateCanceled:
		return "canceled"
	}
	return ""
}

// StatusProject is where a Build's status goes: for a merge request from a fork, the source
// project, whose commit GitLab shows on the merge request; otherwise the project built.
func StatusProject(s *v1alpha1.Source) any {
	switch {
	case s.SourceProjectID > 0:
		return int(s.SourceProjectID)
	case s.ProjectID > 0:
		return int(s.ProjectID)
	}
	return s.Repository
}

// builtProject is the project a Build is built from (config and changes are read there).
func builtProject(s *v1alpha1.Source) any {
	if s.ProjectID > 0 {
		return int(s.ProjectID)
	}
	return s.Repository
}

// StatusRequest is the request body for r; pure, for golden tests. The ref is the branch or tag
// name; a merge request's status names none (GitLab finds the pipeline by commit), because the
// source branch is not in the Build and refs/merge-requests/N/head does not exist in a fork.
func StatusRequest(r forge.Report) *gl.SetCommitStatusOptions {
	o := &gl.SetCommitStatusOptions{State: gl.BuildStateValue(StatusState(r.State)), Name: gl.Ptr(r.Context)}
	ref := r.Source.Ref
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		o.Ref = gl.Ptr(strings.TrimPrefix(ref, "refs/heads/"))
	case strings.HasPrefix(ref, "refs/tags/"):
		o.Ref = gl.Ptr(strings.TrimPrefix(ref, "refs/tags/"))
	}
	if r.TargetURL != "" {
		o.TargetURL = gl.Ptr(r.TargetURL)
	}
	if d := forge.TruncateRunes(r.Description, MaxDescription); d != "" {
		o.Description = gl.Ptr(d)
	}
	return o
}

// Report implements forge.Reporter: POST /projects/:id/statuses/:sha.
func (a *API) Report(ctx context.Context, r forge.Report) (string, error) {
	state := StatusState(r.State)
	if state == "" {
		return "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("no GitLab status for state %q", r.State)}
	}
	if err := a.mine(&r.Source); err != nil {
		return "", err
	}
	pid := StatusProject(&r.Source)
	st, resp, err := a.client.Commits.SetCommitStatus(pid, r.Source.Commit, StatusRequest(r), gl.WithContext(ctx))
	if err != nil {
		var er *gl.ErrorResponse
		// The state is already there (an earlier attempt succeeded but was not recorded):
		// GitLab refuses a transition to the state a status already has.
		if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusBadRequest &&
			strings.Contains(er.Message, "Cannot transition status") && strings.Contains(er.Message, "from :"+state) {
			return "", nil
		}
		return "", a.classify(fmt.Errorf("setting GitLab status %s=%s on project %v@%s: %w", r.Context, state, pid, r.Source.Commit[:min(7, len(r.Source.Commit))], err), resp)
	}
	return strconv.Itoa(st.ID), nil
}

func (a *API) mine(s *v1alpha1.Source) error {
	if s.Forge != v1alpha1.ForgeGitLab || s.Host != a.host {
		return &forge.RetryError{Permanent: true, Err: fmt.Errorf("%s %s is not this GitLab's host %s", s.Forge, s.Host, a.host)}
	}
	return nil
}

// ReadFile implements repoconfig.ConfigSource with GET /projects/:id/repository/files/:path/raw.
func (a *API) ReadFile(ctx context.Context, s *v1alpha1.Source, ref, path string) ([]byte, error) {
	if err := a.mine(s); err != nil {
		return nil, err
	}
	data, resp, err := a.client.RepositoryFiles.GetRawFile(builtProject(s), path, &gl.GetRawFileOptions{Ref: gl.Ptr(ref)}, gl.WithContext(ctx))
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s of %s at %s: %w", path, s.Repository, ref, repoconfig.ErrNotFound)
	}
	if err != nil {
		return nil, a.classify(fmt.Errorf("reading %s of %s at %s: %w", path, s.Repository, ref, err), resp)
	}
	if len(data) > repoconfig.MaxFileSize {
		return nil, fmt.Errorf("%s of %s at %s is %d bytes, more than %d", path, s.Repository, ref, len(data), repoconfig.MaxFileSize)
	}
	return data, nil
}

// ChangedFiles implements repoconfig.ChangeSource with GET /projects/:id/repository/compare
// (from the merge base, as GitLab does by default).
func (a *API) ChangedFiles(ctx context.Context, s *v1alpha1.Source, base, head string) ([]string, error) {
	if err := a.mine(s); err != nil {
		return nil, err
	}
	cmp, resp, err := a.client.Repositories.Compare(builtProject(s), &gl.CompareOptions{From: gl.Ptr(base), To: gl.Ptr(head)}, gl.WithContext(ctx))
	if err != nil {
		return nil, a.classify(fmt.Errorf("comparing %s...%s in %s: %w", base, head, s.Repository, err), resp)
	}
	if cmp.CompareTimeout {
		return nil, nil // GitLab gave up: unknown, so paths filters match
	}
	out := make([]string, 0, len(cmp.Diffs))
	for _, d := range cmp.Diffs {
		out = append(out, d.NewPath)
		if d.OldPath != "" && d.OldPath != d.NewPath {
			out = append(out, d.OldPath)
		}
	}
	return out, nil
}

// classify wraps err in a *forge.RetryError from the response's status and headers.
func (a *API) classify(err error, resp *gl.Response) error {
	status, h := 0, http.Header(nil)
	if resp != nil && resp.Response != nil {
		status, h = resp.StatusCode, resp.Header
	}
	after, permanent := RetryPolicy(status, h, a.now())
	return &forge.RetryError{After: after, Permanent: permanent, Err: err}
}

// RetryPolicy decides whether a failed GitLab request is worth retrying and the least wait:
// network errors, 5xx and 429 are retried, honouring Retry-After and RateLimit-Reset; other
// 4xx are permanent (a missing permission or project).
func RetryPolicy(status int, h http.Header, now time.Time) (after time.Duration, permanent bool) {
	if h != nil {
		if v, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && v > 0 {
			after = time.Duration(min(v, 3600)) * time.Second
		} else if v, err := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64); err == nil && status == http.StatusTooManyRequests {
			if d := time.Unix(v, 0).Sub(now); d > 0 {
				after = min(d, time.Hour) + time.Second
			}
		}
	}
	switch {
	case status == 0, status >= 500, status == http.StatusRequestTimeout:
		return after, false
	case status == http.StatusTooManyRequests:
		if after == 0 {
			after = time.Minute
		}
		return after, false
	case status >= 400:
		return after, true
	}
	return after, false
}
