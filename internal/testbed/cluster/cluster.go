// Package cluster gives end-to-end tests the project's real single-node Kubernetes cluster, the one
// hack/cluster/up.sh runs on this machine. It brings the cluster up (or reuses a running one) and
// hands a test what it needs to use it: a client, the registry address and the registry's CA.
//
// Tests talk to a real kubelet, containerd and registry rather than a fake clientset because
// Slipway's promises (native sidecars, user-namespaced pods, images the kubelet can pull) only
// exist there.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment variables the package reads.
const (
	// EnvFileVar names the env file of a running cluster (written by hack/cluster/up.sh). When it
	// is set, Start uses that cluster and does not run up.sh: tests then need no root, only read
	// access to the admin kubeconfig (0600, root) and the registry CA.
	EnvFileVar = "SLIPWAY_CLUSTER_ENV"
	// RuntimeVar selects the node's container runtime when Start runs up.sh.
	RuntimeVar = "SLIPWAY_CLUSTER_RUNTIME"
)

// Container runtimes hack/cluster/up.sh can run the node on.
const (
	// RuntimeContainerd2 is containerd 2.4 + runc 1.5, built from source: user-namespaced pods work.
	RuntimeContainerd2 = "containerd2"
	// RuntimeContainerd16 is Debian's containerd 1.6 + runc 1.1: an "older node" without them.
	RuntimeContainerd16 = "containerd16"
)

// Options says how to reach or start the cluster. The zero value is ready to use.
type Options struct {
	// RepoRoot is the checkout holding hack/cluster/up.sh; empty means the nearest directory at or
	// above the working directory that has it (go test runs in the package directory).
	RepoRoot string
	// Runtime is passed to up.sh as SLIPWAY_CLUSTER_RUNTIME; empty means the environment's value
	// or up.sh's default (containerd2).
	Runtime string
	// Log receives up.sh's progress output; nil discards it (it is still quoted on failure).
	Log io.Writer
}

// Cluster is a running test cluster.
type Cluster struct {
	// EnvFile is the env file the cluster was loaded from.
	EnvFile string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// Config is the admin client configuration.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Runtime is RuntimeContainerd2 or RuntimeContainerd16.
	Runtime string
	// Node is the name of the single node.
	Node string
	// Registry is the registry's host:port. The same address works from the node (where the
	// kubelet pulls) and from inside pods (where a builder pushes).
	Registry string
	// RegistryCAFile is the path of the CA certificate the registry's TLS certificate chains to;
	// containerd on the node trusts it.
	RegistryCAFile string
	// RegistryCA is the content of RegistryCAFile (PEM).
	RegistryCA []byte
	// TestImage is a small busybox image in the registry, by digest: busybox applets, `usock` (a
	// Unix-socket echo server/client that exits on SIGTERM), users root and 1000.
	TestImage string
	// Env is every variable of the env file, for settings not given their own field.
	Env map[string]string
}

// SupportsUserNamespaces reports whether the node runs pods with hostUsers: false.
func (c *Cluster) SupportsUserNamespaces() bool { return c.Runtime == RuntimeContainerd2 }

// Start returns the test cluster: the one named by $SLIPWAY_CLUSTER_ENV if set, otherwise the one
// hack/cluster/up.sh brings up or finds running (idempotent, about a second when already up; the
// first run builds Kubernetes and containerd, which takes many CPU-minutes).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if envFile := os.Getenv(EnvFileVar); envFile != "" {
		return Load(ctx, envFile)
	}
	root := opts.RepoRoot
	if root == "" {
		var err error
		if root, err = findRepoRoot(); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("starting the test cluster needs root (bridge, iptables, mounts): run hack/cluster/up.sh as root and set %s to the env file it prints", EnvFileVar)
	}
	script := filepath.Join(root, "hack", "cluster", "up.sh")
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if opts.Runtime != "" {
		cmd.Env = append(cmd.Env, RuntimeVar+"="+opts.Runtime)
	}
	var stdout bytes.Buffer
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	// Stream everything to Log and keep the last part for an error message. exec copies stdout and
	// stderr in two goroutines, hence the lock.
	tail := &tailBuffer{max: 8192}
	out := &lockedWriter{w: io.MultiWriter(logw, tail)}
	cmd.Stdout = io.MultiWriter(&stdout, out)
	cmd.Stderr = out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s failed: %w; last output:\n%s", script, err, out.locked(tail.String))
	}
	envFile := ""
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), EnvFileVar+"="); ok {
			envFile = v
		}
	}
	if envFile == "" {
		return nil, fmt.Errorf("%s did not print %s=<env file>; last output:\n%s", script, EnvFileVar, tail.String())
	}
	return Load(ctx, envFile)
}

// Load connects to the cluster described by an env file written by hack/cluster/up.sh and checks
// that its API server answers.
func Load(ctx context.Context, envFile string) (*Cluster, error) {
	env, err := readEnvFile(envFile)
	if err != nil {
		return nil, fmt.Errorf("reading cluster env file (is the cluster up? run hack/cluster/up.sh): %w", err)
	}
	c := &Cluster{
		EnvFile:        envFile,
		Kubeconfig:     env["KUBECONFIG"],
		Runtime:        env["SLIPWAY_CLUSTER_RUNTIME"],
		Node:           env["SLIPWAY_CLUSTER_NODE"],
		Registry:       env["SLIPWAY_REGISTRY"],
		RegistryCAFile: env["SLIPWAY_REGISTRY_CA"],
		TestImage:      env["SLIPWAY_TEST_IMAGE"],
		Env:            env,
	}
	for k, v := range map[string]string{
		"KUBECONFIG": c.Kubeconfig, "SLIPWAY_CLUSTER_RUNTIME": c.Runtime, "SLIPWAY_CLUSTER_NODE": c.Node,
		"SLIPWAY_REGISTRY": c.Registry, "SLIPWAY_REGISTRY_CA": c.RegistryCAFile, "SLIPWAY_TEST_IMAGE": c.TestImage,
	} {
		if v == "" {
			return nil, fmt.Errorf("cluster env file %s lacks %s", envFile, k)
		}
	}
	if c.RegistryCA, err = os.ReadFile(c.RegistryCAFile); err != nil {
		return nil, fmt.Errorf("reading registry CA: %w", err)
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", c.Kubeconfig, err)
	}
	c.Config.QPS, c.Config.Burst = 50, 100
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	// Fail here, with the address, rather than in the first test step.
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Client.CoreV1().Nodes().Get(pingCtx, c.Node, metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("test cluster API server %s does not answer (is the cluster up? hack/cluster/status.sh): %w", c.Config.Host, err)
	}
	return c, nil
}

// RegistryHTTPClient returns an HTTP client that trusts the registry's CA and nothing else.
func (c *Cluster) RegistryHTTPClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.RegistryCA) {
		return nil, fmt.Errorf("no certificate in registry CA %s", c.RegistryCAFile)
	}
	return &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// readEnvFile parses KEY=VALUE lines; up.sh writes values unquoted and without spaces.
func readEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE: %q", path, i+1, line)
		}
		env[k] = v
	}
	return env, nil
}

// findRepoRoot walks up from the working directory to the checkout that has hack/cluster/up.sh.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "cluster", "up.sh")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("finding repository root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no hack/cluster/up.sh at or above the working directory; set Options.RepoRoot")
		}
		dir = parent
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// lockedWriter serializes writes from concurrent goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// locked runs f under the writer's lock, for reading what was written.
func (l *lockedWriter) locked(f func() string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f()
}
