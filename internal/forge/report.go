package forge

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// State is a Build's outcome in forge-neutral words. Each forge maps it to its own vocabulary
// (GitHub statuses have no "running", GitLab has no "timed out"), in pure functions next to its
// Reporter, so that the reporter reconciler can tell whether a forge-side state changed without
// calling the forge.
type State string

// States, in the order a Build moves through them.
const (
	// StatePending: accepted, waiting for a slot, or the pod is starting.
	StatePending State = "pending"
	// StateRunning: the builder started.
	StateRunning State = "running"
	// StateSucceeded: the image was built (and pushed, unless the Build must not push).
	StateSucceeded State = "succeeded"
	// StateFailed: the build itself failed (a RUN step, the Dockerfile, the config): the
	// author's to fix.
	StateFailed State = "failed"
	// StateErrored: Slipway or the cluster failed (no node, image pull, daemon, lost pod): not
	// the author's fault, a rerun may help.
	StateErrored State = "errored"
	// StateCanceled: superseded, stopped, or the Build was deleted before it finished.
	StateCanceled State = "canceled"
	// StateTimedOut: the build exceeded its timeout.
	StateTimedOut State = "timed_out"
)

// Final reports whether no other state may follow.
func (s State) Final() bool {
	return s != StatePending && s != StateRunning && s != ""
}

// Report is one state of one Build target, for one forge context. It carries everything any
// forge shows; each Reporter uses the part its API has room for.
type Report struct {
	// Source identifies repository and commit, and the installation or project to report to.
	Source v1alpha1.Source
	// Namespace and Name identify the Build, e.g. for a check run's external_id.
	Namespace, Name string
	// Context is what the forge shows as the check's name: "slipway/<target>".
	Context string
	State   State
	// Description is one line, at most MaxDescription characters.
	Description string
	// TargetURL links to the Build's page.
	TargetURL string
	// Title and Summary (Markdown) are for forges with room for details (GitHub check runs).
	Title   string
	Summary string
	// Annotations point at source lines, e.g. the failing Dockerfile instruction.
	Annotations []Annotation
	// ExternalID is the forge's ID of the object an earlier report created (a check run), so
	// that this report updates it instead of creating another.
	ExternalID string
	// StartedAt and CompletedAt bound the build, when known.
	StartedAt, CompletedAt time.Time
}

// Annotation marks one line of a file in the repository.
type Annotation struct {
	// Path is relative to the repository root.
	Path string
	Line int
	// Level is notice, warning or failure.
	Level   string
	Title   string
	Message string
}

// MaxDescription is the longest description every forge accepts (GitHub's commit status limit).
const MaxDescription = 140

// Reporter sends one Report to a forge. It returns the forge's ID of the object it created or
// updated (a check run ID; empty for commit statuses). It never sleeps: a failure that is worth
// retrying comes back as a *RetryError and the caller decides when to try again, so that a slow
// or rate-limited forge never holds a reconciler worker.
type Reporter interface {
	Report(ctx context.Context, r Report) (externalID string, err error)
}

// RetryError says a report failed and when it is worth trying again.
type RetryError struct {
	// After is the least time to wait (Retry-After, a rate limit's reset); zero leaves it to
	// the caller's backoff.
	After time.Duration
	// Permanent means retrying soon will not help (a 4xx other than rate limits); the caller
	// still retries, slowly, because a permission can be granted later.
	Permanent bool
	Err       error
}

func (e *RetryError) Error() string {
	switch {
	case e.Permanent:
		return fmt.Sprintf("%v (not retryable soon)", e.Err)
	case e.After > 0:
		return fmt.Sprintf("%v (retry after %s)", e.Err, e.After.Round(time.Second))
	}
	return e.Err.Error()
}

func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter returns what a *RetryError in err's chain says; an error without one is treated as
// temporary with no minimum wait (a network error).
func RetryAfter(err error) (after time.Duration, permanent bool) {
	var re *RetryError
	if errors.As(err, &re) {
		return re.After, re.Permanent
	}
	return 0, false
}

// TruncateRunes cuts s to at most n characters (not bytes), marking the cut with "…": forges
// count characters, and a cut inside a UTF-8 sequence would make the request invalid.
func TruncateRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for i = range s {
		if count == n-1 {
			break
		}
		count++
	}
	return s[:i] + "…"
}
