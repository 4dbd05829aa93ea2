package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// SecretToken reads one configured clone token from a Secret in the Build's namespace. It
// stands in until tokens are minted per build by the forge (GitHub App installation tokens);
// even so, each build gets its own copy, mounted only into its builder and deleted at the end.
type SecretToken struct {
	Reader client.Reader
	Name   string
}

// CloneToken implements forge.TokenSource.
func (s SecretToken) CloneToken(ctx context.Context, b *v1alpha1.Build) (string, error) {
	var sec corev1.Secret
	if err := s.Reader.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: s.Name}, &sec); err != nil {
		return "", fmt.Errorf("reading clone token secret %s: %w", s.Name, err)
	}
	tok := sec.Data["token"]
	if len(tok) == 0 {
		return "", fmt.Errorf("clone token secret %s has no \"token\" key", s.Name)
	}
	return string(tok), nil
}
