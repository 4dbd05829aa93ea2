package controller

import (
	"sort"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Prunable returns the finished Builds of repo beyond the newest keep, oldest first. Running
// and queued Builds are never pruned.
func Prunable(all []v1alpha1.Build, repo string, keep int) []v1alpha1.Build {
	var done []v1alpha1.Build
	for _, b := range all {
		if b.Spec.Source.Repository == repo && b.Status.Phase.Terminal() && b.DeletionTimestamp == nil {
			done = append(done, b)
		}
	}
	if len(done) <= keep {
		return nil
	}
	sort.Slice(done, func(i, j int) bool { return newer(&done[j], &done[i]) })
	return done[:len(done)-keep]
}
