// Package builder is the in-pod builder: it fetches one commit, has a rootless BuildKit daemon
// build it with the built-in dockerfile.v0 frontend, pushes the image, imports and exports the
// registry cache, streams plain progress and produces a buildresult.Result.
//
// Decisions (option mapping, step counting, error classification, redaction) are pure functions
// in this package with table tests; the BuildKit client, git and the file system are used only in
// run.go and source.go.
package builder

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// DefaultAddr is where the BuildKit sidecar's socket is mounted in a build pod.
const DefaultAddr = "unix:///run/buildkit/buildkitd.sock"

// Config is everything one build needs. Paths are local to the builder container.
type Config struct {
	// Addr is the BuildKit daemon address, e.g. unix:///run/buildkit/buildkitd.sock.
	Addr string
	// DaemonTimeout bounds the wait for the daemon to answer ListWorkers. In a pod the sidecar
	// may still be starting when the builder starts.
	DaemonTimeout time.Duration

	// CloneURL and SHA name the exact commit to build. TokenFile holds the short-lived clone
	// token (may be empty for public repositories); GitUser is the basic-auth user name sent
	// with it ("x-access-token" suits GitHub; GitLab ignores it for access tokens).
	CloneURL  string
	SHA       string
	TokenFile string
	GitUser   string
	// SourceDir builds an existing checkout instead of fetching (the GitHub Action's local
	// mode). Exactly one of CloneURL and SourceDir is set.
	SourceDir string
	// WorkDir is where the commit is fetched (a fresh temporary dir below it). Empty: os.TempDir.
	WorkDir string

	// Context is the build context, relative to the repository root ("." by default).
	Context string
	// Dockerfile is relative to the repository root; default <Context>/Dockerfile.
	Dockerfile string
	Target     string
	// BuildArgs are KEY=VALUE pairs. They end up in the image history: never put secrets here.
	BuildArgs []string
	Platforms []string
	// Secrets are build secrets, mounted with RUN --mount=type=secret,id=ID.
	Secrets []Secret

	// Tags are the image references to push; at least one unless NoPush.
	Tags []string
	// NoPush builds without exporting anything: a fork's pull request is built to check it,
	// with no push credentials and nowhere to push to.
	NoPush bool
	// CacheFrom are registry cache refs to import, in order of preference (this branch, then
	// the default branch). CacheTo is this branch's cache ref, exported with mode=max.
	CacheFrom []string
	CacheTo   string
	// DockerConfigDir holds a docker config.json with the push (and pull) credentials.
	DockerConfigDir string
	// InsecureRegistries are host[:port] values that may be reached over plain HTTP or with an
	// unverified certificate. Nothing else is.
	InsecureRegistries []string
}

// Secret is one build secret read from a file.
type Secret struct {
	ID   string
	Path string
}

// ParseSecret parses "id=ID,src=PATH" (also "source=" and "required" keys are accepted like
// buildctl) or the short form "ID=PATH".
func ParseSecret(s string) (Secret, error) {
	var sec Secret
	if !strings.Contains(s, ",") && !strings.HasPrefix(s, "id=") {
		id, p, ok := strings.Cut(s, "=")
		if !ok || id == "" || p == "" {
			return Secret{}, fmt.Errorf("secret %q: want id=ID,src=PATH or ID=PATH", s)
		}
		return Secret{ID: id, Path: p}, nil
	}
	for field := range strings.SplitSeq(s, ",") {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "id":
			sec.ID = v
		case "src", "source":
			sec.Path = v
		case "type":
			if v != "file" {
				return Secret{}, fmt.Errorf("secret %q: only file secrets are supported", s)
			}
		default:
			return Secret{}, fmt.Errorf("secret %q: unknown key %q", s, k)
		}
	}
	if sec.ID == "" || sec.Path == "" {
		return Secret{}, fmt.Errorf("secret %q: want id=ID,src=PATH", s)
	}
	return sec, nil
}

// ConfigError is a problem with the build's inputs; it maps to the ConfigInvalid outcome.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{Msg: fmt.Sprintf(format, args...)}
}

// Validate checks the configuration without touching the network or the file system.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, configErrorf("buildkit address is empty"))
	}
	switch {
	case c.CloneURL == "" && c.SourceDir == "":
		errs = append(errs, configErrorf("neither a clone URL nor a source dir is set"))
	case c.CloneURL != "" && c.SourceDir != "":
		errs = append(errs, configErrorf("set a clone URL or a source dir, not both"))
	case c.CloneURL != "":
		if _, err := url.Parse(c.CloneURL); err != nil {
			errs = append(errs, configErrorf("clone URL is not a URL"))
		}
		if !isFullSHA(c.SHA) {
			errs = append(errs, configErrorf("commit SHA %q is not a full hexadecimal object name", c.SHA))
		}
	}
	if _, err := cleanRel("context", c.contextPath()); err != nil {
		errs = append(errs, err)
	}
	if _, err := cleanRel("dockerfile", c.dockerfilePath()); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.NoPush && (len(c.Tags) > 0 || c.CacheTo != ""):
		errs = append(errs, configErrorf("a build that does not push takes no tags and no cache export"))
	case !c.NoPush && len(c.Tags) == 0:
		errs = append(errs, configErrorf("no image tag to push"))
	}
	for _, t := range c.Tags {
		if err := checkRef(t); err != nil {
			errs = append(errs, configErrorf("tag %q: %v", t, err))
		}
	}
	for _, r := range append(slices.Clone(c.CacheFrom), c.CacheTo) {
		if r == "" {
			continue
		}
		if err := checkRef(r); err != nil {
			errs = append(errs, configErrorf("cache ref %q: %v", r, err))
		}
	}
	if _, err := c.insecureTags(); err != nil {
		errs = append(errs, err)
	}
	for _, a := range c.BuildArgs {
		if k, _, ok := strings.Cut(a, "="); !ok || k == "" {
			errs = append(errs, configErrorf("build arg %q: want KEY=VALUE", a))
		}
	}
	seen := map[string]bool{}
	for _, s := range c.Secrets {
		if s.ID == "" || s.Path == "" {
			errs = append(errs, configErrorf("secret with empty id or path"))
		}
		if seen[s.ID] {
			errs = append(errs, configErrorf("secret %q given twice", s.ID))
		}
		seen[s.ID] = true
	}
	return errors.Join(errs...)
}

func isFullSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func (c Config) contextPath() string {
	if c.Context == "" {
		return "."
	}
	return c.Context
}

func (c Config) dockerfilePath() string {
	if c.Dockerfile == "" {
		return path.Join(c.contextPath(), "Dockerfile")
	}
	return c.Dockerfile
}

// cleanRel normalises a slash-separated path that must stay inside the repository.
func cleanRel(what, p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return "", configErrorf("%s path %q must be relative to the repository root", what, p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", configErrorf("%s path %q leaves the repository", what, p)
	}
	return c, nil
}

// checkRef is a light syntax check of an image reference: BuildKit validates fully, but a typo
// should fail before minutes of building, as ConfigInvalid.
func checkRef(ref string) error {
	if ref == "" || strings.ContainsAny(ref, " \t\n,") {
		return errors.New("empty or contains spaces or commas")
	}
	if strings.Contains(ref, "://") {
		return errors.New("must not have a scheme")
	}
	if ref != strings.TrimSpace(ref) {
		return errors.New("surrounding space")
	}
	return nil
}

// refHost is the registry host[:port] of an image reference, following the docker rule that the
// first path component is a host only if it has a dot or a colon or is "localhost".
func refHost(ref string) string {
	first, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" {
		return "docker.io"
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return first
	}
	return "docker.io"
}

func (c Config) insecure(ref string) bool {
	return slices.Contains(c.InsecureRegistries, refHost(ref))
}

// insecureTags reports whether the tags' registries are marked insecure. The image exporter has
// one insecure switch for all its names, so a mix would silently weaken TLS for the secure ones:
// reject it.
func (c Config) insecureTags() (bool, error) {
	var ins, sec int
	for _, t := range c.Tags {
		if c.insecure(t) {
			ins++
		} else {
			sec++
		}
	}
	if ins > 0 && sec > 0 {
		return false, configErrorf("tags mix insecure and secure registries; push them in separate builds")
	}
	return ins > 0, nil
}
