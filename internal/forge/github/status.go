package github

import (
	"context"
	"errors"
	"fmt"

	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/forge"
)

// StatusState maps a Build's state to a commit status state. GitHub statuses have no
// "running" and no "canceled": a running build stays pending, a canceled one is an error (the
// commit was not shown to be bad). It is pure so the reporter can tell, without a call, that
// pending → running needs no request.
func StatusState(s forge.State) string {
	switch s {
	case forge.StatePending, forge.StateRunning:
		return "pending"
	case forge.StateSucceeded:
		return "success"
	case forge.StateFailed, forge.StateTimedOut:
		return "failure"
	case forge.StateErrored, forge.StateCanceled:
		return "error"
	}
	return ""
}

// Statuses reports Builds as commit statuses, one context per target (slipway/<target>).
type Statuses struct {
	app *App
}

// NewStatuses returns a commit status Reporter that authenticates as app's installations.
func NewStatuses(app *App) (*Statuses, error) {
	if app == nil {
		return nil, errors.New("commit statuses need a GitHub App")
	}
	return &Statuses{app: app}, nil
}

// Report implements forge.Reporter: one POST /repos/{owner}/{repo}/statuses/{sha}.
func (s *Statuses) Report(ctx context.Context, r forge.Report) (string, error) {
	state := StatusState(r.State)
	if state == "" {
		return "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("no commit status for state %q", r.State)}
	}
	c, owner, repo, err := s.app.installationFor(&r.Source)
	if err != nil {
		return "", err
	}
	_, resp, err := c.Repositories.CreateStatus(ctx, owner, repo, r.Source.Commit, StatusRequest(r))
	if err != nil {
		return "", classify(fmt.Errorf("setting commit status %s=%s on %s@%s: %w", r.Context, state, r.Source.Repository, short(r.Source.Commit), err), resp, s.app.cfg.Now())
	}
	return "", nil
}

// StatusRequest is the request body for r; pure, for golden tests.
func StatusRequest(r forge.Report) *gh.RepoStatus {
	st := &gh.RepoStatus{State: gh.String(StatusState(r.State)), Context: gh.String(r.Context)}
	if d := forge.TruncateRunes(r.Description, forge.MaxDescription); d != "" {
		st.Description = gh.String(d)
	}
	if r.TargetURL != "" {
		st.TargetURL = gh.String(r.TargetURL)
	}
	return st
}

func short(sha string) string { return sha[:min(len(sha), 7)] }
