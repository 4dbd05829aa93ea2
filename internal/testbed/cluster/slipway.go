package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// ImagesVar names a file with the KEY=VALUE lines hack/images/slipway-images.sh prints; when set,
// SlipwayImages reads it instead of running the script (which needs root).
const ImagesVar = "SLIPWAY_E2E_IMAGES"

// Images are Slipway's own images in the cluster registry, by digest, as
// hack/images/slipway-images.sh built and pushed them.
type Images struct {
	// Server is the `slipway serve` image: the static binary on scratch, non-root.
	Server string
	// Builder runs `slipway build`: the same binary plus git.
	Builder string
	// BuildKit is rootless buildkitd v0.33.1 (entrypoint `rootlesskit buildkitd`).
	BuildKit string
	// Binary is the slipway binary inside the images, for running it outside the cluster.
	Binary string
}

// SlipwayImages builds (when their inputs changed) and pushes Slipway's images, or reads them from
// $SLIPWAY_E2E_IMAGES. A warm run takes a few seconds: `go build`, a content hash, three pushes
// of blobs the registry already has.
func (c *Cluster) SlipwayImages(ctx context.Context, opts Options) (Images, error) {
	var lines []byte
	if f := os.Getenv(ImagesVar); f != "" {
		var err error
		if lines, err = os.ReadFile(f); err != nil {
			return Images{}, fmt.Errorf("reading %s: %w", ImagesVar, err)
		}
	} else {
		root := opts.RepoRoot
		if root == "" {
			var err error
			if root, err = findRepoRoot(); err != nil {
				return Images{}, err
			}
		}
		if os.Geteuid() != 0 {
			return Images{}, fmt.Errorf("building Slipway's images needs root (rootless BuildKit test bed): run hack/images/slipway-images.sh as root and set %s to a file with its output", ImagesVar)
		}
		script := filepath.Join(root, "hack", "images", "slipway-images.sh")
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), EnvFileVar+"="+c.EnvFile)
		logw := opts.Log
		if logw == nil {
			logw = io.Discard
		}
		tail := &tailBuffer{max: 8192}
		out := &lockedWriter{w: io.MultiWriter(logw, tail)}
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, out
		if err := cmd.Run(); err != nil {
			return Images{}, fmt.Errorf("%s failed: %w; last output:\n%s", script, err, out.locked(tail.String))
		}
		lines = stdout.Bytes()
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(lines))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			kv[k] = v
		}
	}
	im := Images{Server: kv["SLIPWAY_IMAGE"], Builder: kv["SLIPWAY_BUILDER_IMAGE"], BuildKit: kv["SLIPWAY_BUILDKIT_IMAGE"], Binary: kv["SLIPWAY_BINARY"]}
	if im.Server == "" || im.Builder == "" || im.BuildKit == "" || im.Binary == "" {
		return Images{}, fmt.Errorf("slipway-images.sh output lacks an image or the binary: %q", lines)
	}
	return im, nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs applies every CRD in dir (server-side apply, so it is idempotent and updates a
// changed CRD) and waits until each is Established.
func (c *Cluster) InstallCRDs(ctx context.Context, dir string) error {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating dynamic client: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	sort.Strings(files)
	var names []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(js); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		force := true
		if _, err := dyn.Resource(crdResource).Patch(ctx, u.GetName(), types.ApplyPatchType, js,
			metav1.PatchOptions{FieldManager: "slipway-e2e", Force: &force}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			u, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return nil
}

// BuildKitConfigMap is the ConfigMap a build namespace needs for the cluster registry: a
// buildkitd.toml that trusts the registry's CA, and the CA. Slipway mounts it into the buildkitd
// sidecar (controller.buildkitConfigMap) at podspec.BuildKitConfigDir, passed here as dir.
func (c *Cluster) BuildKitConfigMap(name, dir string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data: map[string]string{
			"buildkitd.toml":  fmt.Sprintf("# the test cluster's registry, with its own CA\n[registry.%q]\n  ca = [%q]\n", c.Registry, dir+"/registry-ca.crt"),
			"registry-ca.crt": string(c.RegistryCA),
		},
	}
}

// PushSecret is a kubernetes.io/dockerconfigjson Secret for the cluster registry. The registry
// accepts anonymous pushes, so the credentials are placeholders: the Secret proves the plumbing
// (mounted into the builder only, handed to BuildKit through the session).
func (c *Cluster) PushSecret(name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil,
			`{"auths":{%q:{"auth":"c2xpcHdheS1lMmU6bm90LWEtc2VjcmV0"}}}`, c.Registry)}, // slipway-e2e:not-a-secret
	}
}

// Serve is a `slipway serve` process running outside the cluster against it, as the controller
// end-to-end tests and the benchmark run it.
type Serve struct {
	// Config is the YAML configuration it was started with.
	Config []byte
	// Addr is its listen address (webhooks, /healthz, /metrics).
	Addr string
	// LogPath holds its stderr (JSON log lines), appended to across restarts.
	LogPath string

	binary, configPath string
	cmd                *exec.Cmd
	done               chan struct{}
	waitErr            error
}

// StartServe writes config (YAML for internal/config) to dir and runs `binary serve` with it until
// ctx ends or Kill/Stop is called. It returns once /healthz answers.
func StartServe(ctx context.Context, binary, dir string, config []byte, addr string) (*Serve, error) {
	s := &Serve{Config: config, Addr: addr, LogPath: filepath.Join(dir, "serve.log"), binary: binary, configPath: filepath.Join(dir, "serve.yaml")}
	if err := os.WriteFile(s.configPath, config, 0o600); err != nil {
		return nil, err
	}
	return s, s.start(ctx)
}

func (s *Serve) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.binary, "serve", "--config", s.configPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting slipway serve: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.done:
			return false, fmt.Errorf("slipway serve exited: %v; log:\n%s", s.waitErr, s.LogTail(4096))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr+"/healthz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		_ = s.Kill()
		return fmt.Errorf("slipway serve did not become healthy: %w", err)
	}
	return nil
}

// PID is the process ID of the running process.
func (s *Serve) PID() int { return s.cmd.Process.Pid }

// Restart starts the process again after Kill or Stop, with the same configuration.
func (s *Serve) Restart(ctx context.Context) error {
	select {
	case <-s.done:
	default:
		return errors.New("slipway serve is still running")
	}
	return s.start(ctx)
}

// Kill sends SIGKILL (a crash: no lease release, no cleanup) and waits for the exit.
func (s *Serve) Kill() error {
	_ = s.cmd.Process.Kill()
	<-s.done
	return nil
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
func (s *Serve) Stop(timeout time.Duration) error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.waitErr
	case <-time.After(timeout):
		return s.Kill()
	}
}

// RSSKiB is the process's resident set size (VmRSS) and peak (VmHWM) in KiB.
func (s *Serve) RSSKiB() (rss, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		var v int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &v); err == nil {
			rss = v
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &v); err == nil {
			peak = v
		}
	}
	return rss, peak, nil
}

// LogTail returns the last n bytes of the process's log.
func (s *Serve) LogTail(n int) string {
	data, _ := os.ReadFile(s.LogPath)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}
