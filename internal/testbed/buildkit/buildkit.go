// Package buildkit gives tests a real, offline BuildKit test bed: a rootless buildkitd, an open
// registry, a TLS + htpasswd registry and a busybox base image, all started by the scripts in
// hack/buildkit (see hack/buildkit/up.sh), each instance in its own directory with its own PID
// files and free ports.
//
// Use it from TestMain through Lazy, which starts the test bed on first use, once per test
// binary, and stops it after m.Run:
//
//	var bed buildkit.Lazy
//	func TestMain(m *testing.M) { os.Exit(bed.Run(m)) }
//	func TestX(t *testing.T) { b := bed.Get(t); ... }
//
// Set SLIPWAY_TESTBED_ENV to the env file of a running instance (hack/buildkit/up.sh prints and
// writes it) to reuse that instance; it is then left running. The scripts need root: they create
// the daemon user, run daemons as that user, and delete sub-uid-owned daemon state.
package buildkit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvVar names an env file of an already running test bed to reuse.
const EnvVar = "SLIPWAY_TESTBED_ENV"

// Bed is a running test bed instance.
type Bed struct {
	Instance    string // instance directory
	Addr        string // BuildKit address of the long-lived "main" daemon
	Registry    string // host:port, plain HTTP, no auth
	RegistryTLS string // host:port, HTTPS with CAFile, basic auth TLSUser/TLSPassword
	TLSUser     string
	TLSPassword string
	CAFile      string
	BaseImage   string // busybox image in Registry
	SocketGID   int    // group a non-root client needs for the daemon sockets
	Buildctl    string // path of buildctl

	hackDir string
	owned   bool
}

// Start starts a new instance (or attaches to the one named by SLIPWAY_TESTBED_ENV).
func Start(ctx context.Context) (*Bed, error) {
	hack, err := hackDir()
	if err != nil {
		return nil, err
	}
	if envFile := os.Getenv(EnvVar); envFile != "" {
		b, err := parseEnvFile(envFile)
		if err != nil {
			return nil, fmt.Errorf("reusing the test bed from %s=%s: %w", EnvVar, envFile, err)
		}
		b.hackDir = hack
		return b, nil
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("starting the BuildKit test bed needs root (it runs daemons as an unprivileged user); " +
			"run as root or point " + EnvVar + " at a running instance")
	}
	root := os.Getenv("SLIPWAY_TESTBED_DIR")
	if root == "" {
		root = "/var/tmp/slipway-testbed"
	}
	if err := os.MkdirAll(filepath.Join(root, "instances"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the test bed dir: %w", err)
	}
	dir, err := os.MkdirTemp(filepath.Join(root, "instances"), "go-test-")
	if err != nil {
		return nil, fmt.Errorf("creating the test bed instance dir: %w", err)
	}
	// The owner PID lets a later up.sh clean this instance up if this process dies without Stop.
	if _, err := scriptEnv(ctx, hack, []string{"SLIPWAY_TESTBED_OWNER_PID=" + strconv.Itoa(os.Getpid())}, "up.sh", dir); err != nil {
		_, _ = script(context.Background(), hack, "down.sh", dir)
		return nil, err
	}
	b, err := parseEnvFile(filepath.Join(dir, "env"))
	if err != nil {
		_, _ = script(context.Background(), hack, "down.sh", dir)
		return nil, err
	}
	b.hackDir, b.owned = hack, true
	return b, nil
}

// Stop stops and deletes the instance if Start started it; a reused instance is left alone.
func (b *Bed) Stop(ctx context.Context) error {
	if !b.owned {
		return nil
	}
	_, err := script(ctx, b.hackDir, "down.sh", b.Instance)
	return err
}

// Daemon is an extra buildkitd of the instance with its own, initially empty, state: what a new
// build pod gets.
type Daemon struct {
	Addr string
	bed  *Bed
	name string
}

// StartDaemon starts a fresh rootless buildkitd. label only helps reading logs: the daemon's
// directory gets a short unique name, because its socket path must fit in 107 bytes.
func (b *Bed) StartDaemon(ctx context.Context, label string) (*Daemon, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := "d" + hex.EncodeToString(rnd[:])
	out, err := script(ctx, b.hackDir, "buildkitd.sh", "start", b.Instance, name)
	if err != nil {
		return nil, fmt.Errorf("starting buildkitd for %s: %w", label, err)
	}
	if err := os.WriteFile(filepath.Join(b.Instance, "buildkitd-"+name, "label"), []byte(label+"\n"), 0o644); err != nil {
		return nil, err
	}
	addr := lastLine(out)
	if !strings.HasPrefix(addr, "unix://") {
		return nil, fmt.Errorf("buildkitd.sh printed %q, want a unix:// address", addr)
	}
	return &Daemon{Addr: addr, bed: b, name: name}, nil
}

// StateDir is the daemon's --root: its cache, metadata and snapshots.
func (d *Daemon) StateDir() string {
	return filepath.Join(d.bed.Instance, "buildkitd-"+d.name, "state")
}

// Stop stops the daemon and deletes its state.
func (d *Daemon) Stop(ctx context.Context) error {
	_, err := script(ctx, d.bed.hackDir, "buildkitd.sh", "stop", d.bed.Instance, d.name, "--purge")
	return err
}

// WriteDockerConfig writes DIR/config.json with credentials for registry host:port.
func WriteDockerConfig(dir, registry, user, password string) error {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := map[string]any{"auths": map[string]any{registry: map[string]string{"auth": auth}}}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// HTTPClient trusts the instance's CA, for talking to RegistryTLS from tests.
func (b *Bed) HTTPClient() (*http.Client, error) {
	pem, err := os.ReadFile(b.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the test bed CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("test bed CA file holds no certificate")
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// Lazy starts the test bed on the first Get and stops it when Run's m.Run returns. Under
// `go test -short` Get skips the test instead of starting anything; otherwise a test bed that
// cannot start fails the test.
type Lazy struct {
	once  sync.Once
	mu    sync.Mutex
	bed   *Bed
	err   error
	short bool
}

// Run runs the tests and stops the test bed if one was started. Use it as TestMain's body.
func (l *Lazy) Run(m *testing.M) int {
	flag.Parse()
	l.short = testing.Short()
	code := m.Run()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bed != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.bed.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the BuildKit test bed: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Get returns the running test bed, starting it on first use.
func (l *Lazy) Get(t testing.TB) *Bed {
	t.Helper()
	if l.short {
		t.Skip("skipping: needs the real BuildKit test bed (rootless buildkitd, registries); not started under -short")
	}
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		b, err := Start(ctx)
		l.mu.Lock()
		l.bed, l.err = b, err
		l.mu.Unlock()
		if err == nil {
			fmt.Fprintf(os.Stderr, "BuildKit test bed up in %s at %s\n", time.Since(start).Round(time.Millisecond), b.Instance)
		}
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		t.Fatalf("BuildKit test bed could not start (run hack/buildkit/ensure.sh as root first, or use -short to skip): %v", l.err)
	}
	return l.bed
}

func parseEnvFile(path string) (*Bed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && !strings.HasPrefix(k, "#") {
			kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	b := &Bed{
		Instance:    kv["SLIPWAY_TESTBED_INSTANCE"],
		Addr:        kv["BUILDKIT_ADDR"],
		Registry:    kv["REGISTRY"],
		RegistryTLS: kv["REGISTRY_TLS"],
		TLSUser:     kv["REGISTRY_TLS_USER"],
		CAFile:      kv["REGISTRY_CA"],
		BaseImage:   kv["BASE_IMAGE"],
		Buildctl:    kv["BUILDCTL"],
	}
	for k, v := range map[string]string{"SLIPWAY_TESTBED_INSTANCE": b.Instance, "BUILDKIT_ADDR": b.Addr,
		"REGISTRY": b.Registry, "REGISTRY_TLS": b.RegistryTLS, "BASE_IMAGE": b.BaseImage} {
		if v == "" {
			return nil, fmt.Errorf("%s: %s missing", path, k)
		}
	}
	if pf := kv["REGISTRY_TLS_PASSWORD_FILE"]; pf != "" {
		pw, err := os.ReadFile(pf)
		if err != nil {
			return nil, fmt.Errorf("reading the registry password: %w", err)
		}
		b.TLSPassword = strings.TrimSpace(string(pw))
	}
	b.SocketGID, _ = strconv.Atoi(kv["BUILDKIT_SOCKET_GID"])
	return b, nil
}

// script runs hack/buildkit/NAME and returns its stdout; stderr goes into the error.
func script(ctx context.Context, hack, name string, args ...string) (string, error) {
	return scriptEnv(ctx, hack, nil, name, args...)
}

func scriptEnv(ctx context.Context, hack string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(hack, name), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/buildkit/%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(errb.String(), 40))
	}
	return out.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hackDir finds hack/buildkit from the working directory (go test runs in the package dir).
func hackDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			h := filepath.Join(dir, "hack", "buildkit")
			if _, err := os.Stat(filepath.Join(h, "up.sh")); err != nil {
				return "", fmt.Errorf("test bed scripts not found: %w", err)
			}
			return h, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod) not found above the working directory")
		}
		dir = parent
	}
}
