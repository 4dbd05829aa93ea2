//go:build e2e

package e2e

// Shared setup of the tests that run Slipway's own images and code on the cluster: the images,
// the Build CRD, and a build namespace (see cluster.BuildNamespace).

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

var (
	imagesOnce sync.Once
	images     cluster.Images
	imagesErr  error
	crdsOnce   sync.Once
	crdsErr    error
)

// slipwayImages builds (if needed) and pushes Slipway's images once per test binary.
func slipwayImages(t *testing.T, c *cluster.Cluster) cluster.Images {
	t.Helper()
	imagesOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		defer cancel()
		start := time.Now()
		images, imagesErr = c.SlipwayImages(ctx, cluster.Options{})
		if imagesErr == nil {
			t.Logf("Slipway images ready in %v: server %s, builder %s, buildkit %s", time.Since(start).Round(time.Millisecond), images.Server, images.Builder, images.BuildKit)
		}
	})
	if imagesErr != nil {
		t.Fatalf("Slipway images: %v", imagesErr)
	}
	return images
}

func installCRDs(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	crdsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		crdsErr = c.InstallCRDs(ctx, filepath.Join("..", "..", "charts", "slipway", "crds"))
	})
	if crdsErr != nil {
		t.Fatalf("installing CRDs: %v", crdsErr)
	}
}

// newBuildNamespace prepares a build namespace with a git server, deleted after the test.
func newBuildNamespace(t *testing.T, c *cluster.Cluster, prefix string) *cluster.BuildNamespace {
	t.Helper()
	im := slipwayImages(t, c)
	installCRDs(t, c)
	b, err := c.NewBuildNamespace(t.Context(), prefix, im, t.TempDir())
	if err != nil {
		t.Fatalf("build namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Logf("deleting namespace %s: %v", b.Name, err)
		}
	})
	return b
}

func watchPods(t *testing.T, c *cluster.Cluster, ns string) *cluster.PodWatch {
	t.Helper()
	w, err := c.WatchPods(t.Context(), ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// builderResult decodes the builder's JSON result from its termination message.
func builderResult(t *testing.T, pod *corev1.Pod) buildresult.Result {
	t.Helper()
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == podspec.BuilderName && s.State.Terminated != nil {
			var r buildresult.Result
			if err := json.Unmarshal([]byte(s.State.Terminated.Message), &r); err != nil {
				t.Fatalf("builder termination message %q: %v", s.State.Terminated.Message, err)
			}
			return r
		}
	}
	t.Fatalf("pod %s: builder has not terminated", pod.Name)
	return buildresult.Result{}
}

// runCanary runs image (by digest) in a pod as uid 1000 and returns its output: the kubelet must
// pull what the builder pushed.
func runCanary(t *testing.T, c *cluster.Cluster, ns, name, image string) string {
	t.Helper()
	pod := basePod(name, image)
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	runToSuccess(t, c, ns, pod)
	return podLogs(t, c, ns, name, "main")
}
