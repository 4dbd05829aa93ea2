package report_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildpage"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/github/githubtest"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/forge/gitlab/gitlabtest"
	"github.com/slipway-dev/slipway/internal/repoconfig"
	"github.com/slipway-dev/slipway/internal/report"
	"github.com/slipway-dev/slipway/internal/testbed/apiserver"
)

// env is started by the first test that needs it, so that unit tests and fuzzing of this
// package run without an API server.
var (
	env      *apiserver.Env
	envOnce  sync.Once
	envError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

func startEnv(t *testing.T) {
	t.Helper()
	envOnce.Do(func() { env, envError = apiserver.Start() })
	if envError != nil {
		t.Fatalf("starting the API server: %v", envError)
	}
}

const sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

var signingKey = []byte("0123456789abcdef0123456789abcdef")

// fixture is one namespace with fake forges and a way to run reporters against it.
type fixture struct {
	t    *testing.T
	ns   string
	gh   *githubtest.Server
	gl   *gitlabtest.Server
	app  *github.App
	glab *gitlab.API
	link *buildpage.Signer
	logs *fakeLogs
}

type fakeLogs struct {
	mu    sync.Mutex
	lines []string
	calls int
}

func (l *fakeLogs) Tail(_ context.Context, _ *v1alpha1.Build, n int) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	return l.lines[max(0, len(l.lines)-n):], nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd")
	}
	startEnv(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "report-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ns: ns.Name, gh: githubtest.New(t), gl: gitlabtest.New(t), logs: &fakeLogs{}}
	var err error
	if f.app, err = github.NewApp(github.AppConfig{AppID: f.gh.AppID, PrivateKey: f.gh.KeyPEM, APIURL: f.gh.APIURL(), WebHost: "github.com"}); err != nil {
		t.Fatal(err)
	}
	if f.glab, err = gitlab.NewAPI(gitlab.APIConfig{URL: f.gl.URL, Token: f.gl.Token}); err != nil {
		t.Fatal(err)
	}
	if f.link, err = buildpage.NewSigner(signingKey, "https://slipway.example.com", 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// mode selects the GitHub channels, as cmd/slipway would from configuration.
type mode int

const (
	checksOnly mode = iota
	statusesOnly
	both
)

func (f *fixture) channels(m mode) []report.Channel {
	var out []report.Channel
	if m == statusesOnly || m == both {
		st, _ := github.NewStatuses(f.app)
		out = append(out, report.Channel{Kind: "github-status", Forge: v1alpha1.ForgeGitHub, Host: f.app.Host(), Reporter: st, State: github.StatusState})
	}
	if m == checksOnly || m == both {
		ch, _ := github.NewChecks(f.app, github.CheckOptions{SkipQueued: m == both})
		out = append(out, report.Channel{Kind: "github-check", Forge: v1alpha1.ForgeGitHub, Host: f.app.Host(), Reporter: ch, State: ch.State, Details: true})
	}
	return append(out, report.Channel{Kind: "gitlab-status", Forge: v1alpha1.ForgeGitLab, Host: f.glab.Host(), Reporter: f.glab, State: gitlab.StatusState})
}

// start runs a manager with only the reporter (the Build controller's part is played by the
// test, which writes status as the controller would).
func (f *fixture) start(m mode) (stop func()) {
	t := f.t
	t.Helper()
	skip := true
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &report.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Log: slog.New(slog.DiscardHandler), Opts: report.Options{
		Channels: f.channels(m), Links: f.link, Logs: f.logs,
		BackoffBase: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, CallTimeout: 5 * time.Second, DeleteGrace: time.Minute,
	}}
	if err := report.Setup(mgr, r); err != nil {
		t.Fatal(err)
	}
	return apiserver.RunManager(t, mgr)
}

func (f *fixture) githubBuild(name string, mutate func(*v1alpha1.Build)) *v1alpha1.Build {
	b := &v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: "acme/app",
				CloneURL: "https://github.com/acme/app.git", Commit: sha, Ref: "refs/heads/main", Event: v1alpha1.EventPush, InstallationID: 1},
			Target: v1alpha1.Target{Name: "default"},
		},
	}
	if mutate != nil {
		mutate(b)
	}
	if err := env.Client.Create(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// setStatus writes status as the Build controller would, retrying on conflicts with the
// reporter's writes.
func (f *fixture) setStatus(name string, mutate func(*v1alpha1.BuildStatus)) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var b v1alpha1.Build
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &b); err != nil {
			return err
		}
		mutate(&b.Status)
		return env.Client.Status().Update(context.Background(), &b)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func phase(p v1alpha1.Phase) func(*v1alpha1.BuildStatus) {
	return func(s *v1alpha1.BuildStatus) {
		s.Phase = p
		now := metav1.Now()
		s.Transitions = append(s.Transitions, v1alpha1.Transition{Phase: p, Time: now})
		if p == v1alpha1.PhaseRunning {
			s.StartTime = &now
		}
	}
}

func succeeded(s *v1alpha1.BuildStatus) {
	phase(v1alpha1.PhaseSucceeded)(s)
	now := metav1.NewTime(s.StartTime.Add(83 * time.Second))
	s.CompletionTime = &now
	s.Digest, s.ShortDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "0123456789ab"
	s.Tags = []string{"registry.test/acme/app:" + sha}
	s.Timings = map[string]metav1.Duration{"queued": {Duration: time.Second}, "solve": {Duration: 70 * time.Second}, "push": {Duration: 4 * time.Second}}
	s.Steps = &v1alpha1.Steps{Total: 5, Cached: 2}
	s.Reason, s.Message = "Succeeded", "the image was built and pushed"
}

func (f *fixture) get(name string) *v1alpha1.Build {
	var b v1alpha1.Build
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &b); err != nil {
		f.t.Fatal(err)
	}
	return &b
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits a little and fails if the forge got any new request: the "never twice" check.
func (f *fixture) settle(what string, before int) {
	f.t.Helper()
	time.Sleep(1500 * time.Millisecond)
	if n := len(f.gh.Requests()) + len(f.gl.Requests()); n != before {
		f.t.Fatalf("%s: %d new forge requests, want none", what, n-before)
	}
}

func (f *fixture) requests() int { return len(f.gh.Requests()) + len(f.gl.Requests()) }

func reportOf(b *v1alpha1.Build, ctx string) *v1alpha1.Report {
	for i := range b.Status.Reports {
		if b.Status.Reports[i].Context == ctx {
			return &b.Status.Reports[i]
		}
	}
	return nil
}

func bodyOf(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPushToSuccess: queued at once, in_progress when running, completed with the summary;
// exact bodies; within the API budget, counting the config read the controller makes.
func TestPushToSuccess(t *testing.T) {
	f := newFixture(t)
	f.start(checksOnly)
	// The controller's config read (the repository has no .slipway.yaml): one API call.
	contents, _ := github.NewContents(f.app)
	b := f.githubBuild("github-ok", nil)
	res, err := repoconfig.Resolver{Files: contents, Options: repoconfig.Options{RegistryPrefix: "registry.test"}}.Resolve(context.Background(), b)
	if err != nil || len(res.Targets) != 1 || res.Found {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	link := f.link.BuildURL(f.ns, "github-ok", f.get("github-ok").CreationTimestamp.Time)

	eventually(t, "the check run is created queued", func() bool { return len(f.gh.Calls("checks/create")) == 1 })
	create := bodyOf(t, f.gh.Calls("checks/create")[0].Body)
	want := map[string]any{
		"name": "slipway/default", "head_sha": sha, "external_id": f.ns + "/github-ok", "status": "queued", "details_url": link,
		"output": map[string]any{"title": "Queued", "summary": "**Accepted, waiting to start** · commit `6dcb09b` · branch `main`\n"},
	}
	if got, _ := json.Marshal(create); string(got) != mustJSON(want) {
		t.Errorf("create body\n got %s\nwant %s", got, mustJSON(want))
	}
	eventually(t, "the report is recorded", func() bool { return reportOf(f.get("github-ok"), "github-check/slipway/default") != nil })
	rec := reportOf(f.get("github-ok"), "github-check/slipway/default")
	if rec.State != "queued" || rec.ExternalID == "" {
		t.Fatalf("recorded %+v", rec)
	}
	if !containsString(f.get("github-ok").Finalizers, report.Finalizer) {
		t.Error("a running Build has no report finalizer")
	}

	before := f.requests()
	f.setStatus("github-ok", phase(v1alpha1.PhaseQueued))
	f.setStatus("github-ok", phase(v1alpha1.PhasePending))
	f.settle("queued and pending map to the state already reported", before)

	f.setStatus("github-ok", phase(v1alpha1.PhaseRunning))
	eventually(t, "in_progress", func() bool { return len(f.gh.Calls("checks/update")) == 1 })
	up := bodyOf(t, f.gh.Calls("checks/update")[0].Body)
	if up["status"] != "in_progress" || up["name"] != "slipway/default" || up["details_url"] != link || f.gh.Calls("checks/update")[0].Path != "/repos/acme/app/check-runs/"+rec.ExternalID {
		t.Errorf("in_progress update %v", up)
	}

	f.setStatus("github-ok", succeeded)
	eventually(t, "completed", func() bool { return len(f.gh.Calls("checks/update")) == 2 })
	done := bodyOf(t, f.gh.Calls("checks/update")[1].Body)
	out := done["output"].(map[string]any)
	if done["status"] != "completed" || done["conclusion"] != "success" || done["completed_at"] == nil ||
		out["title"] != "Built sha256:0123456789ab" {
		t.Errorf("completed body %v", done)
	}
	for _, s := range []string{"sha256:0123456789abcdef", "| Solve | 1m10s |", "2 of 5 steps came from cache", "registry.test/acme/app:" + sha} {
		if !strings.Contains(out["summary"].(string), s) {
			t.Errorf("summary lacks %q:\n%s", s, out["summary"])
		}
	}
	eventually(t, "the finalizer is released", func() bool { return !containsString(f.get("github-ok").Finalizers, report.Finalizer) })
	id := int64(0)
	fmt.Sscan(rec.ExternalID, &id)
	if st, concl, _ := f.gh.CheckRun(id); st != "completed" || concl != "success" {
		t.Errorf("GitHub shows %s %s", st, concl)
	}
	// API budget: at most 4 calls for a successful single-target build, token mints aside.
	if n := f.gh.APICalls(); n > 4 {
		t.Errorf("%d GitHub API calls, budget 4: %v", n, f.gh.Requests())
	} else {
		t.Logf("GitHub API calls for a successful build: %d (+%d token mints)", n, len(f.gh.Calls(githubtest.OpMintToken)))
	}
	if n := len(f.gh.Calls(githubtest.OpMintToken)); n != 1 {
		t.Errorf("%d token mints, want 1", n)
	}
}

// TestStatusesAndChecks: both channels, still within the budget without the config read.
func TestStatusesAndChecks(t *testing.T) {
	f := newFixture(t)
	f.start(both)
	f.githubBuild("github-both", nil)
	eventually(t, "pending status", func() bool { return len(f.gh.Calls("repos/create-commit-status")) == 1 })
	f.setStatus("github-both", phase(v1alpha1.PhaseRunning))
	eventually(t, "in_progress check", func() bool { return len(f.gh.Calls("checks/create")) == 1 })
	f.setStatus("github-both", succeeded)
	eventually(t, "final reports", func() bool {
		return len(f.gh.Calls("repos/create-commit-status")) == 2 && len(f.gh.Calls("checks/update")) == 1
	})
	st := f.gh.Calls("repos/create-commit-status")
	if a, b := bodyOf(t, st[0].Body), bodyOf(t, st[1].Body); a["state"] != "pending" || b["state"] != "success" ||
		b["description"] != "Built sha256:0123456789ab in 1m23s" || b["context"] != "slipway/default" {
		t.Errorf("statuses %v %v", a, b)
	}
	if c := bodyOf(t, f.gh.Calls("checks/create")[0].Body); c["status"] != "in_progress" {
		t.Errorf("check run created %v", c["status"])
	}
	f.settle("done", f.requests())
	if n := f.gh.APICalls(); n > 4 {
		t.Errorf("%d API calls, budget 4", n)
	}
}

// TestFailureWithLogTail: the failing step, the redacted end of the log and an annotation on
// the Dockerfile line.
func TestFailureWithLogTail(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 50; i++ {
		f.logs.lines = append(f.logs.lines, fmt.Sprintf("#8 0.%03d line %d", i, i))
	}
	f.logs.lines = append(f.logs.lines, "#8 1.000 git fetch https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz0123@github.com/acme/app", "#8 ERROR: make: *** [all] Error 2")
	f.start(checksOnly)
	f.githubBuild("github-fail", func(b *v1alpha1.Build) { b.Spec.Target.Dockerfile = "build/Dockerfile" })
	eventually(t, "queued", func() bool { return len(f.gh.Calls("checks/create")) == 1 })
	f.setStatus("github-fail", phase(v1alpha1.PhaseRunning))
	f.setStatus("github-fail", func(s *v1alpha1.BuildStatus) {
		phase(v1alpha1.PhaseFailed)(s)
		s.Reason, s.Message = "BuildFailed", "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"
		s.Failure = &v1alpha1.Failure{Step: "[build 3/4] RUN make", Line: 7, ExitCode: 2, Message: s.Message}
	})
	eventually(t, "completed failure", func() bool {
		for _, c := range f.gh.Calls("checks/update") {
			if bodyOf(t, c.Body)["conclusion"] == "failure" {
				return true
			}
		}
		return false
	})
	calls := f.gh.Calls("checks/update")
	last := bodyOf(t, calls[len(calls)-1].Body)
	out := last["output"].(map[string]any)
	summary := out["summary"].(string)
	for _, s := range []string{"Step: `[build 3/4] RUN make` exited 2 at `build/Dockerfile` line 7", "Last 40 log lines", "#8 0.012 line 12", "x-access-token:***@github.com", "make: *** [all] Error 2"} {
		if !strings.Contains(summary, s) {
			t.Errorf("summary lacks %q:\n%s", s, summary)
		}
	}
	if strings.Contains(summary, "ghs_") || strings.Contains(summary, "line 11\n") {
		t.Errorf("summary leaks a token or has more than 40 lines:\n%s", summary)
	}
	ann := out["annotations"].([]any)
	if len(ann) != 1 {
		t.Fatalf("annotations %v", ann)
	}
	a := ann[0].(map[string]any)
	if a["path"] != "build/Dockerfile" || a["start_line"] != float64(7) || a["end_line"] != float64(7) || a["annotation_level"] != "failure" {
		t.Errorf("annotation %v", a)
	}
	if last["conclusion"] != "failure" || out["title"] != "Failed: BuildFailed" {
		t.Errorf("conclusion %v title %v", last["conclusion"], out["title"])
	}
}

// TestCancel: a superseded build is cancelled; a Build deleted while running gets a final
// cancelled report before it goes.
func TestCancel(t *testing.T) {
	f := newFixture(t)
	f.start(checksOnly)
	f.githubBuild("github-superseded", nil)
	f.githubBuild("github-deleted", nil)
	eventually(t, "both queued", func() bool { return len(f.gh.Calls("checks/create")) == 2 })
	f.setStatus("github-superseded", func(s *v1alpha1.BuildStatus) {
		phase(v1alpha1.PhaseCanceled)(s)
		s.Reason, s.Message, s.SupersededBy = "Superseded", "superseded by github-newer", "github-newer"
	})
	f.setStatus("github-deleted", phase(v1alpha1.PhaseRunning))
	eventually(t, "running reported", func() bool {
		r := reportOf(f.get("github-deleted"), "github-check/slipway/default")
		return r != nil && r.State == "in_progress"
	})
	if err := env.Client.Delete(context.Background(), f.get("github-deleted")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted Build is gone", func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "github-deleted"}, &v1alpha1.Build{})
		return apierrors.IsNotFound(err)
	})
	var conclusions []string
	for _, c := range f.gh.Calls("checks/update") {
		b := bodyOf(t, c.Body)
		if b["conclusion"] != nil {
			conclusions = append(conclusions, fmt.Sprint(b["conclusion"], ":", b["output"].(map[string]any)["title"]))
		}
	}
	if len(conclusions) != 2 || !strings.Contains(strings.Join(conclusions, ","), "cancelled:Canceled") {
		t.Errorf("conclusions %v", conclusions)
	}
	st := f.gh.Calls("checks/update")
	last := bodyOf(t, st[len(st)-1].Body)
	if !strings.Contains(last["output"].(map[string]any)["summary"].(string), "deleted before it finished") &&
		!strings.Contains(bodyOf(t, st[len(st)-2].Body)["output"].(map[string]any)["summary"].(string), "deleted before it finished") {
		t.Error("no report says the build was deleted")
	}
}

// TestForgeOutage: GitHub answers 503 while the build runs and finishes; when it is back the
// final state is delivered once, and the states it missed are not replayed.
func TestForgeOutage(t *testing.T) {
	f := newFixture(t)
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int32
	f.gh.SetFault(func(r githubtest.Request) *githubtest.Fault {
		if down.Load() && r.Operation != githubtest.OpMintToken {
			refused.Add(1)
			return &githubtest.Fault{Status: http.StatusServiceUnavailable, Body: `{"message":"Service Unavailable"}`}
		}
		return nil
	})
	f.start(checksOnly)
	f.githubBuild("github-outage", nil)
	eventually(t, "some refused attempts", func() bool { return refused.Load() >= 2 })
	// Move the Build on while GitHub refuses; each step is seen once the reporter has tried
	// (and failed) again after it.
	for _, next := range []func(*v1alpha1.BuildStatus){phase(v1alpha1.PhaseRunning), succeeded} {
		before := refused.Load()
		f.setStatus("github-outage", next)
		eventually(t, "another refused attempt", func() bool { return refused.Load() > before })
	}
	if len(f.get("github-outage").Status.Reports) != 0 {
		t.Fatal("a report was recorded while GitHub was down")
	}
	attempts := refused.Load()
	down.Store(false)
	eventually(t, "the final state is delivered", func() bool {
		r := reportOf(f.get("github-outage"), "github-check/slipway/default")
		return r != nil && r.State == "success"
	})
	f.settle("after delivery", f.requests())
	creates, updates := f.gh.Calls("checks/create"), f.gh.Calls("checks/update")
	if len(creates) != 1 || len(updates) != 0 {
		t.Fatalf("accepted %d creates and %d updates, want 1 create with the final state", len(creates), len(updates))
	}
	if b := bodyOf(t, creates[0].Body); b["status"] != "completed" || b["conclusion"] != "success" {
		t.Errorf("delivered %v/%v", b["status"], b["conclusion"])
	}
	// Backoff, not a hot loop: 100 ms doubling to 400 ms over ~3 s is a handful of attempts.
	if attempts > 30 {
		t.Errorf("%d attempts during the outage", attempts)
	}
	t.Logf("%d refused attempts during the outage", attempts)
}

// TestRestartNoDuplicate: a reporter restarted between transitions, and redelivered events,
// send nothing twice.
func TestRestartNoDuplicate(t *testing.T) {
	f := newFixture(t)
	stop := f.start(checksOnly)
	f.githubBuild("github-restart", nil)
	f.setStatus("github-restart", phase(v1alpha1.PhaseRunning))
	eventually(t, "in_progress recorded", func() bool {
		r := reportOf(f.get("github-restart"), "github-check/slipway/default")
		return r != nil && r.State == "in_progress"
	})
	stop()
	before := f.requests()
	f.start(checksOnly)
	f.settle("a restarted reporter", before)
	// A redelivered event: the Build changes without a state change.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b := f.get("github-restart")
		b.Annotations = map[string]string{"touched": time.Now().String()}
		return env.Client.Update(context.Background(), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	f.settle("an event without a state change", before)
	f.setStatus("github-restart", succeeded)
	eventually(t, "completed", func() bool {
		r := reportOf(f.get("github-restart"), "github-check/slipway/default")
		return r != nil && r.State == "success"
	})
	f.settle("done", f.requests())
	var states []string
	for _, c := range append(f.gh.Calls("checks/create"), f.gh.Calls("checks/update")...) {
		b := bodyOf(t, c.Body)
		states = append(states, fmt.Sprint(b["status"]))
	}
	if got := strings.Join(states, ","); got != "in_progress,completed" && got != "queued,in_progress,completed" {
		t.Errorf("check run states sent: %s", got)
	}
}

// TestGitLab: pending → running → success with GitLab's bodies; a fork's merge request reports
// to the source project.
func TestGitLab(t *testing.T) {
	f := newFixture(t)
	f.gl.AddProject(9, "someone/app")
	f.start(checksOnly)
	host := strings.TrimPrefix(f.gl.URL, "http://")
	mk := func(name string, mutate func(*v1alpha1.Source)) {
		b := &v1alpha1.Build{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
			Spec: v1alpha1.BuildSpec{Source: v1alpha1.Source{Forge: v1alpha1.ForgeGitLab, Host: host, Repository: "group/app",
				CloneURL: f.gl.URL + "/group/app.git", Commit: sha, Ref: "refs/heads/main", Event: v1alpha1.EventPush, ProjectID: 1},
				Target: v1alpha1.Target{Name: "web"}},
		}
		if mutate != nil {
			mutate(&b.Spec.Source)
		}
		if err := env.Client.Create(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	mk("gitlab-push", nil)
	mk("gitlab-fork", func(s *v1alpha1.Source) {
		s.Event, s.Ref, s.Number, s.BaseRef, s.SourceProjectID, s.Fork = v1alpha1.EventMergeRequest, "refs/merge-requests/3/head", 3, "main", 9, true
	})
	eventually(t, "two pending statuses", func() bool { return len(f.gl.Calls("statuses")) == 2 })
	// Each state is asserted below, so wait for "running" to be delivered before moving on:
	// a Build that races ahead is (correctly) reported in its current state only.
	for _, n := range []string{"gitlab-push", "gitlab-fork"} {
		f.setStatus(n, phase(v1alpha1.PhaseRunning))
	}
	eventually(t, "running statuses", func() bool {
		a, _ := f.gl.StatusOf(1, sha, "slipway/web")
		b, _ := f.gl.StatusOf(9, sha, "slipway/web")
		return a.State == "running" && b.State == "running"
	})
	for _, n := range []string{"gitlab-push", "gitlab-fork"} {
		f.setStatus(n, succeeded)
	}
	eventually(t, "final statuses", func() bool {
		a, _ := f.gl.StatusOf(1, sha, "slipway/web")
		b, _ := f.gl.StatusOf(9, sha, "slipway/web")
		return a.State == "success" && b.State == "success"
	})
	f.settle("done", f.requests())
	var push []string
	for _, c := range f.gl.Calls("statuses") {
		if c.Project == "1" {
			push = append(push, strings.TrimSpace(string(c.Body)))
		} else if c.Project != "9" {
			t.Errorf("status sent to project %s", c.Project)
		}
	}
	link := f.link.BuildURL(f.ns, "gitlab-push", f.get("gitlab-push").CreationTimestamp.Time)
	want := []string{
		`{"state":"pending","ref":"main","name":"slipway/web","target_url":"` + link + `","description":"Accepted, waiting to start"}`,
		`{"state":"running","ref":"main","name":"slipway/web","target_url":"` + link + `","description":"Building"}`,
		`{"state":"success","ref":"main","name":"slipway/web","target_url":"` + link + `","description":"Built sha256:0123456789ab in 1m23s (not pushed: fork)"}`,
	}
	want[2] = strings.Replace(want[2], " (not pushed: fork)", "", 1)
	if len(push) != 3 {
		t.Fatalf("push statuses %v", push)
	}
	for i := range want {
		if push[i] != strings.ReplaceAll(want[i], "&", `\u0026`) {
			t.Errorf("status %d\n got %s\nwant %s", i, push[i], want[i])
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var _ forge.Reporter = (*github.Checks)(nil)

// TestInvalidConfig: a .slipway.yaml that does not parse fails the Build (the controller's
// part, played here with repoconfig.Resolve) and the commit status names the error and line.
func TestInvalidConfig(t *testing.T) {
	f := newFixture(t)
	f.gh.PutFile("acme/app", sha, ".slipway.yaml", "targets:\n  - name: api\n    dockerfile: ../../etc/passwd\n")
	f.start(statusesOnly)
	b := f.githubBuild("github-badconfig", nil)
	contents, _ := github.NewContents(f.app)
	_, err := repoconfig.Resolver{Files: contents}.Resolve(context.Background(), b)
	var errs repoconfig.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Resolve = %v, want a config error", err)
	}
	f.setStatus("github-badconfig", func(s *v1alpha1.BuildStatus) {
		phase(v1alpha1.PhaseFailed)(s)
		s.Reason, s.Message = "ConfigInvalid", err.Error()
	})
	eventually(t, "failure status", func() bool {
		r := reportOf(f.get("github-badconfig"), "github-status/slipway/default")
		return r != nil && r.State == "failure"
	})
	calls := f.gh.Calls("repos/create-commit-status")
	last := bodyOf(t, calls[len(calls)-1].Body)
	want := `ConfigInvalid: .slipway.yaml line 3: targets[0].dockerfile: "../../etc/passwd" must stay inside the repository (no ..)`
	if last["state"] != "failure" || last["description"] != want {
		t.Errorf("status %v\nwant description %q", last, want)
	}
}

// TestStaleBuildsNotReported: Builds that finished long before the reporter first saw them
// are left alone.
func TestStaleBuildsNotReported(t *testing.T) {
	f := newFixture(t)
	f.githubBuild("github-old", nil)
	f.setStatus("github-old", func(s *v1alpha1.BuildStatus) {
		succeeded(func() *v1alpha1.BuildStatus { phase(v1alpha1.PhaseRunning)(s); return s }())
		old := metav1.NewTime(time.Now().Add(-48 * time.Hour))
		s.CompletionTime = &old
	})
	f.start(checksOnly)
	f.settle("an old finished Build", 0)
	if b := f.get("github-old"); len(b.Finalizers) != 0 || len(b.Status.Reports) != 0 {
		t.Errorf("old Build touched: %v %v", b.Finalizers, b.Status.Reports)
	}
}
