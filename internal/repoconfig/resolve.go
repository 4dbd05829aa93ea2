package repoconfig

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// ErrNotFound is what a ConfigSource returns (wrapped) when the file does not exist at the ref.
var ErrNotFound = errors.New("file not found")

// ConfigSource reads one file of a repository at a ref (a commit SHA or a branch name) through
// the forge's API. The controller calls it, never intake: it is a network call.
type ConfigSource interface {
	ReadFile(ctx context.Context, src *v1alpha1.Source, ref, path string) ([]byte, error)
}

// ChangeSource lists the files changed between two commits (base...head, from their merge
// base), for paths filters. It returns nil, nil when the forge cannot tell (too many files).
type ChangeSource interface {
	ChangedFiles(ctx context.Context, src *v1alpha1.Source, base, head string) ([]string, error)
}

// AnnotationBefore is the Build annotation holding a push's previous commit (the webhook's
// "before"), when intake recorded it; it lets paths filters see what a push changed.
const AnnotationBefore = v1alpha1.AnnotationBefore

// Options are the installation's rules for images.
type Options struct {
	// RegistryPrefix is prepended to relative images (team/app → <prefix>/team/app).
	RegistryPrefix string
	// AllowedRegistries are prefixes (registry.example.com, registry.example.com/team) an
	// absolute image may start with; an absolute image elsewhere is a config error.
	AllowedRegistries []string
}

// Resolver resolves the configuration of Builds.
type Resolver struct {
	Files ConfigSource
	// Changes is optional; without it paths filters always match.
	Changes ChangeSource
	Options Options
}

// Resolution is what a Build's commit should build.
type Resolution struct {
	// Targets to build, one Build each, with images resolved against the options.
	Targets []v1alpha1.Target
	// Push is false when the builds must not push (a fork under build-no-push).
	Push bool
	// Skipped says why nothing is built (a fork under skip, no target matches); Targets is
	// then empty.
	Skipped    string
	ForkPolicy ForkPolicy
	// Found is false when the repository has no .slipway.yaml and the default was used.
	Found bool
	// Ref is where the configuration was read: the commit, or for a fork the base branch, so
	// that a fork cannot change how it is built.
	Ref string
}

// Resolve reads .slipway.yaml for b's commit and decides what to build. An invalid file is
// returned as Errors (use errors.As): the caller fails the Build with reason ConfigInvalid and
// the error as message, which names the line. Any other error is worth retrying.
func (r Resolver) Resolve(ctx context.Context, b *v1alpha1.Build) (Resolution, error) {
	s := &b.Spec.Source
	res := Resolution{Ref: s.Commit}
	if s.Fork {
		// A fork's own .slipway.yaml could turn pushing on or point the image elsewhere: read
		// the configuration of the branch it wants to merge into instead.
		res.Ref = s.BaseRef
		if res.Ref == "" {
			res.Ref = s.DefaultBranch
		}
		if res.Ref == "" {
			return res, fmt.Errorf("fork change %s#%d has neither a base nor a default branch to read %s from", s.Repository, s.Number, FileName)
		}
	}
	cfg := Default()
	data, err := r.Files.ReadFile(ctx, s, res.Ref, FileName)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return res, fmt.Errorf("reading %s of %s at %s: %w", FileName, s.Repository, res.Ref, err)
	default:
		res.Found = true
		if cfg, err = Parse(data); err != nil {
			return res, err
		}
	}
	res.ForkPolicy = cfg.ForkPolicy
	res.Push = true
	if s.Fork {
		switch cfg.ForkPolicy {
		case ForkSkip:
			res.Skipped = "changes from forks are not built (forkPolicy: skip)"
			return res, nil
		case ForkBuild:
		default:
			res.Push = false
		}
	}
	targets := cfg.Resolved()
	ev := EventOf(s)
	if NeedsChanges(targets) && r.Changes != nil {
		if base := changeBase(b); base != "" {
			changed, err := r.Changes.ChangedFiles(ctx, s, base, s.Commit)
			if err != nil {
				return res, fmt.Errorf("listing files changed in %s between %s and %s: %w", s.Repository, base, s.Commit, err)
			}
			ev.Changed = changed
		}
	}
	for i, t := range targets {
		if !t.Matches(ev) {
			continue
		}
		bt, err := toBuildTarget(t, r.Options)
		if err != nil {
			return res, cfg.locatedError(i, "image", err)
		}
		res.Targets = append(res.Targets, bt)
	}
	if len(res.Targets) == 0 {
		res.Skipped = "no target of " + FileName + " matches this " + string(s.Event)
	}
	return res, nil
}

// EventOf describes a Source for matching. Reruns and manual Builds are matched by their ref.
func EventOf(s *v1alpha1.Source) Event {
	switch {
	case s.Event == v1alpha1.EventPullRequest || s.Event == v1alpha1.EventMergeRequest ||
		strings.HasPrefix(s.Ref, "refs/pull/") || strings.HasPrefix(s.Ref, "refs/merge-requests/"):
		return Event{Kind: RefChange, Branch: s.BaseRef}
	case strings.HasPrefix(s.Ref, "refs/tags/"):
		return Event{Kind: RefTag, Tag: strings.TrimPrefix(s.Ref, "refs/tags/")}
	}
	return Event{Kind: RefBranch, Branch: strings.TrimPrefix(s.Ref, "refs/heads/")}
}

// changeBase is what to compare the commit with: the target branch of a change, or the commit
// a push moved the branch from. "" means unknown (a tag, a new branch, no annotation).
func changeBase(b *v1alpha1.Build) string {
	s := &b.Spec.Source
	if EventOf(s).Kind == RefChange {
		return s.BaseRef
	}
	before := b.Annotations[AnnotationBefore]
	if len(before) == 40 && strings.Trim(before, "0") != "" && strings.Trim(before, "0123456789abcdef") == "" {
		return before
	}
	return ""
}

// toBuildTarget converts a resolved target into the Build API's, resolving its image.
func toBuildTarget(t Target, o Options) (v1alpha1.Target, error) {
	img, err := resolveImage(t.Image, o)
	if err != nil {
		return v1alpha1.Target{}, err
	}
	bt := v1alpha1.Target{
		Name: t.Name, Context: t.Context, Dockerfile: t.Dockerfile, Stage: t.Target, Image: img,
		Tags: t.Tags, Platforms: t.Platforms,
	}
	if t.Timeout.Duration > 0 {
		bt.Timeout = &metav1.Duration{Duration: t.Timeout.Duration}
	}
	names := make([]string, 0, len(t.BuildArgs))
	for k := range t.BuildArgs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		bt.BuildArgs = append(bt.BuildArgs, v1alpha1.BuildArg{Name: k, Value: t.BuildArgs[k]})
	}
	return bt, nil
}

// resolveImage applies the registry rules: empty stays empty (the controller derives
// <prefix>/<owner>/<repo>), relative goes under the prefix, absolute must be allowed.
func resolveImage(img string, o Options) (string, error) {
	if img == "" {
		return "", nil
	}
	first, _, _ := strings.Cut(img, "/")
	if !isRegistryHost(first) {
		if o.RegistryPrefix == "" {
			return "", fmt.Errorf("image %q is relative but no registry prefix is configured", img)
		}
		return strings.TrimSuffix(o.RegistryPrefix, "/") + "/" + img, nil
	}
	for _, a := range o.AllowedRegistries {
		a = strings.TrimSuffix(a, "/")
		if a != "" && (img == a || strings.HasPrefix(img, a+"/")) {
			return img, nil
		}
	}
	if p := strings.TrimSuffix(o.RegistryPrefix, "/"); p != "" && strings.HasPrefix(img, p+"/") {
		return img, nil
	}
	return "", fmt.Errorf("image %q is outside the allowed registries", img)
}
