package github

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/forge"
)

// Checks API limits (https://docs.github.com/rest/checks/runs).
const (
	MaxSummary               = 65535
	MaxAnnotationsPerRequest = 50
)

// CheckOptions configure check runs.
type CheckOptions struct {
	// SkipQueued creates the check run only once the build runs. Set it when commit statuses
	// are reported too: the status already says "pending", and skipping the queued check run
	// keeps a build within its API budget.
	SkipQueued bool
}

// Checks reports Builds as check runs named slipway/<target>: queued → in_progress →
// completed. Each Build has its own check run; its ID is the report's external ID, so later
// states update it.
type Checks struct {
	app  *App
	opts CheckOptions
}

// NewChecks returns a check run Reporter that authenticates as app's installations.
func NewChecks(app *App, opts CheckOptions) (*Checks, error) {
	if app == nil {
		return nil, errors.New("check runs need a GitHub App")
	}
	return &Checks{app: app, opts: opts}, nil
}

// CheckStatus maps a Build's state to a check run's status and conclusion.
func CheckStatus(s forge.State) (status, conclusion string) {
	switch s {
	case forge.StatePending:
		return "queued", ""
	case forge.StateRunning:
		return "in_progress", ""
	case forge.StateSucceeded:
		return "completed", "success"
	case forge.StateFailed, forge.StateErrored:
		return "completed", "failure"
	case forge.StateCanceled:
		return "completed", "cancelled"
	case forge.StateTimedOut:
		return "completed", "timed_out"
	}
	return "", ""
}

// State is the check run state the reporter records: the status, or the conclusion once
// completed; "" means there is nothing to send for s.
func (c *Checks) State(s forge.State) string {
	status, conclusion := CheckStatus(s)
	if status == "queued" && c.opts.SkipQueued {
		return ""
	}
	if conclusion != "" {
		return conclusion
	}
	return status
}

// Report implements forge.Reporter: POST check-runs the first time, PATCH check-runs/{id}
// after that.
func (c *Checks) Report(ctx context.Context, r forge.Report) (string, error) {
	status, _ := CheckStatus(r.State)
	if status == "" {
		return "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("no check run status for state %q", r.State)}
	}
	cl, owner, repo, err := c.app.installationFor(&r.Source)
	if err != nil {
		return "", err
	}
	now := c.app.cfg.Now()
	if r.ExternalID == "" {
		run, resp, err := cl.Checks.CreateCheckRun(ctx, owner, repo, CreateCheckRunRequest(r, now))
		if err != nil {
			return "", classify(fmt.Errorf("creating check run %s (%s) on %s@%s: %w", r.Context, status, r.Source.Repository, short(r.Source.Commit), err), resp, now)
		}
		return strconv.FormatInt(run.GetID(), 10), nil
	}
	id, err := strconv.ParseInt(r.ExternalID, 10, 64)
	if err != nil {
		return "", &forge.RetryError{Permanent: true, Err: fmt.Errorf("check run ID %q is not a number", r.ExternalID)}
	}
	_, resp, err := cl.Checks.UpdateCheckRun(ctx, owner, repo, id, UpdateCheckRunRequest(r, now))
	if err != nil {
		return "", classify(fmt.Errorf("updating check run %s %d to %s on %s: %w", r.Context, id, status, r.Source.Repository, err), resp, now)
	}
	return r.ExternalID, nil
}

// CreateCheckRunRequest is the POST body for r; pure, for golden tests.
func CreateCheckRunRequest(r forge.Report, now time.Time) gh.CreateCheckRunOptions {
	status, conclusion := CheckStatus(r.State)
	o := gh.CreateCheckRunOptions{
		Name:       r.Context,
		HeadSHA:    r.Source.Commit,
		ExternalID: gh.String(r.Namespace + "/" + r.Name),
		Status:     gh.String(status),
		Output:     checkOutput(r),
	}
	if r.TargetURL != "" {
		o.DetailsURL = gh.String(r.TargetURL)
	}
	if !r.StartedAt.IsZero() && status != "queued" {
		o.StartedAt = &gh.Timestamp{Time: r.StartedAt.UTC()}
	}
	if conclusion != "" {
		o.Conclusion = gh.String(conclusion)
		o.CompletedAt = completedAt(r, now)
	}
	return o
}

// UpdateCheckRunRequest is the PATCH body for r; pure, for golden tests.
func UpdateCheckRunRequest(r forge.Report, now time.Time) gh.UpdateCheckRunOptions {
	status, conclusion := CheckStatus(r.State)
	o := gh.UpdateCheckRunOptions{
		Name:   r.Context,
		Status: gh.String(status),
		Output: checkOutput(r),
	}
	if r.TargetURL != "" {
		o.DetailsURL = gh.String(r.TargetURL)
	}
	if conclusion != "" {
		o.Conclusion = gh.String(conclusion)
		o.CompletedAt = completedAt(r, now)
	}
	return o
}

func completedAt(r forge.Report, now time.Time) *gh.Timestamp {
	t := r.CompletedAt
	if t.IsZero() {
		t = now
	}
	return &gh.Timestamp{Time: t.UTC().Truncate(time.Second)}
}

// checkOutput keeps within the Checks API limits: the summary is cut to MaxSummary characters
// and at most MaxAnnotationsPerRequest annotations are sent (Slipway makes one per failure).
func checkOutput(r forge.Report) *gh.CheckRunOutput {
	title := r.Title
	if title == "" {
		title = r.Description
	}
	summary := r.Summary
	if summary == "" {
		summary = r.Description
	}
	out := &gh.CheckRunOutput{
		Title:   gh.String(forge.TruncateRunes(title, 255)),
		Summary: gh.String(forge.TruncateRunes(summary, MaxSummary)),
	}
	for i, a := range r.Annotations {
		if i == MaxAnnotationsPerRequest {
			break
		}
		if a.Path == "" || a.Line <= 0 {
			continue
		}
		level := a.Level
		switch level {
		case "notice", "warning", "failure":
		default:
			level = "failure"
		}
		msg := a.Message
		if msg == "" {
			msg = a.Title
		}
		if msg == "" {
			msg = "here"
		}
		ann := &gh.CheckRunAnnotation{
			Path: gh.String(a.Path), StartLine: gh.Int(a.Line), EndLine: gh.Int(a.Line),
			AnnotationLevel: gh.String(level), Message: gh.String(forge.TruncateRunes(msg, 60000)),
		}
		if a.Title != "" {
			ann.Title = gh.String(forge.TruncateRunes(a.Title, 255))
		}
		out.Annotations = append(out.Annotations, ann)
	}
	return out
}
