package controller

import (
	"path"

	corev1 "k8s.io/api/core/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/podspec"
)

// Pool is a group of nodes with its own build-pod shape: a cluster that mixes nodes with
// user-namespace support (containerd 2) and older ones runs userns pods only on the former.
type Pool struct {
	Name         string
	Shape        podspec.Shape
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// Repos are path globs over repository full names ("acme/*"); empty matches every repository.
	Repos []string
}

// SettingsFor returns the pod settings for b: those of the first pool whose repository globs
// match, or the defaults when no pool does. Pure, so the routing is a table test.
func SettingsFor(b *v1alpha1.Build, defaults podspec.Settings, pools []Pool) (podspec.Settings, string) {
	for _, p := range pools {
		if !matchesAny(p.Repos, b.Spec.Source.Repository) {
			continue
		}
		s := defaults
		s.Shape = p.Shape
		s.NodeSelector = p.NodeSelector
		s.Tolerations = p.Tolerations
		return s, p.Name
	}
	return defaults, ""
}

func matchesAny(globs []string, repo string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, err := path.Match(g, repo); err == nil && ok {
			return true
		}
	}
	return false
}
