package forge

import (
	"context"
	"fmt"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// TokenKey selects a TokenSource: one per forge host (a GitHub App per GitHub host, a token
// per GitLab host).
type TokenKey struct {
	Forge v1alpha1.Forge
	Host  string
}

// TokenMux is a TokenSource that picks the source for a Build's forge and host, so that the
// controller keeps its single Options.Tokens whatever forges are configured.
type TokenMux struct {
	Sources map[TokenKey]TokenSource
	// Fallback serves Builds no source is configured for; nil makes them an error.
	Fallback TokenSource
}

// CloneToken implements TokenSource.
func (m TokenMux) CloneToken(ctx context.Context, b *v1alpha1.Build) (string, error) {
	if s, ok := m.Sources[TokenKey{b.Spec.Source.Forge, b.Spec.Source.Host}]; ok {
		return s.CloneToken(ctx, b)
	}
	if m.Fallback != nil {
		return m.Fallback.CloneToken(ctx, b)
	}
	return "", fmt.Errorf("no clone token source for %s host %s", b.Spec.Source.Forge, b.Spec.Source.Host)
}

// NoToken is the TokenSource of public repositories: it mints nothing, and the build clones
// without credentials.
type NoToken struct{}

// CloneToken implements TokenSource.
func (NoToken) CloneToken(context.Context, *v1alpha1.Build) (string, error) { return "", nil }
