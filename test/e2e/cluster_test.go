//go:build e2e

// Package e2e holds end-to-end tests that run against the real single-node cluster of
// hack/cluster (see internal/testbed/cluster). Run them with
//
//	go test -tags e2e ./test/e2e/...
//
// as root (the cluster is brought up if needed), or with SLIPWAY_CLUSTER_ENV pointing
// at the env file of a running cluster. SLIPWAY_E2E_RUNS=N repeats every smoke pod N times and
// logs the median time from create to Succeeded.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

// TestClusterSmoke proves the cluster can do what Slipway's build pods rely on.
func TestClusterSmoke(t *testing.T) {
	c := startCluster(t)
	ns := createNamespace(t, c)
	runs := smokeRuns(t)

	t.Run("NativeSidecarSharesUnixSocket", func(t *testing.T) {
		// A daemon as a native sidecar (restartPolicy Always init container) and a short job in
		// the main container talking to it over a Unix socket in an emptyDir: the pod must reach
		// Succeeded once the job exits, with the sidecar stopped (it handles SIGTERM).
		timings(t, runs, func(t *testing.T, i int) time.Duration {
			pod := basePod(fmt.Sprintf("sidecar-%d", i), c.TestImage)
			always := corev1.ContainerRestartPolicyAlways
			pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			mount := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
			pod.Spec.InitContainers = []corev1.Container{{
				Name: "daemon", Image: c.TestImage, ImagePullPolicy: corev1.PullIfNotPresent,
				RestartPolicy:   &always,
				Command:         []string{"usock", "serve", "/shared/d.sock"},
				VolumeMounts:    mount,
				SecurityContext: nonRoot(),
				Resources:       smallResources(),
				StartupProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-S", "/shared/d.sock"}}},
					PeriodSeconds: 1, FailureThreshold: 30,
				},
			}}
			pod.Spec.Containers[0].Command = []string{"usock", "ping", "/shared/d.sock", "hello-from-job"}
			pod.Spec.Containers[0].VolumeMounts = mount
			d := runToSuccess(t, c, ns, pod)
			if out := podLogs(t, c, ns, pod.Name, "main"); !strings.Contains(out, "pong") || !strings.Contains(out, "hello-from-job") {
				t.Errorf("job output %q, want a pong for hello-from-job", out)
			}
			got, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st := got.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 0 {
				t.Errorf("sidecar status %+v, want terminated with exit code 0 (stopped by SIGTERM)", st)
			}
			return d
		})
	})

	t.Run("PullByDigestFromClusterRegistry", func(t *testing.T) {
		// A fresh manifest digest per run, so containerd cannot have it: the kubelet must pull it
		// from the registry over TLS with the locally generated CA.
		timings(t, runs, func(t *testing.T, i int) time.Duration {
			nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
			img, err := c.PushVariant(t.Context(), c.TestImage, "slipway-e2e/pull", nonce, map[string]string{"dev.slipway.e2e.nonce": nonce})
			if err != nil {
				t.Fatalf("pushing a test image: %v", err)
			}
			pod := basePod(fmt.Sprintf("pull-%d", i), img)
			pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			pod.Spec.Containers[0].Command = []string{"sh", "-c", "echo pulled"}
			d := runToSuccess(t, c, ns, pod)
			got, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := img[strings.Index(img, "@")+1:]
			if id := got.Status.ContainerStatuses[0].ImageID; !strings.HasSuffix(id, want) {
				t.Errorf("container imageID %q, want one ending in %s", id, want)
			}
			return d
		})
	})

	t.Run("PodReachesAPIServerAndRegistry", func(t *testing.T) {
		// Slipway runs in a pod: it needs the API server through the kubernetes Service (VIP, via
		// kube-proxy) with its service-account token, and the registry at the address the node
		// pulls from, both with verified TLS. The probe is a static Go program shipped in an
		// image pushed by the test.
		img := pushProbeImage(t, c)
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "registry-ca"},
			Data:       map[string]string{"ca.crt": string(c.RegistryCA)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating registry CA ConfigMap: %v", err)
		}
		pod := basePod("reach", img)
		pod.Spec.AutomountServiceAccountToken = ptr(true)
		pod.Spec.Volumes = []corev1.Volume{{Name: "registry-ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}},
		}}}
		pod.Spec.Containers[0].Args = []string{c.Registry, "/etc/slipway/registry/ca.crt"}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "registry-ca", MountPath: "/etc/slipway/registry", ReadOnly: true}}
		runToSuccess(t, c, ns, pod)
		out := podLogs(t, c, ns, pod.Name, "main")
		if !strings.Contains(out, `"kind":"APIVersions"`) || !strings.Contains(out, "registry "+c.Registry) {
			t.Errorf("probe output %q, want the API server's APIVersions and the registry's answer", out)
		}
	})

	t.Run("UserNamespacedPod", func(t *testing.T) {
		if !c.SupportsUserNamespaces() {
			t.Skipf("runtime %s cannot run hostUsers: false pods", c.Runtime)
		}
		// The preferred build-pod shape: its own user namespace with an unmasked /proc, so that a
		// nested user+pid namespace can mount a fresh /proc (BuildKit's process sandbox).
		timings(t, runs, func(t *testing.T, i int) time.Duration {
			pod := basePod(fmt.Sprintf("userns-%d", i), c.TestImage)
			hostUsers := false
			unmasked := corev1.UnmaskedProcMount
			pod.Spec.HostUsers = &hostUsers
			sc := nonRoot()
			sc.ProcMount = &unmasked
			sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			pod.Spec.Containers[0].SecurityContext = sc
			pod.Spec.Containers[0].Command = []string{"sh", "-c", `set -e
read inside outside count </proc/self/uid_map
echo "uid_map: $inside $outside $count"
[ "$inside" = 0 ] && [ "$outside" != 0 ] && [ "$count" = 65536 ]
unshare -Urpf --mount-proc sh -c 'echo fresh-proc-ok pid=$$$$'`} // $$ is Kubernetes' escape for $

			d := runToSuccess(t, c, ns, pod)
			if out := podLogs(t, c, ns, pod.Name, "main"); !strings.Contains(out, "fresh-proc-ok pid=1") {
				t.Errorf("output %q, want fresh-proc-ok pid=1", out)
			}
			return d
		})
	})
}

// pushProbeImage builds testdata/probe as a static binary and pushes it as a one-file image that
// runs as uid 1000.
func pushProbeImage(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "probe")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building probe: %v\n%s", err, out)
	}
	content, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.PushImage(t.Context(), "slipway-e2e/probe", "latest",
		[]cluster.File{{Path: "/probe", Mode: 0o755, Content: content}}, []string{"/probe"}, "1000")
	if err != nil {
		t.Fatalf("pushing probe image: %v", err)
	}
	return img
}

func startCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Log: testLogWriter{t}})
	if err != nil {
		t.Fatalf("test cluster: %v", err)
	}
	t.Logf("cluster: runtime %s, node %s, API %s, registry %s", c.Runtime, c.Node, c.Config.Host, c.Registry)
	return c
}

// createNamespace makes a namespace for this test run and deletes it afterwards.
func createNamespace(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-smoke-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Logf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	// Pods are refused until the controller-manager has created the default ServiceAccount.
	waitFor(t, 30*time.Second, "default ServiceAccount in "+ns.Name, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return ns.Name
}

func smokeRuns(t *testing.T) int {
	v := os.Getenv("SLIPWAY_E2E_RUNS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("SLIPWAY_E2E_RUNS=%q: want a positive integer", v)
	}
	return n
}

// basePod is a pod in Slipway's build-pod style: no service-account token, non-root, no
// privilege escalation, no capabilities, a deadline and resource limits.
func basePod(name, image string) *corev1.Pod {
	automount := false
	deadline := int64(120)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &automount,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: ptr(int64(10)),
			Containers: []corev1.Container{{
				Name: "main", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				SecurityContext: nonRoot(),
				Resources:       smallResources(),
			}},
		},
	}
}

func nonRoot() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr(int64(1000)),
		RunAsGroup:               ptr(int64(1000)),
		RunAsNonRoot:             ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}
