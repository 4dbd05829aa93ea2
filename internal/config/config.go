// Package config loads the settings of `slipway serve` from a YAML file, so that a Helm chart
// can mount one ConfigMap, with command-line flags overriding single keys. Secrets are never
// values here, only paths of files (mounted Secrets).
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// ExternalURL is where people reach this server (the Ingress), e.g.
	// https://slipway.example.com: every status links to <externalURL>/builds/<ns>/<name>.
	// Empty means statuses carry no link and no build page is served.
	ExternalURL string     `json:"externalURL"`
	BuildPage   BuildPage  `json:"buildPage"`
	GitHub      GitHub     `json:"github"`
	GitLab      GitLab     `json:"gitlab"`
	Controller  Controller `json:"controller"`
}

// BuildPage configures the signed links behind statuses.
type BuildPage struct {
	// SigningKeyFile holds the HMAC key (at least 32 bytes) that signs build links; required
	// with externalURL. Rotating it invalidates every link already posted.
	SigningKeyFile string `json:"signingKeyFile"`
	// LinkTTL is how long a posted link opens the page.
	LinkTTL metav1.Duration `json:"linkTTL"`
}

// Controller configures the Build reconciler that runs in the same process, leader-elected.
type Controller struct {
	// Enabled runs the reconciler; intake serves either way.
	Enabled        bool `json:"enabled"`
	LeaderElection bool `json:"leaderElection"`
	// LeaderElectionNamespace holds the Lease; default: the build namespace. The Helm chart
	// uses Slipway's own namespace, so the build namespace grants no Lease access.
	LeaderElectionNamespace string `json:"leaderElectionNamespace"`
	// Shape is "userns" (hostUsers: false, preferred) or "rootless" (older nodes).
	Shape           string            `json:"shape"`
	BuilderImage    string            `json:"builderImage"`
	BuildKitImage   string            `json:"buildkitImage"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy"`
	// RegistryPrefix is where images of targets without an absolute image go.
	RegistryPrefix string `json:"registryPrefix"`
	// AllowedRegistries are prefixes an absolute image in .slipway.yaml may push to, besides
	// the registry prefix.
	AllowedRegistries  []string `json:"allowedRegistries"`
	InsecureRegistries []string `json:"insecureRegistries"`
	// PushSecretName is a kubernetes.io/dockerconfigjson Secret in the build namespace.
	PushSecretName string `json:"pushSecretName"`
	// Pools route builds to node pools with their own shape; the first whose repos match wins.
	Pools []Pool `json:"pools"`
	// BuildKitConfigMap is a ConfigMap in the build namespace mounted into the buildkitd sidecar
	// as its config dir (buildkitd.toml, e.g. a private registry's CA). Optional.
	BuildKitConfigMap string `json:"buildkitConfigMap"`
	// CloneTokenSecret is a Secret in the build namespace whose "token" key is copied into each
	// build's own Secret, until tokens are minted per build by the forge.
	CloneTokenSecret     string                      `json:"cloneTokenSecret"`
	BuilderResources     corev1.ResourceRequirements `json:"builderResources"`
	BuildKitResources    corev1.ResourceRequirements `json:"buildkitResources"`
	NodeSelector         map[string]string           `json:"nodeSelector"`
	Tolerations          []corev1.Toleration         `json:"tolerations"`
	PriorityClassName    string                      `json:"priorityClassName"`
	DefaultTimeout       metav1.Duration             `json:"defaultTimeout"`
	MaxRunning           int                         `json:"maxRunning"`
	MaxRunningPerRepo    int                         `json:"maxRunningPerRepo"`
	Supersede            Supersede                   `json:"supersede"`
	ImagePullTimeout     metav1.Duration             `json:"imagePullTimeout"`
	UnschedulableTimeout metav1.Duration             `json:"unschedulableTimeout"`
	PodRetention         metav1.Duration             `json:"podRetention"`
	KeepPerRepo          int                         `json:"keepPerRepo"`
	KeepFor              metav1.Duration             `json:"keepFor"`
}

// Pool is a group of nodes with its own build-pod shape.
type Pool struct {
	Name         string              `json:"name"`
	Shape        string              `json:"shape"`
	NodeSelector map[string]string   `json:"nodeSelector"`
	Tolerations  []corev1.Toleration `json:"tolerations"`
	// Repos are globs over repository full names, e.g. "acme/*"; empty matches all.
	Repos []string `json:"repos"`
}

// Supersede says which builds a newer one for the same ref and target cancels.
type Supersede struct {
	Branches     bool            `json:"branches"`
	Tags         bool            `json:"tags"`
	PullRequests bool            `json:"pullRequests"`
	Repos        map[string]bool `json:"repos"`
}

// GitHub configures the GitHub App forge.
type GitHub struct {
	WebhookSecretFile string `json:"webhookSecretFile"`
	// AppID and PrivateKeyFile identify the GitHub App. Without them Slipway only receives
	// webhooks: no statuses, no .slipway.yaml, public repositories only.
	AppID          int64  `json:"appID"`
	PrivateKeyFile string `json:"privateKeyFile"`
	// APIURL is the REST API root; empty is github.com, or a GitHub Enterprise Server URL.
	APIURL string `json:"apiURL"`
	// Host is the web host deliveries name (repository.html_url); empty derives it from APIURL.
	Host string `json:"host"`
	// Reporting is "checks" (check runs, the default: with the .slipway.yaml read, 4 API calls
	// per build), "statuses" (commit statuses: 3) or "both" (6).
	Reporting string `json:"reporting"`
}

// GitLab configures the GitLab forge.
type GitLab struct {
	WebhookSecretFile string `json:"webhookSecretFile"`
	// SigningSecretFile holds the hook's signing token; when set, unsigned deliveries are refused.
	SigningSecretFile string `json:"signingSecretFile"`
	// URL is the GitLab instance, default https://gitlab.com.
	URL string `json:"url"`
	// TokenFile holds an API token (scope api) that reports statuses and reads .slipway.yaml;
	// without it Slipway only receives webhooks.
	TokenFile string `json:"tokenFile"`
}

// Default returns the settings used when neither file nor flag says otherwise.
func Default() Serve {
	return Serve{Listen: ":8080", Namespace: "default",
		BuildPage: BuildPage{LinkTTL: metav1.Duration{Duration: 30 * 24 * time.Hour}},
		GitHub:    GitHub{Reporting: "checks"},
		GitLab:    GitLab{URL: "https://gitlab.com"},
		Controller: Controller{
			Enabled: true, LeaderElection: true, Shape: "rootless", ImagePullPolicy: corev1.PullIfNotPresent,
			DefaultTimeout:       metav1.Duration{Duration: 30 * time.Minute},
			MaxRunning:           8,
			MaxRunningPerRepo:    4,
			Supersede:            Supersede{Branches: true, PullRequests: true},
			ImagePullTimeout:     metav1.Duration{Duration: 3 * time.Minute},
			UnschedulableTimeout: metav1.Duration{Duration: 10 * time.Minute},
			PodRetention:         metav1.Duration{Duration: time.Hour},
			KeepPerRepo:          50,
			KeepFor:              metav1.Duration{Duration: 7 * 24 * time.Hour},
		}}
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
	if err := c.validateReporting(); err != nil {
		return err
	}
	if c.Controller.Enabled {
		if err := c.Controller.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (c Serve) validateReporting() error {
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("externalURL: %q is not an http(s) URL without query", c.ExternalURL)
		}
		if c.BuildPage.SigningKeyFile == "" {
			return errors.New("buildPage.signingKeyFile: required with externalURL, to sign build links")
		}
	}
	if c.BuildPage.LinkTTL.Duration <= 0 {
		return errors.New("buildPage.linkTTL: must be positive")
	}
	g := c.GitHub
	if (g.AppID != 0) != (g.PrivateKeyFile != "") {
		return errors.New("github.appID and github.privateKeyFile: set both or neither")
	}
	if g.AppID < 0 {
		return errors.New("github.appID: must be positive")
	}
	switch g.Reporting {
	case "checks", "statuses", "both":
	default:
		return fmt.Errorf("github.reporting: %q is not checks, statuses or both", g.Reporting)
	}
	if c.GitLab.TokenFile != "" {
		if u, err := url.Parse(c.GitLab.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("gitlab.url: %q is not an http(s) URL", c.GitLab.URL)
		}
	}
	return nil
}

func (c Controller) validate() error {
	switch {
	case c.Shape != "userns" && c.Shape != "rootless":
		return fmt.Errorf("controller.shape: %q is neither userns nor rootless", c.Shape)
	case c.BuilderImage == "":
		return errors.New("controller.builderImage: required when the controller is enabled")
	case c.BuildKitImage == "":
		return errors.New("controller.buildkitImage: required when the controller is enabled")
	case c.DefaultTimeout.Duration <= 0:
		return errors.New("controller.defaultTimeout: must be positive")
	case c.MaxRunning < 0 || c.MaxRunningPerRepo < 0 || c.KeepPerRepo < 0:
		return errors.New("controller.maxRunning, maxRunningPerRepo, keepPerRepo: must not be negative")
	}
	seen := map[string]bool{}
	for i, p := range c.Pools {
		switch {
		case p.Name == "" || seen[p.Name]:
			return fmt.Errorf("controller.pools[%d].name: required and unique", i)
		case p.Shape != "userns" && p.Shape != "rootless":
			return fmt.Errorf("controller.pools[%d].shape: %q is neither userns nor rootless", i, p.Shape)
		}
		seen[p.Name] = true
		for _, g := range p.Repos {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("controller.pools[%d].repos: %q: %w", i, g, err)
			}
		}
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("controller.imagePullPolicy: %q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
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
