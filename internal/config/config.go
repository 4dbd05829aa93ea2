// Package config loads the settings of `slipway serve` from a YAML file, so that a Helm chart
// can mount one ConfigMap, with command-line flags overriding single keys. Secrets are never
// values here, only paths of files (mounted Secrets).
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Serve is the configuration of `slipway serve`. The YAML keys are the json tags.
type Serve struct {
	// Listen is the intake's address.
	Listen string `json:"listen"`
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig"`
	// Namespace is where Builds are created.
	Namespace string `json:"namespace"`
	GitHub    GitHub `json:"github"`
	GitLab    GitLab `json:"gitlab"`
}

// GitHub configures the GitHub App forge.
type GitHub struct {
	WebhookSecretFile string `json:"webhookSecretFile"`
}

// GitLab configures the GitLab forge.
type GitLab struct {
	WebhookSecretFile string `json:"webhookSecretFile"`
	// SigningSecretFile holds the hook's signing token; when set, unsigned deliveries are refused.
	SigningSecretFile string `json:"signingSecretFile"`
}

// Default returns the settings used when neither file nor flag says otherwise.
func Default() Serve {
	return Serve{Listen: ":8080", Namespace: "default"}
}

// Load reads a YAML file over the defaults. Unknown keys are errors that name the key: a typo in
// a config file must not silently turn a feature off.
func Load(path string) (Serve, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first setting that cannot work, naming its key.
func (c Serve) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace: %q is not a namespace name: %s", c.Namespace, strings.Join(errs, "; "))
	}
	if c.GitLab.SigningSecretFile != "" && c.GitLab.WebhookSecretFile == "" {
		return errors.New("gitlab.signingSecretFile: needs gitlab.webhookSecretFile as well")
	}
	if c.GitHub.WebhookSecretFile == "" && c.GitLab.WebhookSecretFile == "" {
		return errors.New("github.webhookSecretFile or gitlab.webhookSecretFile: configure at least one forge")
	}
	return nil
}

// ReadSecret reads a secret from a file. Trailing newlines are dropped because `echo` and
// editors add them to Secret files; an empty secret is an error, never "no check".
func ReadSecret(key, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("%s: %s is empty", key, path)
	}
	return []byte(s), nil
}
