// Package forge holds the small contracts between Slipway and the code hosts it serves, so that
// intake, controller and reporter depend on these and never on a forge's client library. Each
// forge lives in its own subpackage (github, gitlab) behind these interfaces.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Receiver verifies and parses one webhook delivery. It makes no network calls: intake must
// answer within the forge's delivery timeout (10 s on github.com) whatever the forge's API does.
type Receiver interface {
	Receive(header http.Header, body []byte) (Delivery, error)
}

// Delivery is a verified webhook, normalised. Exactly one of Source and Ignored is set.
type Delivery struct {
	// ID identifies the delivery for dedupe: the forge's delivery ID, or "body-<sha256>" when
	// the forge sent none.
	ID string
	// Event and Action are the forge's own names, for logs.
	Event  string
	Action string
	// Source is the commit to build.
	Source *v1alpha1.Source
	// Sender is who caused the event.
	Sender string
	// Target limits the build to one target of the repository's config (a re-run of one
	// check run); empty means every target that matches.
	Target string
	// Before is the commit a push moved the branch from, when the forge says, so that paths
	// filters can see what the push changed.
	Before string
	// Ignored says why nothing is built (a ping, a deleted branch, a closed PR, …).
	Ignored string
}

// Errors a Receiver wraps, so that intake can answer with the right HTTP status.
var (
	// ErrUnauthenticated: the signature or token is missing or wrong (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrInvalid: the payload is malformed or lacks what a build needs (400).
	ErrInvalid = errors.New("invalid payload")
)

// Invalidf returns an ErrInvalid with a precise reason.
func Invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ZeroSHA is what forges send as the "after" commit of a deleted ref.
const ZeroSHA = "0000000000000000000000000000000000000000"

var (
	targetPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$`)
	shaPattern    = regexp.MustCompile(`^[0-9a-f]{40}$`)
	repoPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
	refPattern    = regexp.MustCompile(`^refs/(heads|tags|pull|merge-requests)/[^\s~^:?*\[\\]+$`)
	hostPattern   = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
)

// ValidateSource checks a normalised Source against the same rules as the Build CRD schema, so
// that hostile or broken payloads are answered with a precise 400 before reaching the API server.
func ValidateSource(s *v1alpha1.Source) error {
	switch {
	case !shaPattern.MatchString(s.Commit):
		return Invalidf("commit %q is not a 40-hex SHA", Truncate(s.Commit))
	case s.Commit == ZeroSHA:
		return Invalidf("commit is the zero SHA")
	case len(s.Repository) > 255 || !repoPattern.MatchString(s.Repository):
		return Invalidf("repository %q is not an owner/name path", Truncate(s.Repository))
	case len(s.Ref) > 1024 || !refPattern.MatchString(s.Ref) || strings.Contains(s.Ref, ".."):
		return Invalidf("ref %q is not a valid branch, tag, pull or merge request ref", Truncate(s.Ref))
	case len(s.Host) > 253 || !hostPattern.MatchString(s.Host):
		return Invalidf("forge host %q is not a host name", Truncate(s.Host))
	case len(s.CloneURL) > 2048 || !(strings.HasPrefix(s.CloneURL, "https://") || strings.HasPrefix(s.CloneURL, "http://")):
		return Invalidf("clone URL %q is not an http(s) URL", Truncate(s.CloneURL))
	case s.InstallationID < 0 || s.ProjectID < 0 || s.SourceProjectID < 0:
		return Invalidf("negative installation or project ID")
	case (s.Event == v1alpha1.EventPullRequest || s.Event == v1alpha1.EventMergeRequest) && s.Number <= 0:
		return Invalidf("%s without a number", s.Event)
	}
	return nil
}

// Truncate keeps error messages (which are logged and returned to the sender) short.
func Truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// TokenSource mints the short-lived, read-only token the builder clones with. It is called by
// the controller when a Build's pod is created, never by intake, and the token goes into a
// per-build Secret that only the builder mounts.
type TokenSource interface {
	CloneToken(ctx context.Context, b *v1alpha1.Build) (string, error)
}

// IsSHA reports whether s is a full, non-zero commit SHA.
func IsSHA(s string) bool { return shaPattern.MatchString(s) && s != ZeroSHA }

// TargetFromContext returns the target named by a status or check name "slipway/<target>",
// or "" when the name is not one of ours or not a valid target name.
func TargetFromContext(name string) string {
	t, ok := strings.CutPrefix(name, "slipway/")
	if !ok || !targetPattern.MatchString(t) {
		return ""
	}
	return t
}
