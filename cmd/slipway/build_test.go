package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/builder"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/testbed/buildkit"
	"github.com/slipway-dev/slipway/internal/testbed/gitserver"
)

func parseBuildFlags(t *testing.T, args []string, env map[string]string) (builder.Config, *buildFlags, error) {
	t.Helper()
	cmd := newBuildCommand()
	var f buildFlags
	cmd.ResetFlags()
	f.register(cmd.Flags())
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags(), func(k string) string { return env[k] }); err != nil {
		return builder.Config{}, &f, err
	}
	cfg, err := f.config()
	return cfg, &f, err
}

func TestBuildFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"SLIPWAY_CLONE_URL":           "https://git.example.com/o/r.git",
		"SLIPWAY_SHA":                 "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
		"SLIPWAY_TAGS":                "reg/o/r:a, reg/o/r:b\nreg/o/r:c",
		"SLIPWAY_BUILD_ARGS":          "A=1,2\nB=x",
		"SLIPWAY_CACHE_FROM":          "reg/cache/r:feature,reg/cache/r:main",
		"SLIPWAY_SECRETS":             "id=npm,src=/run/secrets/npm",
		"SLIPWAY_DAEMON_TIMEOUT":      "45s",
		"SLIPWAY_INSECURE_REGISTRIES": "127.0.0.1:5000",
		"DOCKER_CONFIG":               "/docker-from-env",
		"BUILDKIT_HOST":               "unix:///from/buildkit/host.sock",
		"SLIPWAY_TARGET":              "from-env",
	}
	cfg, f, err := parseBuildFlags(t, []string{"--target", "from-flag", "--platform", "linux/amd64,linux/arm64", "--result-file", "/dev/termination-log"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Target != "from-flag" {
		t.Errorf("a flag must win over the environment: target = %q", cfg.Target)
	}
	if cfg.SHA != "abcdef0123456789abcdef0123456789abcdef01" {
		t.Errorf("sha = %q", cfg.SHA)
	}
	if !slices.Equal(cfg.Tags, []string{"reg/o/r:a", "reg/o/r:b", "reg/o/r:c"}) {
		t.Errorf("tags = %q", cfg.Tags)
	}
	if !slices.Equal(cfg.BuildArgs, []string{"A=1,2", "B=x"}) {
		t.Errorf("build args = %q (commas belong to values)", cfg.BuildArgs)
	}
	if !slices.Equal(cfg.CacheFrom, []string{"reg/cache/r:feature", "reg/cache/r:main"}) {
		t.Errorf("cache from = %q", cfg.CacheFrom)
	}
	if !slices.Equal(cfg.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms = %q", cfg.Platforms)
	}
	if len(cfg.Secrets) != 1 || cfg.Secrets[0] != (builder.Secret{ID: "npm", Path: "/run/secrets/npm"}) {
		t.Errorf("secrets = %+v", cfg.Secrets)
	}
	if cfg.DaemonTimeout != 45*time.Second || cfg.DockerConfigDir != "/docker-from-env" || cfg.Addr != "unix:///from/buildkit/host.sock" {
		t.Errorf("cfg = %+v", cfg)
	}
	if f.resultFile != "/dev/termination-log" || cfg.GitUser != "x-access-token" || cfg.Context != "." {
		t.Errorf("defaults: %+v", f)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}

	// Defaults with nothing set.
	cfg, _, err = parseBuildFlags(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != builder.DefaultAddr || cfg.DaemonTimeout != 2*time.Minute {
		t.Errorf("defaults: addr %q, timeout %s", cfg.Addr, cfg.DaemonTimeout)
	}

	// Bad inputs are config errors.
	if _, _, err := parseBuildFlags(t, []string{"--secret", "nonsense"}, nil); err == nil {
		t.Error("bad --secret accepted")
	}
	if _, _, err := parseBuildFlags(t, nil, map[string]string{"SLIPWAY_DAEMON_TIMEOUT": "soon"}); err == nil {
		t.Error("bad SLIPWAY_DAEMON_TIMEOUT accepted")
	}
}

// runBuildCommand runs `slipway build ARGS` in process and returns stdout and the exit code main
// would use.
func runBuildCommand(ctx context.Context, t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(append([]string{"build"}, args...))
	err := root.ExecuteContext(ctx)
	code := 0
	if err != nil {
		code = exitCode(err)
	}
	return stdout.String(), code
}

func TestBuildExitCodesWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	resultFile := filepath.Join(dir, "termination-log")
	noDaemon := []string{"--buildkit-addr", "unix://" + filepath.Join(dir, "none.sock"), "--daemon-timeout", "500ms",
		"--source-dir", dir, "--tag", "127.0.0.1:1/x:y", "--result-file", resultFile}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		args []string
		want buildresult.Outcome
	}{
		{"daemon unavailable", context.Background(), noDaemon, buildresult.DaemonUnavailable},
		{"canceled", canceled, noDaemon, buildresult.Canceled},
		{"config invalid", context.Background(), append(slices.Clone(noDaemon), "--secret", "bad"), buildresult.ConfigInvalid},
		{"no tag", context.Background(), []string{"--source-dir", dir, "--result-file", resultFile}, buildresult.ConfigInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(resultFile)
			out, code := runBuildCommand(tt.ctx, t, tt.args...)
			if code != tt.want.ExitCode() {
				t.Errorf("exit code = %d, want %d", code, tt.want.ExitCode())
			}
			b, err := os.ReadFile(resultFile)
			if err != nil {
				t.Fatal(err)
			}
			r, err := buildresult.Decode(b)
			if err != nil || r.Outcome != tt.want {
				t.Errorf("result file: %v %+v", err, r)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if lines[len(lines)-1] != string(b) {
				t.Errorf("last stdout line %q is not the result %q", lines[len(lines)-1], b)
			}
		})
	}
}

// TestBuildSIGTERM runs the real binary against the real test bed and stops it with SIGTERM
// mid-build, as the kubelet does: it must exit within a few seconds with the canceled code.
func TestBuildSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs the real BuildKit test bed; not started under -short")
	}
	ctx := context.Background()
	bed, err := buildkit.Start(ctx)
	if err != nil {
		t.Fatalf("BuildKit test bed could not start: %v", err)
	}
	t.Cleanup(func() { _ = bed.Stop(context.Background()) })

	dir := t.TempDir()
	bin := filepath.Join(dir, "slipway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const token = "ghs_sigtermTestTOKEN42"
	g, err := gitserver.Start(filepath.Join(dir, "git"), token)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sha, err := g.NewRepo(ctx, "sigterm", map[string]string{
		"Dockerfile": "FROM " + bed.BaseImage + "\nRUN echo long step started && sleep 151\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	resultFile := filepath.Join(dir, "termination-log")
	cmd := exec.Command(bin, "build", "--tag", bed.Registry+"/test/sigterm:x", "--insecure-registry", bed.Registry,
		"--result-file", resultFile, "--workdir", dir)
	cmd.Env = append(os.Environ(),
		"SLIPWAY_BUILDKIT_ADDR="+bed.Addr,
		"SLIPWAY_CLONE_URL="+g.RepoURL("sigterm"),
		"SLIPWAY_SHA="+sha,
		"SLIPWAY_TOKEN_FILE="+tokenFile,
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	started := make(chan struct{})
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "long step started") && !strings.Contains(sc.Text(), "RUN") {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the step did not start; stderr:\n%s", stderr.String())
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { <-scanDone; waitErr <- cmd.Wait() }()
	select {
	case err = <-waitErr:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("slipway build did not exit within 20s of SIGTERM")
	}
	took := time.Since(sent)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != buildresult.ExitCanceled {
		t.Fatalf("exit = %v, want code %d; stderr:\n%s", err, buildresult.ExitCanceled, stderr.String())
	}
	if took > 10*time.Second {
		t.Errorf("exited %s after SIGTERM, want a few seconds", took)
	}
	b, err := os.ReadFile(resultFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := buildresult.Decode(b)
	if err != nil || r.Outcome != buildresult.Canceled {
		t.Errorf("result = %+v, %v", r, err)
	}
	if strings.Contains(all.String()+stderr.String(), token) {
		t.Error("the token appears in the output")
	}
	t.Logf("exited %s after SIGTERM with code %d: %s", took.Round(time.Millisecond), ee.ExitCode(), b)
}
