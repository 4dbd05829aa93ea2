// Package controller turns Builds into build pods and pod outcomes back into Build status.
// Every decision is a pure function (ObservePod, Admit, SupersededBy, podspec.Pod); this file
// only reads the world, calls them, and writes the result, so that a controller killed at any
// point converges on restart: all state lives in the API server.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/repoconfig"
	"github.com/slipway-dev/slipway/internal/requeue"
)

// Condition types on a Build.
const (
	// ConditionPodCreated is set once the pod was created, so that a pod missing afterwards is
	// known to be lost, not merely not yet created.
	ConditionPodCreated = "PodCreated"
)

// Options configure the Build reconciler.
type Options struct {
	Pod podspec.Settings
	// Pools route builds to node pools with their own pod shape; the first match wins and
	// unmatched builds use Pod as it is.
	Pools     []Pool
	Limits    Limits
	Supersede SupersedePolicy
	Waits     Waits
	// PodRetention is how long a finished pod (and so its log) is kept.
	PodRetention time.Duration
	// KeepPerRepo and KeepFor bound how many finished Builds are kept per repository, and for
	// how long. Zero means no bound.
	KeepPerRepo int
	KeepFor     time.Duration
	// CancelGrace is the grace period of a cancelled build pod; the builder handles SIGTERM.
	CancelGrace time.Duration
	// Tokens mints clone tokens; nil means public repositories only.
	Tokens forge.TokenSource
	// Resolver reads .slipway.yaml for trigger Builds; nil builds every trigger's default
	// target (Dockerfile at the root, image <prefix>/<owner>/<repo>).
	Resolver Resolver
	// Now is the clock, for tests.
	Now func() time.Time
}

// Reconciler reconciles Builds.
type Reconciler struct {
	Client client.Client
	// APIReader reads around the cache, to tell "pod not yet in the cache" from "pod gone".
	APIReader client.Reader
	Recorder  events.EventRecorder
	Log       *slog.Logger
	Opts      Options
}

// LabelPool names the node pool a build pod was routed to.
const LabelPool = "slipway.dev/pool"

// Field index over Builds used to find competitors quickly.
const indexSupersedeKey = "slipway.supersedeKey"

// requeueQueued is how often a waiting Build looks again even without an event; events from
// finishing Builds normally wake it first.
const requeueQueued = 10 * time.Second

// Reconcile implements reconcile.Reconciler. A write conflict (the reporter, another replica
// got there first) is retried quietly with fresh state.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return requeue.OnConflict(r.reconcile(ctx, req))
}

func (r *Reconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b v1alpha1.Build
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if b.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // the garbage collector removes the pod and Secret
	}
	now := r.Opts.Now()
	if b.Status.Phase.Terminal() {
		return r.finish(ctx, &b, now)
	}
	if b.IsTrigger() {
		resolver := r.Opts.Resolver
		if resolver == nil {
			resolver = repoconfig.Resolver{Files: repoconfig.Mux{}, Options: repoconfig.Options{RegistryPrefix: r.Opts.Pod.RegistryPrefix}}
		}
		return r.expand(ctx, &b, resolver)
	}
	if b.Status.Phase == "" {
		return ctrl.Result{}, r.transition(ctx, &b, v1alpha1.PhaseQueued, "Queued", "waiting for a build slot", now, nil)
	}

	var peers v1alpha1.BuildList
	if err := r.Client.List(ctx, &peers, client.InNamespace(b.Namespace), client.MatchingFields{indexSupersedeKey: SupersedeKey(&b)}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing builds of the same ref: %w", err)
	}
	if by := SupersededBy(&b, peers.Items, r.Opts.Supersede); by != nil {
		return ctrl.Result{}, r.cancel(ctx, &b, by, now)
	}

	switch b.Status.Phase {
	case v1alpha1.PhaseQueued:
		var all v1alpha1.BuildList
		if err := r.Client.List(ctx, &all); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing builds for admission: %w", err)
		}
		if !Admit(&b, all.Items, r.Opts.Limits) {
			return ctrl.Result{RequeueAfter: requeueQueued}, nil
		}
		// Reserve the slot first, then create the pod: a crash in between leaves a Pending
		// Build without PodCreated, which the next pass completes; the reverse order could
		// leave an untracked pod running past the limits.
		return ctrl.Result{}, r.transition(ctx, &b, v1alpha1.PhasePending, "Admitted", "creating the build pod", now, func(s *v1alpha1.BuildStatus) {
			s.PodName = b.Name
			setTiming(s, "queued", now.Sub(b.CreationTimestamp.Time))
		})
	}
	return r.track(ctx, &b, now)
}

// track creates the pod if it is not there yet and follows it.
func (r *Reconciler) track(ctx context.Context, b *v1alpha1.Build, now time.Time) (ctrl.Result, error) {
	pod, err := r.pod(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		if meta.IsStatusConditionTrue(b.Status.Conditions, ConditionPodCreated) {
			return ctrl.Result{}, r.transition(ctx, b, v1alpha1.PhaseFailed, ReasonPodLost, "the build pod was deleted before the build finished", now, nil)
		}
		return ctrl.Result{}, r.createPod(ctx, b, now)
	}
	if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		// Someone is deleting the pod; the builder gets SIGTERM and reports; wait for it.
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	o := ObservePod(pod, now, r.Opts.Waits)
	if o.DeletePod {
		if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting stuck pod: %w", err)
		}
	}
	if o.Phase == b.Status.Phase || o.Phase == "" || (o.Phase == v1alpha1.PhasePending && b.Status.Phase == v1alpha1.PhaseRunning) {
		return ctrl.Result{RequeueAfter: o.RecheckAfter}, nil
	}
	reason, msg := o.Reason, o.Message
	if reason == "" {
		reason, msg = string(o.Phase), phaseMessage(o.Phase)
	}
	return ctrl.Result{RequeueAfter: o.RecheckAfter}, r.transition(ctx, b, o.Phase, reason, msg, now, func(s *v1alpha1.BuildStatus) {
		// A build that started and finished while no controller watched still gets its
		// Running transition, at the time the builder really started.
		if o.Phase.Terminal() && o.BuilderStarted != nil && !entered(s, v1alpha1.PhaseRunning) {
			s.Transitions = insertTransition(s.Transitions, v1alpha1.Transition{Phase: v1alpha1.PhaseRunning, Time: *o.BuilderStarted})
		}
		applyObservation(s, o)
	})
}

func entered(s *v1alpha1.BuildStatus, p v1alpha1.Phase) bool {
	for _, t := range s.Transitions {
		if t.Phase == p {
			return true
		}
	}
	return false
}

// insertTransition puts t before the last (just appended) transition.
func insertTransition(ts []v1alpha1.Transition, t v1alpha1.Transition) []v1alpha1.Transition {
	if len(ts) == 0 {
		return []v1alpha1.Transition{t}
	}
	last := ts[len(ts)-1]
	return append(append(ts[:len(ts)-1:len(ts)-1], t), last)
}

func phaseMessage(p v1alpha1.Phase) string {
	switch p {
	case v1alpha1.PhaseRunning:
		return "the builder started"
	case v1alpha1.PhaseSucceeded:
		return "the image was built and pushed"
	}
	return ""
}

// applyObservation copies what the pod and the builder's result say into the status.
func applyObservation(s *v1alpha1.BuildStatus, o Observation) {
	if o.BuilderStarted != nil && s.StartTime == nil {
		s.StartTime = o.BuilderStarted.DeepCopy()
	}
	for k, d := range o.Timings {
		setTiming(s, k, d)
	}
	if res := o.Result; res != nil {
		if res.Digest != "" {
			s.Digest = res.Digest
			s.ShortDigest = shortDigest(res.Digest)
		}
		s.Tags = res.Tags
		for k, ms := range map[string]int64{
			"daemonWait": res.Timings.Daemon, "fetch": res.Timings.Fetch, "solve": res.Timings.Solve,
			"push": res.Timings.Push, "cacheExport": res.Timings.CacheExport,
		} {
			if ms > 0 {
				setTiming(s, k, time.Duration(ms)*time.Millisecond)
			}
		}
		if res.Steps.Total > 0 {
			s.Steps = &v1alpha1.Steps{Total: int32(res.Steps.Total), Cached: int32(res.Steps.Cached)}
		}
		if f := res.Failure; f != nil && o.Phase == v1alpha1.PhaseFailed {
			s.Failure = &v1alpha1.Failure{Step: f.Step, Line: int32(f.Line), ExitCode: int32(f.ExitCode), Message: f.Message}
		}
	}
	if o.Finished != nil && o.Phase.Terminal() && s.StartTime != nil {
		setTiming(s, "build", o.Finished.Sub(s.StartTime.Time))
	}
}

func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 12 {
		return d
	}
	return hex[:12]
}

// pod returns the Build's pod, looking past the cache before concluding it does not exist.
func (r *Reconciler) pod(ctx context.Context, b *v1alpha1.Build) (*corev1.Pod, error) {
	var pod corev1.Pod
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
	err := r.Client.Get(ctx, key, &pod)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, &pod)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("getting pod: %w", err)
	}
	if !metav1.IsControlledBy(&pod, b) {
		return nil, fmt.Errorf("pod %s exists but is not owned by this Build", key)
	}
	return &pod, nil
}

func (r *Reconciler) createPod(ctx context.Context, b *v1alpha1.Build, now time.Time) error {
	refs, err := podspec.ImageRefs(b, r.Opts.Pod.RegistryPrefix)
	if err != nil {
		return r.transition(ctx, b, v1alpha1.PhaseFailed, ReasonConfigInvalid, err.Error(), now, nil)
	}
	secret, err := r.ensureTokenSecret(ctx, b)
	if err != nil {
		return err
	}
	settings, pool := SettingsFor(b, r.Opts.Pod, r.Opts.Pools)
	pod := podspec.Pod(podspec.Input{Build: b, Refs: refs, GitTokenSecret: secret, Push: b.Pushes()}, settings)
	if pool != "" {
		pod.Labels[LabelPool] = pool
	}
	if err := r.Client.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating pod: %w", err)
	}
	r.event(b, corev1.EventTypeNormal, "PodCreated", "created pod %s", pod.Name)
	return r.updateStatus(ctx, b, func(s *v1alpha1.BuildStatus) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{
			Type: ConditionPodCreated, Status: metav1.ConditionTrue, Reason: "Created",
			Message: "pod " + pod.Name, ObservedGeneration: b.Generation,
		})
	})
}

// TokenSecretName is the per-build Secret holding the clone token.
func TokenSecretName(b *v1alpha1.Build) string { return b.Name + "-git" }

func (r *Reconciler) ensureTokenSecret(ctx context.Context, b *v1alpha1.Build) (string, error) {
	if r.Opts.Tokens == nil {
		return "", nil
	}
	name := TokenSecretName(b)
	var existing corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: name}, &existing); err == nil {
		return name, nil
	} else if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("getting clone token secret: %w", err)
	}
	tok, err := r.Opts.Tokens.CloneToken(ctx, b)
	if err != nil {
		return "", fmt.Errorf("minting clone token: %w", err)
	}
	if tok == "" {
		return "", nil // a public repository: clone without credentials
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.Namespace, Labels: map[string]string{podspec.LabelBuild: b.Name}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{podspec.GitTokenKey: []byte(tok)},
	}
	if err := controllerutil.SetControllerReference(b, s, r.Client.Scheme()); err != nil {
		return "", fmt.Errorf("owning clone token secret: %w", err)
	}
	if err := r.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating clone token secret: %w", err)
	}
	return name, nil
}

func (r *Reconciler) cancel(ctx context.Context, b, by *v1alpha1.Build, now time.Time) error {
	if err := r.deletePod(ctx, b, r.Opts.CancelGrace); err != nil {
		return err
	}
	return r.transition(ctx, b, v1alpha1.PhaseCanceled, ReasonSuperseded, "superseded by "+by.Name, now, func(s *v1alpha1.BuildStatus) {
		s.SupersededBy = by.Name
	})
}

func (r *Reconciler) deletePod(ctx context.Context, b *v1alpha1.Build, grace time.Duration) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Name}}
	err := r.Client.Delete(ctx, pod, client.GracePeriodSeconds(int64(grace.Seconds())),
		client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting pod: %w", err)
	}
	return nil
}

// finish cleans up after a terminal Build: the clone token at once, the pod after its
// retention, the Build itself past the per-repository bounds.
func (r *Reconciler) finish(ctx context.Context, b *v1alpha1.Build, now time.Time) (ctrl.Result, error) {
	if r.Opts.Tokens != nil {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: TokenSecretName(b)}}
		if err := r.Client.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting clone token secret: %w", err)
		}
	}
	var after time.Duration
	done := now
	if b.Status.CompletionTime != nil {
		done = b.Status.CompletionTime.Time
	}
	if r.Opts.PodRetention > 0 {
		if left := done.Add(r.Opts.PodRetention).Sub(now); left > 0 {
			after = left
		} else if err := r.deletePod(ctx, b, 0); err != nil {
			return ctrl.Result{}, err
		}
	}
	if r.Opts.KeepFor > 0 {
		if left := done.Add(r.Opts.KeepFor).Sub(now); left <= 0 {
			return ctrl.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, b))
		} else if after == 0 || left < after {
			after = left
		}
	}
	if r.Opts.KeepPerRepo > 0 {
		if err := r.prune(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// prune deletes the oldest finished Builds of b's repository beyond KeepPerRepo.
func (r *Reconciler) prune(ctx context.Context, b *v1alpha1.Build) error {
	var all v1alpha1.BuildList
	if err := r.Client.List(ctx, &all, client.InNamespace(b.Namespace)); err != nil {
		return fmt.Errorf("listing builds to prune: %w", err)
	}
	for _, old := range Prunable(all.Items, b.Spec.Source.Repository, r.Opts.KeepPerRepo) {
		if err := r.Client.Delete(ctx, &old); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("pruning %s: %w", old.Name, err)
		}
	}
	return nil
}

// transition moves b to phase, recording the time, the reason, and an Event. Terminal phases
// are final: a transition out of one is refused.
func (r *Reconciler) transition(ctx context.Context, b *v1alpha1.Build, phase v1alpha1.Phase, reason, msg string, now time.Time, mutate func(*v1alpha1.BuildStatus)) error {
	if b.Status.Phase.Terminal() {
		return errors.New("refusing to leave terminal phase " + string(b.Status.Phase))
	}
	from := b.Status.Phase
	err := r.updateStatus(ctx, b, func(s *v1alpha1.BuildStatus) {
		s.Phase, s.Reason, s.Message = phase, reason, msg
		s.ObservedGeneration = b.Generation
		t := metav1.NewTime(now)
		s.Transitions = append(s.Transitions, v1alpha1.Transition{Phase: phase, Time: t})
		if phase.Terminal() && s.CompletionTime == nil {
			s.CompletionTime = &t
		}
		if mutate != nil {
			mutate(s)
		}
	})
	if err != nil {
		return err
	}
	kind := corev1.EventTypeNormal
	if phase == v1alpha1.PhaseFailed {
		kind = corev1.EventTypeWarning
	}
	r.event(b, kind, reason, "%s → %s: %s", orNew(from), phase, msg)
	r.Log.Info("build transition", "build", b.Namespace+"/"+b.Name, "from", string(from), "to", string(phase), "reason", reason)
	return nil
}

func orNew(p v1alpha1.Phase) string {
	if p == "" {
		return "New"
	}
	return string(p)
}

// updateStatus applies mutate to a copy and writes it with optimistic concurrency: a conflict
// (another replica or a newer event got there first) fails and the request is retried with
// fresh state, which is what keeps two writers from both "winning".
func (r *Reconciler) updateStatus(ctx context.Context, b *v1alpha1.Build, mutate func(*v1alpha1.BuildStatus)) error {
	nb := b.DeepCopy()
	mutate(&nb.Status)
	if err := r.Client.Status().Update(ctx, nb); err != nil {
		return fmt.Errorf("updating build status: %w", err)
	}
	*b = *nb
	return nil
}

func (r *Reconciler) event(b *v1alpha1.Build, kind, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(b, nil, kind, reason, "Reconcile", format, args...)
	}
}

func setTiming(s *v1alpha1.BuildStatus, k string, d time.Duration) {
	if s.Timings == nil {
		s.Timings = map[string]metav1.Duration{}
	}
	s.Timings[k] = metav1.Duration{Duration: max(d, 0).Round(time.Millisecond)}
}
