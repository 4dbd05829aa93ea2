package repoconfig

import (
	"context"
	"fmt"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// ForgeHost names one configured forge.
type ForgeHost struct {
	Forge v1alpha1.Forge
	Host  string
}

// Reader is what each forge package offers (github.Contents, gitlab.API).
type Reader interface {
	ConfigSource
	ChangeSource
}

// Mux dispatches to the Reader of a Build's forge and host, so that one Resolver serves every
// configured forge. A forge without API credentials (webhooks only) has no Reader: its
// repositories read as having no .slipway.yaml and build the default target.
type Mux map[ForgeHost]Reader

func (m Mux) pick(s *v1alpha1.Source) (Reader, error) {
	r, ok := m[ForgeHost{s.Forge, s.Host}]
	if !ok {
		return nil, fmt.Errorf("no API client configured for %s host %s: %w", s.Forge, s.Host, ErrNotFound)
	}
	return r, nil
}

// ReadFile implements ConfigSource.
func (m Mux) ReadFile(ctx context.Context, s *v1alpha1.Source, ref, path string) ([]byte, error) {
	r, err := m.pick(s)
	if err != nil {
		return nil, err
	}
	return r.ReadFile(ctx, s, ref, path)
}

// ChangedFiles implements ChangeSource.
func (m Mux) ChangedFiles(ctx context.Context, s *v1alpha1.Source, base, head string) ([]string, error) {
	r, err := m.pick(s)
	if err != nil {
		return nil, nil // unknown: paths filters match
	}
	return r.ChangedFiles(ctx, s, base, head)
}
