//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

// runToSuccess creates pod in ns and waits for it to reach Succeeded; it returns the time from the
// create call to the observed phase (polled every 100 ms). On failure it logs the pod's state,
// events and logs.
func runToSuccess(t *testing.T, c *cluster.Cluster, ns string, pod *corev1.Pod) time.Duration {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s: %v", pod.Name, err)
	}
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil // transient: retry until the timeout
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	elapsed := time.Since(start)
	if err != nil || phase != corev1.PodSucceeded {
		dumpPod(t, c, ns, pod.Name)
		t.Fatalf("pod %s: phase %q after %v (%v), want Succeeded", pod.Name, phase, elapsed.Round(time.Millisecond), err)
	}
	return elapsed
}

// timings runs one pod scenario n times and logs each duration and the median.
func timings(t *testing.T, n int, run func(t *testing.T, i int) time.Duration) {
	t.Helper()
	var ds []time.Duration
	for i := range n {
		ds = append(ds, run(t, i))
		if t.Failed() {
			return
		}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	t.Logf("create -> Succeeded: median %v over %d (%s)", sorted[len(sorted)/2].Round(time.Millisecond), n, strings.Join(parts, ", "))
}

func podLogs(t *testing.T, c *cluster.Cluster, ns, pod, container string) string {
	t.Helper()
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(t.Context())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", pod, container, err)
	}
	return string(b)
}

// dumpPod logs what explains a pod that did not succeed.
func dumpPod(t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Logf("pod %s: %v", name, err)
		return
	}
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		t.Logf("container %s: ready=%v restarts=%d state=%+v", s.Name, s.Ready, s.RestartCount, s.State)
	}
	evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err == nil {
		for _, e := range evs.Items {
			t.Logf("event %s %s: %s", e.Type, e.Reason, e.Message)
		}
	}
	for _, ctr := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		b, err := c.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: ctr.Name}).DoRaw(ctx)
		t.Logf("logs of %s (err %v):\n%s", ctr.Name, err, b)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func smallResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
}

func ptr[T any](v T) *T { return &v }

// testLogWriter sends up.sh's output to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
