// Package report turns Build status into forge reports (commit statuses, check runs) with a
// reconciler, not fire-and-forget calls: the state last accepted by each forge context is
// recorded in status.reports, so that a restart or a redelivered event never reports twice, a
// failed report is retried until it succeeds, and a forge that comes back after an outage gets
// the current state once rather than a replay of the states it missed.
package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/requeue"
)

// RBAC: the reporter reads Builds, writes status.reports and its finalizer.
// +kubebuilder:rbac:groups=slipway.dev,resources=builds,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=slipway.dev,resources=builds/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get

// Finalizer keeps a Build that is deleted before its final report until that report is sent,
// so that no commit is left "pending" forever.
const Finalizer = "slipway.dev/report"

// Channel is one kind of report a forge shows, e.g. GitHub check runs.
type Channel struct {
	// Kind prefixes the context in status.reports: "github-status", "github-check",
	// "gitlab-status".
	Kind string
	// Forge and Host select the Builds this channel reports; an empty Host means any.
	Forge    v1alpha1.Forge
	Host     string
	Reporter forge.Reporter
	// State maps a Build state to the forge-side state this channel records; "" means nothing
	// is sent for that state (e.g. GitHub statuses send nothing new when a build starts
	// running: it is still "pending"). Only a change of this value is sent.
	State func(forge.State) string
	// Details asks for title, summary, annotations and, for failures, the log tail.
	Details bool
}

// Linker makes the URL behind every status: the signed build page.
type Linker interface {
	BuildURL(namespace, name string, created time.Time) string
}

// Options configure the reporter.
type Options struct {
	Channels []Channel
	Links    Linker
	// Logs is optional; without it failures are reported without a log tail.
	Logs LogSource
	// LogLines is how many log lines a failure shows (default 40).
	LogLines int
	// BackoffBase and BackoffMax bound the exponential backoff between failed attempts of one
	// Build (defaults 2 s and 5 min); a permanent error waits BackoffMax.
	BackoffBase, BackoffMax time.Duration
	// CallTimeout bounds one forge call (default 30 s).
	CallTimeout time.Duration
	// DeleteGrace is how long a deleted Build waits for its final report before it is let go
	// anyway (default 10 min): a forge that is down must not keep Builds forever.
	DeleteGrace time.Duration
	// StaleAfter skips Builds that finished this long ago without any report (default 24 h):
	// enabling the reporter on a cluster full of old Builds must not flood the forge with
	// statuses nobody waits for.
	StaleAfter time.Duration
	// Workers is how many Builds are reported concurrently (default 4), so that one slow
	// forge call does not hold every other Build's report.
	Workers int
	Now     func() time.Time
	// Jitter returns a number in [0, 1); tests make it constant.
	Jitter func() float64
}

// Reconciler reports Builds to forges.
type Reconciler struct {
	Client client.Client
	// APIReader reads around the cache before any forge call, so that a stale cache never
	// makes the reporter send a state it already recorded.
	APIReader client.Reader
	Log       *slog.Logger
	Opts      Options

	mu      sync.Mutex
	retries map[types.UID]*retryState
}

type retryState struct {
	attempts  int
	notBefore time.Time
}

// Setup registers the reporter, as a controller named "report", with mgr.
func Setup(mgr ctrl.Manager, r *Reconciler) error {
	if err := r.defaults(); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("report").
		For(&v1alpha1.Build{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Opts.Workers}).
		Complete(r)
}

func (r *Reconciler) defaults() error {
	if r.Client == nil || r.APIReader == nil {
		return errors.New("the reporter needs a client and an API reader")
	}
	for i, c := range r.Opts.Channels {
		if c.Kind == "" || c.Forge == "" || c.Reporter == nil || c.State == nil {
			return fmt.Errorf("report channel %d (%q) needs a kind, a forge, a reporter and a state mapping", i, c.Kind)
		}
	}
	o := &r.Opts
	if o.LogLines <= 0 {
		o.LogLines = 40
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 2 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.DeleteGrace <= 0 {
		o.DeleteGrace = 10 * time.Minute
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 24 * time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	r.mu.Lock()
	if r.retries == nil {
		r.retries = map[types.UID]*retryState{}
	}
	r.mu.Unlock()
	return nil
}

// due is one channel whose recorded state differs from the Build's.
type due struct {
	ch       Channel
	key      string // the context in status.reports
	want     string
	previous *v1alpha1.Report
}

// Reconcile implements reconcile.Reconciler. A write conflict (the controller, another replica
// got there first) is retried quietly with fresh state.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return requeue.OnConflict(r.reconcile(ctx, req))
}

func (r *Reconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.retries == nil {
		if err := r.defaults(); err != nil {
			return ctrl.Result{}, err
		}
	}
	// A worker must never hang on one Build: every call below is bounded, and so is the whole.
	ctx, cancel := context.WithTimeout(ctx, 3*r.Opts.CallTimeout)
	defer cancel()
	var b v1alpha1.Build
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := r.Log.With("build", req.String())
	channels := r.channelsFor(&b)
	deleted := b.DeletionTimestamp != nil
	if len(channels) == 0 {
		return ctrl.Result{}, r.release(ctx, &b)
	}
	if len(dueReports(&b, channels, deleted)) == 0 {
		if deleted || b.Status.Phase.Terminal() {
			r.forget(b.UID)
			return ctrl.Result{}, r.release(ctx, &b)
		}
		return ctrl.Result{}, r.hold(ctx, &b)
	}
	now := r.Opts.Now()
	if b.Status.Phase.Terminal() && len(b.Status.Reports) == 0 && b.Status.CompletionTime != nil &&
		now.Sub(b.Status.CompletionTime.Time) > r.Opts.StaleAfter {
		return ctrl.Result{}, r.release(ctx, &b)
	}
	if deleted && now.Sub(b.DeletionTimestamp.Time) > r.Opts.DeleteGrace {
		log.Warn("giving up the final report of a deleted build", "waited", now.Sub(b.DeletionTimestamp.Time).Round(time.Second))
		r.forget(b.UID)
		return ctrl.Result{}, r.release(ctx, &b)
	}
	if wait := r.backingOff(b.UID, now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	// The cache may lag behind our own last write: decide on the live object.
	var live v1alpha1.Build
	if err := r.APIReader.Get(ctx, req.NamespacedName, &live); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	b = live
	deleted = b.DeletionTimestamp != nil
	if !deleted {
		if err := r.hold(ctx, &b); err != nil {
			return ctrl.Result{}, err
		}
	}
	todo := dueReports(&b, channels, deleted)
	state := StateOf(&b, deleted)
	var logTail []string
	logFetched := false
	var failed error
	var wait time.Duration
	for _, d := range todo {
		rep := r.report(&b, state, deleted, d)
		if d.ch.Details && r.Opts.Logs != nil && (state == forge.StateFailed || state == forge.StateErrored || state == forge.StateTimedOut) {
			if !logFetched {
				lines, err := r.Opts.Logs.Tail(ctx, &b, r.Opts.LogLines)
				if err != nil {
					log.Info("no log tail for the report", "error", err)
				}
				logTail, logFetched = Redact(lines), true
			}
			rep.Summary = Summary(&b, state, deleted, logTail)
		}
		callCtx, cancel := context.WithTimeout(ctx, r.Opts.CallTimeout)
		ext, err := d.ch.Reporter.Report(callCtx, rep)
		cancel()
		if err != nil {
			w := r.failed(b.UID, err, now)
			if wait == 0 || w < wait {
				wait = w
			}
			failed = err
			log.Warn("report failed", "context", d.key, "state", d.want, "retryIn", w.Round(time.Millisecond), "error", err)
			continue
		}
		entry := v1alpha1.Report{Context: d.key, State: d.want, ExternalID: ext, Time: metav1.NewTime(now)}
		if err := r.record(ctx, req.NamespacedName, entry); err != nil {
			// The forge has the state but the Build does not say so; the retry may send it
			// again (GitLab refuses that harmlessly; GitHub statuses are idempotent).
			return ctrl.Result{}, fmt.Errorf("recording report %s=%s: %w", d.key, d.want, err)
		}
		setReport(&b.Status.Reports, entry)
		log.Info("reported", "context", d.key, "state", d.want, "externalID", ext)
	}
	if failed != nil {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	r.forget(b.UID)
	if deleted || b.Status.Phase.Terminal() {
		return ctrl.Result{}, r.release(ctx, &b)
	}
	return ctrl.Result{}, nil
}

// dueReports lists the channels whose recorded state differs from what the Build's status maps to:
// what a reconcile sends. Pure, so that "nothing twice" is a table test.
func dueReports(b *v1alpha1.Build, channels []Channel, deleted bool) []due {
	state := StateOf(b, deleted)
	var out []due
	for _, ch := range channels {
		want := ch.State(state)
		if want == "" {
			continue
		}
		key := ch.Kind + "/" + Context(b)
		prev := findReport(b.Status.Reports, key)
		if prev != nil && prev.State == want {
			continue
		}
		out = append(out, due{ch: ch, key: key, want: want, previous: prev})
	}
	return out
}

func (r *Reconciler) channelsFor(b *v1alpha1.Build) []Channel {
	// A trigger is reported only when it fails (an invalid .slipway.yaml): otherwise the
	// Builds it expands into report, and a "pending" for the trigger would never complete.
	if b.IsTrigger() && b.Status.Phase != v1alpha1.PhaseFailed {
		return nil
	}
	var out []Channel
	for _, c := range r.Opts.Channels {
		if c.Forge == b.Spec.Source.Forge && (c.Host == "" || c.Host == b.Spec.Source.Host) {
			out = append(out, c)
		}
	}
	return out
}

func (r *Reconciler) report(b *v1alpha1.Build, s forge.State, deleted bool, d due) forge.Report {
	rep := forge.Report{
		Source: b.Spec.Source, Namespace: b.Namespace, Name: b.Name, Context: Context(b), State: s,
		Description: Description(b, s, deleted),
	}
	if d.previous != nil {
		rep.ExternalID = d.previous.ExternalID
	}
	if r.Opts.Links != nil {
		rep.TargetURL = r.Opts.Links.BuildURL(b.Namespace, b.Name, b.CreationTimestamp.Time)
	}
	if b.Status.StartTime != nil {
		rep.StartedAt = b.Status.StartTime.Time
	}
	if b.Status.CompletionTime != nil {
		rep.CompletedAt = b.Status.CompletionTime.Time
	} else if deleted {
		rep.CompletedAt = b.DeletionTimestamp.Time
	}
	if d.ch.Details {
		rep.Title = Title(b, s)
		rep.Summary = Summary(b, s, deleted, nil)
		rep.Annotations = Annotations(b, s)
	}
	return rep
}

// record writes one report entry on the live Build, retrying on conflicts with the controller,
// which writes the rest of the status.
func (r *Reconciler) record(ctx context.Context, key types.NamespacedName, entry v1alpha1.Report) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur v1alpha1.Build
		if err := r.APIReader.Get(ctx, key, &cur); err != nil {
			return err
		}
		setReport(&cur.Status.Reports, entry)
		return r.Client.Status().Update(ctx, &cur)
	})
}

// hold adds the finalizer to a Build that still has reports to send.
func (r *Reconciler) hold(ctx context.Context, b *v1alpha1.Build) error {
	if b.DeletionTimestamp != nil || controllerutil.ContainsFinalizer(b, Finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(b.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(b, Finalizer)
	if err := r.Client.Patch(ctx, b, patch); err != nil {
		return fmt.Errorf("adding finalizer %s: %w", Finalizer, err)
	}
	return nil
}

// release removes the finalizer once nothing is left to report.
func (r *Reconciler) release(ctx context.Context, b *v1alpha1.Build) error {
	if !controllerutil.ContainsFinalizer(b, Finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(b.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(b, Finalizer)
	if err := r.Client.Patch(ctx, b, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer %s: %w", Finalizer, err)
	}
	return nil
}

// backingOff returns how long the Build must still wait after a failure; events that arrive
// meanwhile (the Build moved on) do not cut a forge's Retry-After short.
func (r *Reconciler) backingOff(uid types.UID, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.retries[uid]; s != nil && now.Before(s.notBefore) {
		return s.notBefore.Sub(now)
	}
	return 0
}

func (r *Reconciler) failed(uid types.UID, err error, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.retries[uid]
	if s == nil {
		s = &retryState{}
		r.retries[uid] = s
	}
	after, permanent := forge.RetryAfter(err)
	w := Backoff(s.attempts, r.Opts.BackoffBase, r.Opts.BackoffMax, r.Opts.Jitter())
	if permanent {
		w = r.Opts.BackoffMax
	}
	w = max(w, after)
	s.attempts++
	s.notBefore = now.Add(w)
	return w
}

func (r *Reconciler) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.retries, uid)
}

// Backoff is the wait before attempt n+1 after n failures: exponential from base, capped at
// max, with "equal jitter" (half fixed, half random) so that many Builds failing together do
// not retry together. jitter is in [0, 1).
func Backoff(n int, base, max time.Duration, jitter float64) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

func findReport(rs []v1alpha1.Report, key string) *v1alpha1.Report {
	for i := range rs {
		if rs[i].Context == key {
			return &rs[i]
		}
	}
	return nil
}

func setReport(rs *[]v1alpha1.Report, e v1alpha1.Report) {
	if p := findReport(*rs, e.Context); p != nil {
		*p = e
		return
	}
	*rs = append(*rs, e)
}
