//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

// TestController runs `slipway serve` (intake + controller, leader-elected) outside the cluster
// against it, with Slipway's images, and drives it with Builds: success with the registry's digest
// and timings, a failing Dockerfile, supersede, and a kill -9 in the middle of a build.
func TestController(t *testing.T) {
	c := startCluster(t)
	e := newBuildNamespace(t, c, "e2e-controller-")
	pods := watchPods(t, c, e.Name)
	shape := podspec.ShapeRootless
	if c.SupportsUserNamespaces() {
		shape = podspec.ShapeUserNamespace
	}
	dir := t.TempDir()
	listen, secretFile, err := cluster.ServeFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.ServeConfig(listen, secretFile, shape)
	cfg.Controller.MaxRunning, cfg.Controller.MaxRunningPerRepo = 4, 2
	srv, err := e.StartServe(t.Context(), dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("slipway serve log (tail):\n%s", srv.LogTail(16384))
		}
	})
	t.Logf("slipway serve (pid %d, %s shape) on %s, namespace %s", srv.PID(), shape, listen, e.Name)

	t.Run("Parallel", func(t *testing.T) {
		t.Run("Succeeds", func(t *testing.T) {
			t.Parallel()
			testBuildSucceeds(t, e, pods)
		})
		t.Run("FailingDockerfile", func(t *testing.T) {
			t.Parallel()
			testBuildFails(t, e)
		})
		t.Run("Supersede", func(t *testing.T) {
			t.Parallel()
			testSupersede(t, e)
		})
	})
	// Alone: it kills the controller the others depend on.
	t.Run("KillDuringBuild", func(t *testing.T) { testKillDuringBuild(t, e, pods, srv) })
}

// testBuildSucceeds applies a Build with kubectl, as a person would, and checks the outcome
// against the registry.
func testBuildSucceeds(t *testing.T, e *cluster.BuildNamespace, pods *cluster.PodWatch) {
	ctx := t.Context()
	nonce := cluster.RandomHex(6)
	repo := "ok-" + nonce
	cloneURL, sha, err := e.NewRepo(ctx, repo, e.Dockerfile(""), "hello from "+nonce)
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBuild(repo, repo, cloneURL, sha)
	manifest, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "build.yaml")
	if err := os.WriteFile(f, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := e.Cluster.Env["SLIPWAY_CLUSTER_KUBECTL"]
	if kubectl == "" {
		kubectl = "kubectl"
	}
	created := time.Now()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", e.Cluster.Kubeconfig, "apply", "-f", f)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}

	got := waitBuild(t, e, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseSucceeded {
		dumpPod(t, e.Cluster, e.Name, b.Name)
		t.Fatalf("Build %s: %s (%s: %s), want Succeeded", b.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	took := time.Since(created)
	refs, err := podspec.ImageRefs(got, e.RegistryPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Cluster.ManifestDigest(ctx, refs.Image+":"+sha)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Digest != want {
		t.Errorf("status.digest %s, registry has %s", got.Status.Digest, want)
	}
	if !slices.Contains(got.Status.Tags, refs.Image+":"+sha) {
		t.Errorf("status.tags %v, want %s:%s among them", got.Status.Tags, refs.Image, sha)
	}
	for _, k := range []string{"queued", "fetch", "solve", "push", "build"} {
		if _, ok := got.Status.Timings[k]; !ok {
			t.Errorf("status.timings lacks %q: %v", k, got.Status.Timings)
		}
	}
	if got.Status.StartTime == nil || got.Status.CompletionTime == nil || got.Status.PodName != b.Name {
		t.Errorf("status startTime %v, completionTime %v, podName %q", got.Status.StartTime, got.Status.CompletionTime, got.Status.PodName)
	}
	if phases := transitionPhases(got); !slices.Equal(phases, []v1alpha1.Phase{v1alpha1.PhaseQueued, v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseSucceeded}) {
		t.Errorf("transitions %v, want Queued, Pending, Running, Succeeded", phases)
	}
	if uids := pods.UIDs(b.Name); len(uids) != 1 {
		t.Errorf("pods created for the Build: %v, want exactly one", uids)
	}
	if out := runCanary(t, e.Cluster, e.Name, "canary-"+repo, refs.Image+"@"+got.Status.Digest); !strings.Contains(out, "hello from "+nonce) {
		t.Errorf("canary output %q, want the commit's greeting", out)
	}
	t.Logf("Build %s Succeeded %v after kubectl apply; digest %s; timings %s", b.Name, took.Round(time.Millisecond), got.Status.ShortDigest, timingsString(got))
}

// testBuildFails: a RUN step exits 3; the Build fails with the builder's reason and the step.
func testBuildFails(t *testing.T, e *cluster.BuildNamespace) {
	ctx := t.Context()
	repo := "fail-" + cluster.RandomHex(6)
	cloneURL, sha, err := e.NewRepo(ctx, repo, e.Dockerfile("RUN echo about to fail && exit 3\n"), "unused")
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBuild(repo, repo, cloneURL, sha)
	if err := e.Kube.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := waitBuild(t, e, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseFailed || got.Status.Reason != "BuildFailed" {
		t.Fatalf("Build %s: %s/%s (%s), want Failed/BuildFailed", b.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	f := got.Status.Failure
	if f == nil || !strings.Contains(f.Step, "exit 3") || f.ExitCode != 3 {
		t.Fatalf("status.failure %+v, want the step with `exit 3` and exit code 3", f)
	}
	if got.Status.Digest != "" {
		t.Errorf("a failed build has digest %s", got.Status.Digest)
	}
	t.Logf("Build %s Failed: step %q line %d exit %d; message %q", b.Name, f.Step, f.Line, f.ExitCode, got.Status.Message)
}

// testSupersede: a newer Build of the same branch cancels the running one, whose pod goes away.
func testSupersede(t *testing.T, e *cluster.BuildNamespace) {
	ctx := t.Context()
	repo := "super-" + cluster.RandomHex(6)
	cloneURL, sha1, err := e.NewRepo(ctx, repo, e.Dockerfile("RUN sleep 120\n"), "first")
	if err != nil {
		t.Fatal(err)
	}
	first := e.NewBuild(repo+"-1", repo, cloneURL, sha1)
	if err := e.Kube.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitBuild(t, e, first.Name, 2*time.Minute, func(b *v1alpha1.Build) bool {
		return b.Status.Phase == v1alpha1.PhaseRunning || b.Status.Phase.Terminal()
	})

	sha2, err := e.Commit(ctx, repo, e.Dockerfile(""), "second")
	if err != nil {
		t.Fatal(err)
	}
	second := e.NewBuild(repo+"-2", repo, cloneURL, sha2)
	if err := e.Kube.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	canceledAt := time.Now()
	got := waitBuild(t, e, first.Name, time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseCanceled || got.Status.SupersededBy != second.Name {
		t.Fatalf("first Build: %s (%s: %s), supersededBy %q; want Canceled by %s", got.Status.Phase, got.Status.Reason, got.Status.Message, got.Status.SupersededBy, second.Name)
	}
	// The pod is deleted with a short grace period; the builder and buildkitd handle SIGTERM.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := e.Cluster.Client.CoreV1().Pods(e.Name).Get(ctx, first.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("the superseded Build's pod is still there: %v", err)
	}
	podGone := time.Since(canceledAt)
	got2 := waitBuild(t, e, second.Name, 3*time.Minute, terminal)
	if got2.Status.Phase != v1alpha1.PhaseSucceeded {
		dumpPod(t, e.Cluster, e.Name, second.Name)
		t.Fatalf("second Build: %s (%s: %s), want Succeeded", got2.Status.Phase, got2.Status.Reason, got2.Status.Message)
	}
	t.Logf("first Build %s (%s), its pod gone %v after the second was created", got.Status.Phase, got.Status.Message, podGone.Round(time.Millisecond))
}

// testKillDuringBuild kills the controller with SIGKILL right after it admitted a Build (racing
// with the pod's creation), starts it again, and checks that the Build completes with one pod ever
// created and every transition recorded once. The restarted process first waits for the dead
// leader's Lease to expire, so the build is well under way when it takes over.
func testKillDuringBuild(t *testing.T, e *cluster.BuildNamespace, pods *cluster.PodWatch, srv *cluster.Serve) {
	ctx := t.Context()
	repo := "kill-" + cluster.RandomHex(6)
	cloneURL, sha, err := e.NewRepo(ctx, repo, e.Dockerfile("RUN sleep 20\n"), "survived")
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBuild(repo, repo, cloneURL, sha)
	if err := e.Kube.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitBuild(t, e, b.Name, time.Minute, func(b *v1alpha1.Build) bool { return b.Status.Phase != "" && b.Status.Phase != v1alpha1.PhaseQueued })
	killed := time.Now()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	var seen v1alpha1.Build
	_ = e.Kube.Get(ctx, client.ObjectKeyFromObject(b), &seen)
	t.Logf("killed the controller (SIGKILL) with the Build %s, pods so far %v", seen.Status.Phase, pods.UIDs(b.Name))
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	got := waitBuild(t, e, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseSucceeded {
		dumpPod(t, e.Cluster, e.Name, b.Name)
		t.Fatalf("Build %s after the restart: %s (%s: %s), want Succeeded", b.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	if uids := pods.UIDs(b.Name); len(uids) != 1 {
		t.Errorf("pods ever created for the Build: %v, want exactly one", uids)
	}
	if phases := transitionPhases(got); !slices.Equal(phases, []v1alpha1.Phase{v1alpha1.PhaseQueued, v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseSucceeded}) {
		t.Errorf("transitions %v, want Queued, Pending, Running, Succeeded once each", phases)
	}
	if got.Status.Digest == "" {
		t.Error("no digest after the restart")
	}
	t.Logf("Build %s Succeeded %v after the kill; one pod; timings %s", b.Name, time.Since(killed).Round(time.Millisecond), timingsString(got))
}

func terminal(b *v1alpha1.Build) bool { return b.Status.Phase.Terminal() }

// waitBuild polls a Build until cond holds and returns it.
func waitBuild(t *testing.T, e *cluster.BuildNamespace, name string, timeout time.Duration, cond func(*v1alpha1.Build) bool) *v1alpha1.Build {
	t.Helper()
	var b v1alpha1.Build
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.Kube.Get(ctx, client.ObjectKey{Namespace: e.Name, Name: name}, &b); err != nil {
			return false, nil
		}
		return cond(&b), nil
	})
	if err != nil {
		dumpPod(t, e.Cluster, e.Name, name)
		t.Fatalf("Build %s: phase %q (%s: %s) after %v: %v", name, b.Status.Phase, b.Status.Reason, b.Status.Message, timeout, err)
	}
	return &b
}

func transitionPhases(b *v1alpha1.Build) []v1alpha1.Phase {
	var ps []v1alpha1.Phase
	for _, tr := range b.Status.Transitions {
		ps = append(ps, tr.Phase)
	}
	return ps
}

func timingsString(b *v1alpha1.Build) string {
	keys := make([]string, 0, len(b.Status.Timings))
	for k := range b.Status.Timings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, b.Status.Timings[k].Duration)
	}
	return strings.Join(parts, " ")
}
