//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

// TestBuildPod runs the build pod exactly as the controller makes it (podspec.Pod) in both shapes:
// rootless buildkitd as a native sidecar from Slipway's BuildKit image and `slipway build` from the
// builder image fetch a commit from the git server, build it on a base image from the TLS registry
// and push. Checks: the pod Succeeds with the sidecar stopped, the digest in the termination
// message is the registry's, and a canary pod runs the pushed image by digest. The RUN step's PID
// proves the shape: 1 with BuildKit's process sandbox (user-namespaced pods), not 1 without.
//
// SLIPWAY_E2E_RUNS=N builds N pods per shape and logs the medians of pod create → builder started
// and → Succeeded.
func TestBuildPod(t *testing.T) {
	c := startCluster(t)
	e := newBuildNamespace(t, c, "e2e-buildpod-")
	runs := smokeRuns(t)
	pods := watchPods(t, c, e.Name)

	for _, shape := range []podspec.Shape{podspec.ShapeUserNamespace, podspec.ShapeRootless} {
		t.Run(string(shape), func(t *testing.T) {
			if shape == podspec.ShapeUserNamespace && !c.SupportsUserNamespaces() {
				t.Skipf("runtime %s cannot run hostUsers: false pods", c.Runtime)
			}
			var toStart, toDone []time.Duration
			for i := range runs {
				s, d := buildPodOnce(t, e, pods, shape, i)
				if t.Failed() {
					return
				}
				toStart, toDone = append(toStart, s), append(toDone, d)
			}
			t.Logf("%s shape, %d pods: create -> builder started median %v (%s); create -> Succeeded median %v (%s)",
				shape, runs, median(toStart), join(toStart), median(toDone), join(toDone))
		})
	}
}

// buildPodOnce builds one commit in one pod and returns pod create → builder started and →
// Succeeded.
func buildPodOnce(t *testing.T, e *cluster.BuildNamespace, pods *cluster.PodWatch, shape podspec.Shape, i int) (time.Duration, time.Duration) {
	t.Helper()
	ctx := t.Context()
	nonce := cluster.RandomHex(6)
	repo := fmt.Sprintf("app-%s-%d-%s", shape, i, nonce)
	cloneURL, sha, err := e.NewRepo(ctx, repo, e.Dockerfile(""), "hello from "+nonce)
	if err != nil {
		t.Fatal(err)
	}

	// The Build exists in the API (the pod's owner reference must point at a live object, or the
	// garbage collector deletes the pod), but no controller runs here: the test plays its part.
	b := e.NewBuild(repo, repo, cloneURL, sha)
	if err := e.Kube.Create(ctx, b); err != nil {
		t.Fatalf("creating Build: %v", err)
	}
	refs, err := podspec.ImageRefs(b, e.RegistryPrefix())
	if err != nil {
		t.Fatal(err)
	}
	tokenSecret := b.Name + "-git"
	if _, err := e.Cluster.Client.CoreV1().Secrets(e.Name).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenSecret},
		Data:       map[string][]byte{podspec.GitTokenKey: []byte(e.Token)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := podspec.Pod(podspec.Input{Build: b, Refs: refs, GitTokenSecret: tokenSecret, Push: true}, e.PodSettings(shape))

	created := time.Now()
	toDone := runToSuccess(t, e.Cluster, e.Name, pod)
	got, err := e.Cluster.Client.CoreV1().Pods(e.Name).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	startedAt, ok := pods.BuilderStarted(string(got.UID))
	if !ok {
		t.Fatalf("the pod watch never saw the builder of %s start", pod.Name)
	}

	// The sidecar was stopped by the kubelet once the builder exited (it handles SIGTERM: the
	// pod completed well inside the 30 s grace period). rootlesskit forwards the signal;
	// buildkitd shuts down and exits 1 ("got SIGTERM/SIGINT, forcing shutdown", as upstream's
	// image does), which does not affect the pod's phase.
	if st := got.Status.InitContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil {
		t.Errorf("buildkitd status %+v, want terminated", st)
	} else if term := st[0].State.Terminated; term.FinishedAt.Sub(got.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Time) > 5*time.Second {
		t.Errorf("buildkitd stopped %v after the builder: it does not handle SIGTERM promptly",
			term.FinishedAt.Sub(got.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Time))
	}

	res := builderResult(t, got)
	if res.Outcome != buildresult.Succeeded || res.Digest == "" {
		t.Fatalf("builder result %+v, want Succeeded with a digest", res)
	}
	want, err := e.Cluster.ManifestDigest(ctx, refs.Image+":"+sha)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != want {
		t.Errorf("termination message digest %s, registry has %s", res.Digest, want)
	}
	if !slices.Contains(res.Tags, refs.Image+":main") {
		t.Errorf("pushed tags %v, want %s:main among them", res.Tags, refs.Image)
	}

	out := runCanary(t, e.Cluster, e.Name, "canary-"+pod.Name, refs.Image+"@"+res.Digest)
	if !strings.Contains(out, "hello from "+nonce) {
		t.Errorf("canary output %q, want the commit's greeting", out)
	}
	sandboxed := strings.Contains(out, "pid=1 ")
	if want := shape == podspec.ShapeUserNamespace; sandboxed != want {
		t.Errorf("RUN step saw %q; process sandbox (PID 1 in the step) = %v, want %v for shape %s", strings.TrimSpace(out), sandboxed, want, shape)
	}
	t.Logf("%s: pod create -> builder started %v, -> Succeeded %v; builder timings %+v; %s",
		pod.Name, startedAt.Sub(created).Round(time.Millisecond), toDone.Round(time.Millisecond), res.Timings, strings.ReplaceAll(strings.TrimSpace(out), "\n", " | "))
	return startedAt.Sub(created), toDone
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

func join(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(parts, ", ")
}
