package builder

// Source fetch: why the builder fetches, not BuildKit.
//
// BuildKit can fetch a git context itself (the dockerfile frontend's git source, with the token
// passed as the GIT_AUTH_TOKEN session secret). The builder instead does a shallow fetch of the
// exact commit into a local dir and sends that dir as the build context over the session:
//
//   - The token never reaches the daemon. It stays in the builder container (which alone mounts
//     it), travels only to the git host in an Authorization header set through git's environment
//     (not argv, so it is not in /proc/*/cmdline), and cannot end up in BuildKit's git source
//     cache keys, its source metadata or its logs.
//   - Failures are classified exactly: a refused or missing commit is a SourceFailed with git's
//     own message, measured in its own "fetch" timing, not a solve error to be parsed.
//   - The daemon needs no git binary and no route to the git host; the same builder works against
//     any BuildKit (an ARC runner's sidecar, the Action's local mode with an existing checkout).
//   - Cost: one copy of the context over the local socket, which is cheap next to a build, and
//     only files that the Dockerfile's COPY steps use affect cache keys, as with a git source.
//
// The .git directory is deleted after the checkout (as BuildKit's git source does by default), so
// git metadata neither busts COPY caches nor lands in images.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fetchSpec is one fetch of one commit.
type fetchSpec struct {
	URL     string
	SHA     string
	User    string
	Token   string
	Dir     string // empty directory to check the commit out into
	Timeout time.Duration
}

// gitEnv is the environment for git: no system or user config, no prompts or credential helpers,
// and the token as an extra HTTP header given through GIT_CONFIG_* variables.
func gitEnv(base []string, user, token string) []string {
	env := append([]string(nil), base...)
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=",
		"SSH_ASKPASS=",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
	)
	kv := [][2]string{{"credential.helper", ""}, {"advice.detachedHead", "false"}, {"init.defaultBranch", "main"}}
	if token != "" {
		if user == "" {
			user = "x-access-token"
		}
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + token))
		kv = append(kv, [2]string{"http.extraHeader", "Authorization: Basic " + auth})
	}
	env = append(env, "GIT_CONFIG_COUNT="+strconv.Itoa(len(kv)))
	for i, p := range kv {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, p[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, p[1]))
	}
	return env
}

// fetch checks out exactly spec.SHA, with depth 1, and returns the commit time.
func fetch(ctx context.Context, spec fetchSpec) (time.Time, error) {
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	env := gitEnv(os.Environ(), spec.User, spec.Token)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = spec.Dir
		cmd.Env = env
		cmd.WaitDelay = 2 * time.Second
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("git %s: %w", args[0], ctx.Err())
			}
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, lastLines(errb.String(), 3))
		}
		return strings.TrimSpace(out.String()), nil
	}
	if _, err := run("init", "-q"); err != nil {
		return time.Time{}, err
	}
	// Fetching a SHA needs the server to allow it (protocol v2, or uploadpack.allowReachableSHA1InWant);
	// GitHub and GitLab do. Fetching by SHA, not branch, builds exactly the pushed commit even
	// if the branch moved since.
	if _, err := run("fetch", "-q", "--depth=1", "--no-tags", "--no-recurse-submodules", spec.URL, spec.SHA); err != nil {
		return time.Time{}, explainFetchError(err, spec.Token != "")
	}
	if _, err := run("checkout", "-q", "--detach", "FETCH_HEAD"); err != nil {
		return time.Time{}, err
	}
	head, err := run("rev-parse", "HEAD")
	if err != nil {
		return time.Time{}, err
	}
	if head != spec.SHA {
		return time.Time{}, fmt.Errorf("fetched commit %s, expected %s", head, spec.SHA)
	}
	ct, err := run("show", "-s", "--format=%ct", "HEAD")
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading commit time %q: %w", ct, err)
	}
	if err := os.RemoveAll(filepath.Join(spec.Dir, ".git")); err != nil {
		return time.Time{}, fmt.Errorf("removing .git: %w", err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// explainFetchError adds the likely cause to git's terse messages. When the host refuses the
// token, git falls back to asking for a user name, and with prompts disabled says only "could not
// read Username".
func explainFetchError(err error, hadToken bool) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not read Username"), strings.Contains(msg, "Authentication failed"),
		strings.Contains(msg, "401"), strings.Contains(msg, "403"):
		if hadToken {
			return fmt.Errorf("the git host rejected the clone token: %w", err)
		}
		return fmt.Errorf("the git host requires authentication and no token was given: %w", err)
	case strings.Contains(msg, "not our ref"), strings.Contains(msg, "couldn't find remote ref"),
		strings.Contains(msg, "upload-pack: not our ref"):
		return fmt.Errorf("the commit is not on the git host (force-pushed away?) or the host refuses fetching by SHA: %w", err)
	}
	return err
}

// lastLines keeps the end of a command's stderr, where git puts the reason.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
