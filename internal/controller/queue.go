package controller

import (
	"sort"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Limits cap concurrent builds. Zero means unlimited.
type Limits struct {
	MaxRunning        int
	MaxRunningPerRepo int
}

// SupersedePolicy says which events cancel older builds of the same (repo, ref, target).
// Cancel-in-progress suits branches and pull requests, where only the newest commit matters;
// tags are releases, each of which must be built.
type SupersedePolicy struct {
	Branches     bool
	Tags         bool
	PullRequests bool
	// Repos overrides the policy for single repositories (full name → enabled).
	Repos map[string]bool
}

// DefaultSupersede is on for branches and pull requests and off for tags.
func DefaultSupersede() SupersedePolicy {
	return SupersedePolicy{Branches: true, PullRequests: true}
}

// Applies reports whether b can be superseded.
func (p SupersedePolicy) Applies(b *v1alpha1.Build) bool {
	if on, ok := p.Repos[b.Spec.Source.Repository]; ok {
		return on
	}
	switch b.Spec.Source.Event {
	case v1alpha1.EventTag:
		return p.Tags
	case v1alpha1.EventPullRequest, v1alpha1.EventMergeRequest:
		return p.PullRequests
	case v1alpha1.EventPush, v1alpha1.EventRerun:
		return p.Branches
	}
	return false // manual builds are never cancelled behind someone's back
}

// SupersedeKey groups the builds that compete: same forge, repository, ref and target.
func SupersedeKey(b *v1alpha1.Build) string {
	s := b.Spec.Source
	return string(s.Forge) + "|" + s.Host + "|" + s.Repository + "|" + s.Ref + "|" + b.Spec.Target.Name
}

// newer orders builds by creation, then name, so that every replica agrees on "newest" and
// on FIFO order even for builds created in the same second.
func newer(a, b *v1alpha1.Build) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.After(b.CreationTimestamp.Time)
	}
	return a.Name > b.Name
}

// SupersededBy returns the newest build that makes me obsolete, or nil. peers are the builds
// with the same SupersedeKey (me may be among them).
func SupersededBy(me *v1alpha1.Build, peers []v1alpha1.Build, p SupersedePolicy) *v1alpha1.Build {
	if me.Status.Phase.Terminal() || me.IsTrigger() || !p.Applies(me) {
		return nil
	}
	var newest *v1alpha1.Build
	for i := range peers {
		o := &peers[i]
		// A trigger is not a build yet: it may expand into nothing (a paths filter), so only the
		// Builds it creates supersede.
		if o.UID == me.UID || o.DeletionTimestamp != nil || o.IsTrigger() || SupersedeKey(o) != SupersedeKey(me) || !newer(o, me) {
			continue
		}
		if newest == nil || newer(o, newest) {
			newest = o
		}
	}
	return newest
}

// active reports whether a build holds a slot: its pod may exist.
func active(b *v1alpha1.Build) bool {
	return b.Status.Phase == v1alpha1.PhasePending || b.Status.Phase == v1alpha1.PhaseRunning
}

// Admit decides whether me, a queued build, may start now. It replays the queue in FIFO order
// against the limits, so a build never overtakes an older one that could run, while an older
// one blocked only by its own repository's limit does not hold up other repositories.
func Admit(me *v1alpha1.Build, all []v1alpha1.Build, l Limits) bool {
	running, perRepo := 0, map[string]int{}
	var queued []*v1alpha1.Build
	for i := range all {
		b := &all[i]
		switch {
		case active(b):
			running++
			perRepo[b.Spec.Source.Repository]++
		case !b.Status.Phase.Terminal() && b.DeletionTimestamp == nil && !b.IsTrigger():
			queued = append(queued, b)
		}
	}
	sort.Slice(queued, func(i, j int) bool { return newer(queued[j], queued[i]) })
	for _, b := range queued {
		repo := b.Spec.Source.Repository
		fits := (l.MaxRunning <= 0 || running < l.MaxRunning) &&
			(l.MaxRunningPerRepo <= 0 || perRepo[repo] < l.MaxRunningPerRepo)
		if b.UID == me.UID {
			return fits
		}
		if fits {
			running++
			perRepo[repo]++
		}
	}
	// me was not in the list (a stale cache): admit only if there is room at the end.
	return (l.MaxRunning <= 0 || running < l.MaxRunning) &&
		(l.MaxRunningPerRepo <= 0 || perRepo[me.Spec.Source.Repository] < l.MaxRunningPerRepo)
}
