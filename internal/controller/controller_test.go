package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/controller"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/apiserver"
)

var env *apiserver.Env

func TestMain(m *testing.M) {
	os.Exit(apiserver.RunTests(m, func(e *apiserver.Env) { env = e }))
}

// clock is a settable clock shared by the test and the reconciler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	ns    string
	clock *clock
	opts  controller.Options
}

func newFixture(t *testing.T, mutate func(*controller.Options)) *fixture {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctrl-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs in envtest, so create the ServiceAccount admission expects.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
	if err := env.Client.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	o := controller.Options{
		Pod: podspec.Settings{
			Shape: podspec.ShapeRootless, BuilderImage: "registry.test/slipway:dev", BuildKitImage: "registry.test/buildkit:rootless",
			DefaultTimeout: 30 * time.Minute, RegistryPrefix: "registry.test/builds",
		},
		Supersede:   controller.DefaultSupersede(),
		Waits:       controller.Waits{ImagePull: 2 * time.Minute, Unschedulable: 5 * time.Minute},
		CancelGrace: 10 * time.Second,
		Now:         c.Now,
	}
	if mutate != nil {
		mutate(&o)
	}
	return &fixture{ns: ns.Name, clock: c, opts: o}
}

// start runs a manager with the reconciler until the returned stop is called.
func (f *fixture) start(t *testing.T, leaderElection bool) (stop func()) {
	t.Helper()
	return f.startAs(t, env.Config, leaderElection)
}

func (f *fixture) startAs(t *testing.T, cfg *rest.Config, leaderElection bool) (stop func()) {
	t.Helper()
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        env.Scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		LeaderElection:                leaderElection,
		LeaderElectionID:              "slipway-controller",
		LeaderElectionNamespace:       f.ns,
		LeaseDuration:                 durationPtr(3 * time.Second),
		RenewDeadline:                 durationPtr(2 * time.Second),
		RetryPeriod:                   durationPtr(200 * time.Millisecond),
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controller.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("slipway"), Log: slog.New(slog.DiscardHandler), Opts: f.opts,
	}
	if err := controller.Setup(context.Background(), mgr, r); err != nil {
		t.Fatal(err)
	}
	return apiserver.RunManager(t, mgr)
}

func durationPtr(d time.Duration) *time.Duration { return &d }

var shaN = 0

func (f *fixture) build(t *testing.T, name, repo, ref string, ev v1alpha1.Event, mutate func(*v1alpha1.Build)) *v1alpha1.Build {
	t.Helper()
	shaN++
	b := &v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{
				Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: repo,
				CloneURL: "https://github.com/" + repo + ".git", Commit: fmt.Sprintf("%040x", shaN),
				Ref: ref, Event: ev, DefaultBranch: "main",
			},
			Target: v1alpha1.Target{Name: "default"},
		},
	}
	if ev == v1alpha1.EventPullRequest {
		b.Spec.Source.Number = 7
	}
	if mutate != nil {
		mutate(b)
	}
	if err := env.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) get(t *testing.T, name string) *v1alpha1.Build {
	t.Helper()
	var b v1alpha1.Build
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &b); err != nil {
		t.Fatal(err)
	}
	return &b
}

func (f *fixture) waitPhase(t *testing.T, name string, phase v1alpha1.Phase) *v1alpha1.Build {
	t.Helper()
	var b *v1alpha1.Build
	eventually(t, fmt.Sprintf("%s reaches %s", name, phase), func() bool {
		b = f.get(t, name)
		return b.Status.Phase == phase
	})
	return b
}

func (f *fixture) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	eventually(t, "pod "+name+" exists", func() bool {
		p = &corev1.Pod{}
		return env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, p) == nil
	})
	return p
}

func (f *fixture) podGone(t *testing.T, name string) {
	t.Helper()
	eventually(t, "pod "+name+" is gone", func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &corev1.Pod{})
		return apierrors.IsNotFound(err)
	})
}

// setPodStatus plays the kubelet: envtest has none.
func (f *fixture) setPodStatus(t *testing.T, name string, mutate func(*corev1.PodStatus)) {
	t.Helper()
	p := f.pod(t, name)
	mutate(&p.Status)
	if err := env.Client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// kubelet-like status fragments.
func scheduled(at time.Time) func(*corev1.PodStatus) {
	return func(s *corev1.PodStatus) {
		s.Phase = corev1.PodPending
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}}
	}
}

func running(at time.Time) func(*corev1.PodStatus) {
	return func(s *corev1.PodStatus) {
		scheduled(at.Add(-2 * time.Second))(s)
		s.Phase = corev1.PodRunning
		s.InitContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuildKitName, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at.Add(-time.Second))}}}}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuilderName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}}}}
	}
}

func terminated(at time.Time, exit int32, reason string, res *buildresult.Result) func(*corev1.PodStatus) {
	return func(s *corev1.PodStatus) {
		running(at.Add(-10 * time.Second))(s)
		msg := ""
		if res != nil {
			b, _ := buildresult.Encode(*res)
			msg = string(b)
		}
		s.Phase = corev1.PodSucceeded
		if exit != 0 {
			s.Phase = corev1.PodFailed
		}
		s.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: exit, Reason: reason, Message: msg,
			StartedAt: metav1.NewTime(at.Add(-10 * time.Second)), FinishedAt: metav1.NewTime(at)}}
	}
}

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestHappyPath(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t, false)
	f.build(t, "b1", "acme/app", "refs/heads/main", v1alpha1.EventPush, func(b *v1alpha1.Build) {
		b.Spec.Target.Timeout = &metav1.Duration{Duration: 7 * time.Minute}
	})
	f.waitPhase(t, "b1", v1alpha1.PhasePending)
	pod := f.pod(t, "b1")
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Name != "b1" || pod.Labels[podspec.LabelBuild] != "b1" {
		t.Fatalf("pod not owned and labelled: %+v %v", pod.OwnerReferences, pod.Labels)
	}
	if *pod.Spec.ActiveDeadlineSeconds != 420 {
		t.Fatalf("deadline %d, want the target's 7m", *pod.Spec.ActiveDeadlineSeconds)
	}
	now := pod.CreationTimestamp.Add(5 * time.Second)
	f.setPodStatus(t, "b1", running(now))
	b := f.waitPhase(t, "b1", v1alpha1.PhaseRunning)
	if b.Status.StartTime == nil || !b.Status.StartTime.Time.Equal(now.Truncate(time.Second)) {
		t.Fatalf("start time %v, want the builder's start %v", b.Status.StartTime, now)
	}
	res := &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest, Tags: []string{"registry.test/builds/acme/app:x"},
		Timings: buildresult.Timings{Daemon: 300, Fetch: 200, Solve: 4000, Push: 500}, Steps: buildresult.Steps{Total: 7, Cached: 3}}
	f.setPodStatus(t, "b1", terminated(now.Add(10*time.Second), 0, "Completed", res))
	b = f.waitPhase(t, "b1", v1alpha1.PhaseSucceeded)
	if b.Status.Digest != digest || b.Status.ShortDigest != "0123456789ab" || b.Status.Steps == nil || b.Status.Steps.Cached != 3 {
		t.Fatalf("status %+v", b.Status)
	}
	for _, k := range []string{"queued", "schedule", "imagePull", "daemonStart", "fetch", "solve", "push", "build"} {
		if _, ok := b.Status.Timings[k]; !ok {
			t.Errorf("timing %q missing: %v", k, b.Status.Timings)
		}
	}
	var phases []v1alpha1.Phase
	for _, tr := range b.Status.Transitions {
		phases = append(phases, tr.Phase)
	}
	if fmt.Sprint(phases) != "[Queued Pending Running Succeeded]" {
		t.Fatalf("transitions %v", phases)
	}
	if b.Status.CompletionTime == nil {
		t.Fatal("no completion time")
	}
}

func TestFailureModes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drive  func(t *testing.T, f *fixture)
		reason string
		phase  v1alpha1.Phase
	}{
		{"build step fails", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", terminated(f.clock.Now(), buildresult.ExitBuildFailed, "Error", &buildresult.Result{
				Outcome: buildresult.BuildFailed, Failure: &buildresult.Failure{Step: "[build 2/3] RUN make", Line: 4, ExitCode: 2, Message: "make: *** failed"}}))
		}, "BuildFailed", v1alpha1.PhaseFailed},
		{"push fails, exit code only", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", terminated(f.clock.Now(), buildresult.ExitPushFailed, "Error", nil))
		}, "PushFailed", v1alpha1.PhaseFailed},
		{"OOM killed", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", terminated(f.clock.Now(), 137, "OOMKilled", nil))
		}, controller.ReasonOOMKilled, v1alpha1.PhaseFailed},
		{"deadline exceeded", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", func(s *corev1.PodStatus) {
				running(f.clock.Now())(s)
				s.Phase, s.Reason = corev1.PodFailed, "DeadlineExceeded"
				s.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}
			})
		}, controller.ReasonDeadlineExceeded, v1alpha1.PhaseFailed},
		{"node lost", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", func(s *corev1.PodStatus) { s.Phase, s.Reason = corev1.PodUnknown, "NodeLost" })
		}, controller.ReasonPodLost, v1alpha1.PhaseFailed},
		{"pod deleted by someone", func(t *testing.T, f *fixture) {
			f.pod(t, "b")
			eventually(t, "PodCreated recorded", func() bool { return len(f.get(t, "b").Status.Conditions) > 0 })
			if err := env.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: f.ns}},
				client.GracePeriodSeconds(0)); err != nil {
				t.Fatal(err)
			}
		}, controller.ReasonPodLost, v1alpha1.PhaseFailed},
		{"image pull back-off past the bound", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", func(s *corev1.PodStatus) {
				scheduled(f.clock.Now())(s)
				s.InitContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuildKitName, Image: "registry.test/buildkit:rootless",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}}}}
			})
			// Within the bound the pod stays Pending (ObservePod's table covers it); past it:
			f.clock.Add(3 * time.Minute)
			f.touch(t, "b")
		}, controller.ReasonImagePullFailed, v1alpha1.PhaseFailed},
		{"unschedulable past the bound", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", func(s *corev1.PodStatus) {
				s.Phase = corev1.PodPending
				s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
					Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available", LastTransitionTime: metav1.NewTime(f.clock.Now())}}
			})
			f.clock.Add(6 * time.Minute)
			f.touch(t, "b")
		}, controller.ReasonUnschedulable, v1alpha1.PhaseFailed},
		{"stopped behind our back", func(t *testing.T, f *fixture) {
			f.setPodStatus(t, "b", terminated(f.clock.Now(), buildresult.ExitCanceled, "Error", &buildresult.Result{Outcome: buildresult.Canceled}))
		}, controller.ReasonStopped, v1alpha1.PhaseCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.start(t, false)
			f.build(t, "b", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
			f.waitPhase(t, "b", v1alpha1.PhasePending)
			tc.drive(t, f)
			b := f.waitPhase(t, "b", tc.phase)
			if b.Status.Reason != tc.reason || b.Status.Message == "" {
				t.Fatalf("reason %q message %q, want %q", b.Status.Reason, b.Status.Message, tc.reason)
			}
			if tc.reason == "BuildFailed" && (b.Status.Failure == nil || b.Status.Failure.Line != 4 || b.Status.Failure.Step == "") {
				t.Fatalf("failure details %+v", b.Status.Failure)
			}
			if tc.reason == controller.ReasonImagePullFailed || tc.reason == controller.ReasonUnschedulable {
				f.podGone(t, "b")
			}
		})
	}
}

// touch makes the reconciler look again (as a periodic resync or any pod event would).
func (f *fixture) touch(t *testing.T, name string) {
	t.Helper()
	p := &corev1.Pod{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, p); apierrors.IsNotFound(err) {
		return // already acted upon
	} else if err != nil {
		t.Fatal(err)
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations["test/touch"] = time.Now().String()
	if err := env.Client.Update(context.Background(), p); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		t.Fatal(err)
	}
}

func TestSupersede(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t, false)
	// Builds created in the same second are ordered by name, so "pr-2" is the newer one.
	f.build(t, "pr-1", "acme/app", "refs/pull/7/head", v1alpha1.EventPullRequest, nil)
	f.waitPhase(t, "pr-1", v1alpha1.PhasePending)
	f.setPodStatus(t, "pr-1", running(f.clock.Now()))
	f.waitPhase(t, "pr-1", v1alpha1.PhaseRunning)
	f.build(t, "pr-2", "acme/app", "refs/pull/7/head", v1alpha1.EventPullRequest, nil)
	old := f.waitPhase(t, "pr-1", v1alpha1.PhaseCanceled)
	if old.Status.SupersededBy != "pr-2" || old.Status.Reason != controller.ReasonSuperseded {
		t.Fatalf("pr-1: %+v", old.Status)
	}
	f.podGone(t, "pr-1")
	f.waitPhase(t, "pr-2", v1alpha1.PhasePending)

	// Tags are not superseded by default: both run.
	f.build(t, "t1", "acme/app", "refs/tags/v1", v1alpha1.EventTag, nil)
	f.build(t, "t2", "acme/app", "refs/tags/v1", v1alpha1.EventTag, nil)
	f.waitPhase(t, "t2", v1alpha1.PhasePending)
	f.waitPhase(t, "t1", v1alpha1.PhasePending)
}

func TestQuotaFIFOAndTimeoutClock(t *testing.T) {
	f := newFixture(t, func(o *controller.Options) { o.Limits = controller.Limits{MaxRunning: 2, MaxRunningPerRepo: 1} })
	f.start(t, false)
	// a1 and a2 share a repository (limit 1), b1 and c1 do not. Created in this order (names
	// break ties within a second), so FIFO is a1, a2, b1, c1.
	for _, n := range []struct{ name, repo string }{{"a1", "acme/a"}, {"a2", "acme/a"}, {"b1", "acme/b"}, {"c1", "acme/c"}} {
		f.build(t, n.name, n.repo, "refs/heads/"+n.name, v1alpha1.EventPush, nil)
	}
	f.waitPhase(t, "a1", v1alpha1.PhasePending)
	f.waitPhase(t, "b1", v1alpha1.PhasePending) // a2 is blocked by its repo, so b1 goes ahead
	for _, n := range []string{"a2", "c1"} {
		f.waitPhase(t, n, v1alpha1.PhaseQueued)
		// The timeout clock starts with the pod (activeDeadlineSeconds), and a queued build has
		// none: the slot is reserved before the pod is created.
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: n}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Fatalf("queued %s has a pod: %v", n, err)
		}
	}

	// The controller's clock stamps every transition. Moving it on before each release shows
	// when a waiting build was admitted: never before a slot was freed.
	f.clock.Add(time.Minute)
	freedA1 := f.clock.Now().Truncate(time.Second)
	f.setPodStatus(t, "a1", terminated(f.clock.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	a2 := f.waitPhase(t, "a2", v1alpha1.PhasePending) // older than c1, so it takes the slot
	f.clock.Add(time.Minute)
	freedB1 := f.clock.Now().Truncate(time.Second)
	f.setPodStatus(t, "b1", terminated(f.clock.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	c1 := f.waitPhase(t, "c1", v1alpha1.PhasePending)
	if at := entered(a2, v1alpha1.PhasePending); at.Before(freedA1) {
		t.Fatalf("a2 admitted at %v, before a1 freed its repository's slot at %v", at, freedA1)
	}
	if at := entered(c1, v1alpha1.PhasePending); at.Before(freedB1) {
		t.Fatalf("c1 admitted at %v, before a global slot was free at %v", at, freedB1)
	}
}

func entered(b *v1alpha1.Build, p v1alpha1.Phase) time.Time {
	for _, tr := range b.Status.Transitions {
		if tr.Phase == p {
			return tr.Time.Time
		}
	}
	return time.Time{}
}

// TestNodePools: a build of a matching repository gets its pool's shape and node selector.
func TestNodePools(t *testing.T) {
	f := newFixture(t, func(o *controller.Options) {
		o.Pools = []controller.Pool{{Name: "new", Shape: podspec.ShapeUserNamespace,
			NodeSelector: map[string]string{"slipway.dev/userns": "true"}, Repos: []string{"acme/*"}}}
	})
	f.start(t, false)
	f.build(t, "in", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
	f.build(t, "out", "other/app", "refs/heads/main", v1alpha1.EventPush, nil)
	in, out := f.pod(t, "in"), f.pod(t, "out")
	if in.Spec.HostUsers == nil || *in.Spec.HostUsers || in.Spec.NodeSelector["slipway.dev/userns"] != "true" || in.Labels[controller.LabelPool] != "new" {
		t.Fatalf("pool pod: hostUsers %v selector %v labels %v", in.Spec.HostUsers, in.Spec.NodeSelector, in.Labels)
	}
	if out.Spec.HostUsers != nil || len(out.Spec.NodeSelector) != 0 || out.Labels[controller.LabelPool] != "" {
		t.Fatalf("default pod: hostUsers %v selector %v", out.Spec.HostUsers, out.Spec.NodeSelector)
	}
}

// TestRestartConverges stops the manager mid-build, changes the pod, and starts a new one.
func TestRestartConverges(t *testing.T) {
	f := newFixture(t, nil)
	stop := f.start(t, false)
	f.build(t, "b", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
	f.waitPhase(t, "b", v1alpha1.PhasePending)
	pod := f.pod(t, "b")
	stop()
	f.setPodStatus(t, "b", terminated(f.clock.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	f.start(t, false)
	b := f.waitPhase(t, "b", v1alpha1.PhaseSucceeded)
	if again := f.pod(t, "b"); again.UID != pod.UID {
		t.Fatal("a second pod was created")
	}
	if n := len(b.Status.Transitions); n != 4 {
		t.Fatalf("%d transitions after restart: %+v", n, b.Status.Transitions)
	}
}

// TestLeaderElection runs two managers: one leads; when it stops, the other finishes the work.
func TestLeaderElection(t *testing.T) {
	f := newFixture(t, nil)
	stopA := f.start(t, true)
	f.build(t, "b", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
	f.waitPhase(t, "b", v1alpha1.PhasePending)
	f.start(t, true) // B waits for the lease
	stopA()          // releases the lease on cancel
	f.setPodStatus(t, "b", terminated(f.clock.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	b := f.waitPhase(t, "b", v1alpha1.PhaseSucceeded)
	if n := len(b.Status.Transitions); n != 4 {
		t.Fatalf("transitions %+v", b.Status.Transitions)
	}
}

func TestTokenSecretLifecycle(t *testing.T) {
	f := newFixture(t, func(o *controller.Options) { o.Tokens = staticToken("s3cr3t") })
	f.start(t, false)
	f.build(t, "b", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
	f.waitPhase(t, "b", v1alpha1.PhasePending)
	pod := f.pod(t, "b")
	var s corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "b-git"}, &s); err != nil {
		t.Fatal(err)
	}
	if string(s.Data["token"]) != "s3cr3t" || len(s.OwnerReferences) != 1 {
		t.Fatalf("secret %+v", s)
	}
	mounted := false
	for _, v := range pod.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "b-git")
	}
	if !mounted {
		t.Fatal("token secret not mounted")
	}
	f.setPodStatus(t, "b", terminated(f.clock.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	f.waitPhase(t, "b", v1alpha1.PhaseSucceeded)
	eventually(t, "token secret deleted", func() bool {
		return apierrors.IsNotFound(env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "b-git"}, &corev1.Secret{}))
	})
}

// TestLeastPrivilegeRBAC runs a whole build as a user holding only the generated role: a verb
// the controller uses but the role lacks fails this test.
func TestLeastPrivilegeRBAC(t *testing.T) {
	f := newFixture(t, func(o *controller.Options) { o.Tokens = staticToken("t"); o.PodRetention = time.Nanosecond })
	data, err := os.ReadFile("../../charts/slipway/files/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &role); err != nil {
		t.Fatal(err)
	}
	role.Name = "slipway-controller-" + f.ns
	ctx := context.Background()
	if err := env.Client.Create(ctx, &role); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + f.ns + ":slipway"
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "slipway", Namespace: f.ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: user}},
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	au, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.startAs(t, au.Config(), true)
	f.build(t, "b", "acme/app", "refs/heads/main", v1alpha1.EventPush, nil)
	f.waitPhase(t, "b", v1alpha1.PhasePending)
	f.setPodStatus(t, "b", terminated(time.Now(), 0, "Completed", &buildresult.Result{Outcome: buildresult.Succeeded, Digest: digest}))
	f.waitPhase(t, "b", v1alpha1.PhaseSucceeded)
	f.podGone(t, "b") // retention delete
	eventually(t, "an Event recorded", func() bool {
		var evs eventsv1.EventList
		return env.Client.List(ctx, &evs, client.InNamespace(f.ns)) == nil && len(evs.Items) > 0
	})
}

type staticToken string

func (s staticToken) CloneToken(context.Context, *v1alpha1.Build) (string, error) {
	return string(s), nil
}
