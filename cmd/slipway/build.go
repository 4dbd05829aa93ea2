package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/slipway-dev/slipway/internal/builder"
	"github.com/slipway-dev/slipway/internal/buildresult"
)

// buildFlags are the inputs of `slipway build`. Every flag has an environment fallback
// (SLIPWAY_<NAME>) because the controller passes most of them as env in the pod spec; an explicit
// flag wins over the environment.
type buildFlags struct {
	cloneURL, sha, sourceDir, workDir         string
	context, dockerfile, target               string
	buildArgs, platforms, tags                []string
	cacheFrom                                 []string
	cacheTo, tokenFile, gitUser, dockerConfig string
	secrets, insecure                         []string
	addr, resultFile                          string
	daemonTimeout                             time.Duration
	noPush                                    bool
}

// buildEnv maps flag names to their environment variables. List values in the environment are
// separated by newlines (build args and secrets may contain commas) or, for tags, platforms,
// cache refs and registries, by commas too.
var buildEnv = map[string]string{
	"clone-url":         "SLIPWAY_CLONE_URL",
	"sha":               "SLIPWAY_SHA",
	"source-dir":        "SLIPWAY_SOURCE_DIR",
	"workdir":           "SLIPWAY_WORKDIR",
	"context":           "SLIPWAY_CONTEXT",
	"file":              "SLIPWAY_DOCKERFILE",
	"target":            "SLIPWAY_TARGET",
	"build-arg":         "SLIPWAY_BUILD_ARGS",
	"platform":          "SLIPWAY_PLATFORMS",
	"tag":               "SLIPWAY_TAGS",
	"cache-from":        "SLIPWAY_CACHE_FROM",
	"cache-to":          "SLIPWAY_CACHE_TO",
	"token-file":        "SLIPWAY_TOKEN_FILE",
	"git-user":          "SLIPWAY_GIT_USER",
	"docker-config":     "SLIPWAY_DOCKER_CONFIG",
	"secret":            "SLIPWAY_SECRETS",
	"insecure-registry": "SLIPWAY_INSECURE_REGISTRIES",
	"buildkit-addr":     "SLIPWAY_BUILDKIT_ADDR",
	"daemon-timeout":    "SLIPWAY_DAEMON_TIMEOUT",
	"result-file":       "SLIPWAY_RESULT_FILE",
	"no-push":           "SLIPWAY_NO_PUSH",
}

// newlineOnly are list flags whose env values are split on newlines only.
var newlineOnly = map[string]bool{"build-arg": true, "secret": true}

func (f *buildFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cloneURL, "clone-url", "", "git URL of the repository (no credentials in it; see --token-file)")
	fs.StringVar(&f.sha, "sha", "", "full commit SHA to build")
	fs.StringVar(&f.sourceDir, "source-dir", "", "build this existing checkout instead of fetching (local mode)")
	fs.StringVar(&f.workDir, "workdir", "", "directory to fetch the source into (default: the temp dir)")
	fs.StringVar(&f.context, "context", ".", "build context, relative to the repository root")
	fs.StringVarP(&f.dockerfile, "file", "f", "", "Dockerfile path relative to the repository root (default: <context>/Dockerfile)")
	fs.StringVar(&f.target, "target", "", "Dockerfile stage to build")
	fs.StringArrayVar(&f.buildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable; never for secrets)")
	fs.StringSliceVar(&f.platforms, "platform", nil, "target platforms, e.g. linux/amd64 (repeatable or comma-separated)")
	fs.StringSliceVarP(&f.tags, "tag", "t", nil, "image reference to push (repeatable or comma-separated)")
	fs.StringSliceVar(&f.cacheFrom, "cache-from", nil, "registry cache ref to import, in order: this branch, then the default branch")
	fs.StringVar(&f.cacheTo, "cache-to", "", "registry cache ref to export (mode=max, best effort)")
	fs.BoolVar(&f.noPush, "no-push", false, "build without pushing (fork pull requests); no --tag or --cache-to")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the short-lived clone token")
	fs.StringVar(&f.gitUser, "git-user", "x-access-token", "user name sent with the clone token")
	fs.StringVar(&f.dockerConfig, "docker-config", "", "directory with config.json (or .dockerconfigjson) holding registry credentials (env fallback also DOCKER_CONFIG)")
	fs.StringArrayVar(&f.secrets, "secret", nil, "build secret id=ID,src=FILE, used with RUN --mount=type=secret (repeatable)")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host:port allowed over plain HTTP or unverified TLS (repeatable)")
	fs.StringVar(&f.addr, "buildkit-addr", builder.DefaultAddr, "BuildKit daemon address (env fallback also BUILDKIT_HOST)")
	fs.DurationVar(&f.daemonTimeout, "daemon-timeout", 2*time.Minute, "how long to wait for the daemon to answer")
	fs.StringVar(&f.resultFile, "result-file", "", "write the JSON result here too (in a pod: /dev/termination-log)")
}

// applyEnv fills every flag the user did not set from its environment variable.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	for name, env := range buildEnv {
		fl := fs.Lookup(name)
		if fl == nil || fl.Changed {
			continue
		}
		v := getenv(env)
		switch {
		case v == "" && name == "docker-config":
			v = getenv("DOCKER_CONFIG")
		case v == "" && name == "buildkit-addr":
			v = getenv("BUILDKIT_HOST")
		}
		if v == "" {
			continue
		}
		values := []string{v}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			sep := "\n,"
			if newlineOnly[name] {
				sep = "\n"
			}
			values = nil
			for _, part := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(sep, r) }) {
				if p := strings.TrimSpace(part); p != "" {
					values = append(values, p)
				}
			}
			if err := sv.Replace(values); err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			continue
		}
		if err := fl.Value.Set(strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
	}
	return nil
}

// config turns the flags into a builder.Config. Flag-level problems are builder.ConfigErrors, so
// they produce a ConfigInvalid result like any other input problem.
func (f *buildFlags) config() (builder.Config, error) {
	cfg := builder.Config{
		Addr:               f.addr,
		DaemonTimeout:      f.daemonTimeout,
		CloneURL:           f.cloneURL,
		SHA:                strings.ToLower(f.sha),
		TokenFile:          f.tokenFile,
		GitUser:            f.gitUser,
		SourceDir:          f.sourceDir,
		WorkDir:            f.workDir,
		Context:            f.context,
		Dockerfile:         f.dockerfile,
		Target:             f.target,
		BuildArgs:          f.buildArgs,
		Platforms:          f.platforms,
		Tags:               f.tags,
		NoPush:             f.noPush,
		CacheFrom:          f.cacheFrom,
		CacheTo:            f.cacheTo,
		DockerConfigDir:    f.dockerConfig,
		InsecureRegistries: f.insecure,
	}
	for _, s := range f.secrets {
		sec, err := builder.ParseSecret(s)
		if err != nil {
			return cfg, &builder.ConfigError{Msg: err.Error()}
		}
		cfg.Secrets = append(cfg.Secrets, sec)
	}
	return cfg, nil
}

// buildExitError carries the builder's exit code (a contract with the controller) to main.
type buildExitError struct {
	code int
	msg  string
}

func (e *buildExitError) Error() string { return e.msg }
func (e *buildExitError) ExitCode() int { return e.code }

func newBuildCommand() *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build and push one commit's image on a BuildKit daemon (runs in the build pod)",
		Long: `build fetches one commit, builds it with the BuildKit daemon at --buildkit-addr using the
built-in Dockerfile frontend, pushes the image to every --tag and imports/exports the registry
cache. Progress goes to stdout; the last stdout line is the JSON result, also written to
--result-file. Exit codes: 0 success, 10 daemon unavailable, 11 source fetch failed,
12 Dockerfile/config invalid, 13 build step failed, 14 push failed, 15 canceled (SIGTERM),
1 internal error. Every flag can also be set by its SLIPWAY_* environment variable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBuild(cmd, &f, os.Getenv)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// runBuild applies the environment fallbacks, builds, and always writes a result: even an input
// error yields a ConfigInvalid result, so the controller never has to guess from logs.
func runBuild(cmd *cobra.Command, f *buildFlags, getenv func(string) string) error {
	stdout := cmd.OutOrStdout()
	var rep builder.Report
	err := applyEnv(cmd.Flags(), getenv)
	var cfg builder.Config
	if err == nil {
		cfg, err = f.config()
	}
	if err != nil {
		rep.Result = buildresult.Result{Outcome: buildresult.ConfigInvalid, Tags: f.tags, Failure: &buildresult.Failure{Message: err.Error()}}
	} else {
		rep = builder.Run(cmd.Context(), cfg, stdout, cmd.ErrOrStderr())
	}
	if err := builder.WriteResult(rep.Result, f.resultFile, stdout); err != nil {
		return &buildExitError{code: buildresult.ExitInternalError, msg: err.Error()}
	}
	if rep.Result.Outcome != buildresult.Succeeded {
		return &buildExitError{code: rep.Result.Outcome.ExitCode(), msg: rep.Result.Summary()}
	}
	return nil
}
