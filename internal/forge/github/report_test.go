package github

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gh "github.com/google/go-github/v60/github"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github/githubtest"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

const testSHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newApp(t *testing.T, srv *githubtest.Server, clock *fakeClock) *App {
	t.Helper()
	cfg := AppConfig{AppID: srv.AppID, PrivateKey: srv.KeyPEM, APIURL: srv.APIURL(), WebHost: "github.com"}
	if clock != nil {
		cfg.Now = clock.Now
	}
	app, err := NewApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func testSource() v1alpha1.Source {
	return v1alpha1.Source{
		Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: "acme/app", CloneURL: "https://github.com/acme/app.git",
		Commit: testSHA, Ref: "refs/heads/main", Event: v1alpha1.EventPush, InstallationID: 1,
	}
}

func report(state forge.State) forge.Report {
	return forge.Report{
		Source: testSource(), Namespace: "builds", Name: "github-abc", Context: "slipway/default", State: state,
		Description: "Building", TargetURL: "https://slipway.example.com/builds/builds/github-abc?exp=1&sig=x",
		Title: "Build " + string(state), Summary: "## Summary",
	}
}

func body(t *testing.T, r githubtest.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	return m
}

func ghClientWithToken(t *testing.T, srv *githubtest.Server, tok string) *gh.Client {
	t.Helper()
	c, err := gh.NewClient(nil).WithAuthToken(tok).WithEnterpriseURLs(srv.URL, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewAppValidates(t *testing.T) {
	srv := githubtest.New(t)
	for name, cfg := range map[string]AppConfig{
		"no app id":   {PrivateKey: srv.KeyPEM},
		"bad key":     {AppID: 1, PrivateKey: []byte("not a key")},
		"bad api url": {AppID: 1, PrivateKey: srv.KeyPEM, APIURL: "ftp://x"},
	} {
		if _, err := NewApp(cfg); err == nil {
			t.Errorf("%s: NewApp succeeded", name)
		}
	}
	if _, err := NewAppFromKeyFile(AppConfig{AppID: 1}, "/nonexistent/key.pem"); err == nil {
		t.Error("NewAppFromKeyFile with a missing file succeeded")
	}
}

func TestAPIRoot(t *testing.T) {
	for _, tc := range []struct{ in, api, host string }{
		{"", "https://api.github.com/", "github.com"},
		{"https://api.github.com", "https://api.github.com/", "github.com"},
		{"https://ghe.example.com", "https://ghe.example.com/", "ghe.example.com"},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com/api/v3/", "ghe.example.com"},
	} {
		api, host, err := apiRoot(tc.in)
		if err != nil || api != tc.api || host != tc.host {
			t.Errorf("apiRoot(%q) = %q %q %v, want %q %q", tc.in, api, host, err, tc.api, tc.host)
		}
	}
}

// TestInstallationTokenCache: one mint serves calls until shortly before expiry; then one new
// mint; a short-lived token is kept for half its life.
func TestInstallationTokenCache(t *testing.T) {
	ctx := context.Background()
	for _, apiURL := range []string{"", "/api/v3/"} { // GHES URL with and without the API path
		srv := githubtest.New(t)
		clock := &fakeClock{t: time.Now()}
		srv.SetClock(clock.Now)
		app, err := NewApp(AppConfig{AppID: srv.AppID, PrivateKey: srv.KeyPEM, APIURL: srv.URL + apiURL, WebHost: "github.com", Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := NewStatuses(app)
		for i := 0; i < 3; i++ {
			if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(srv.Calls(githubtest.OpMintToken)); n != 1 {
			t.Fatalf("3 calls minted %d tokens, want 1", n)
		}
		clock.Add(54 * time.Minute)
		if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Calls(githubtest.OpMintToken)); n != 1 {
			t.Fatalf("after 54 min %d mints, want still 1", n)
		}
		clock.Add(2 * time.Minute) // 56 min: within 5 minutes of expiry
		if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Calls(githubtest.OpMintToken)); n != 2 {
			t.Fatalf("after 56 min %d mints, want 2", n)
		}
		// The mint body asks for nothing narrower than the installation (and is not "null").
		if b := string(srv.Calls(githubtest.OpMintToken)[0].Body); b != "{}\n" {
			t.Errorf("mint body %q, want {}", b)
		}
	}

	srv := githubtest.New(t)
	clock := &fakeClock{t: time.Now()}
	srv.SetClock(clock.Now)
	srv.SetTokenTTL(4 * time.Minute)
	app := newApp(t, srv, clock)
	st, _ := NewStatuses(app)
	for _, step := range []time.Duration{0, time.Minute, time.Minute, time.Minute} { // t = 0, 1, 2, 3 min
		clock.Add(step)
		if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Calls(githubtest.OpMintToken)); n != 2 {
		t.Fatalf("a 4-minute token was minted %d times in 3 minutes, want 2 (kept for half its life)", n)
	}
}

func TestConcurrentCallsShareOneMint(t *testing.T) {
	srv := githubtest.New(t)
	app := newApp(t, srv, nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := app.InstallationToken(context.Background(), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(srv.Calls(githubtest.OpMintToken)); n != 1 {
		t.Fatalf("%d mints, want 1", n)
	}
}

func TestTokenErrors(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.New(t)
	// Unknown installation: 404, permanent.
	_, err := newApp(t, srv, nil).InstallationToken(ctx, 99)
	if _, permanent := forge.RetryAfter(err); err == nil || !permanent || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown installation: %v", err)
	}
	// A key GitHub does not know: 401.
	other := githubtest.New(t)
	app, err := NewApp(AppConfig{AppID: srv.AppID, PrivateKey: other.KeyPEM, APIURL: srv.APIURL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.InstallationToken(ctx, 1); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong key: %v", err)
	}
	if p := srv.TakeProblems(); len(p) != 1 || !strings.Contains(p[0], "does not verify") {
		t.Errorf("the fake saw %v, want one JWT signature problem", p)
	}
	// A revoked token (401 on use) is replaced and the call made once more with the new one.
	app = newApp(t, srv, nil)
	st, _ := NewStatuses(app)
	fail := true
	srv.SetFault(func(r githubtest.Request) *githubtest.Fault {
		if r.Operation == "repos/create-commit-status" && fail {
			fail = false
			return &githubtest.Fault{Status: http.StatusUnauthorized, Body: `{"message":"Bad credentials"}`}
		}
		return nil
	})
	if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
		t.Fatalf("a refused token was not replaced: %v", err)
	}
	if n := len(srv.Calls(githubtest.OpMintToken)); n != 2 {
		t.Errorf("%d mints, want 2 (the refused token was replaced)", n)
	}
	// Always refused: one retry with a fresh token, then the error, not a loop.
	srv.SetFault(func(r githubtest.Request) *githubtest.Fault {
		if r.Operation == "repos/create-commit-status" {
			return &githubtest.Fault{Status: http.StatusUnauthorized, Body: `{"message":"Bad credentials"}`}
		}
		return nil
	})
	if _, err := st.Report(ctx, report(forge.StatePending)); err == nil {
		t.Fatal("401 was not an error")
	} else if _, permanent := forge.RetryAfter(err); permanent {
		t.Errorf("401 is permanent: %v", err)
	}
	if n := len(srv.Calls(githubtest.OpMintToken)); n != 3 {
		t.Errorf("%d mints, want 3", n)
	}
	srv.SetFault(nil)
}

// TestTokenPredatesRepository: a token minted before a repository joined the installation is
// refused there (404); the App mints a fresh one and the report goes through.
func TestTokenPredatesRepository(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.New(t)
	app := newApp(t, srv, nil)
	st, _ := NewStatuses(app)
	if _, err := st.Report(ctx, report(forge.StatePending)); err != nil {
		t.Fatal(err)
	}
	srv.AddInstallation(githubtest.Installation{ID: 1, Repositories: []string{"acme/app", "acme/new"}, Permissions: map[string]string{
		"statuses": "write", "contents": "read", "metadata": "read",
	}})
	r := report(forge.StatePending)
	r.Source.Repository = "acme/new"
	if _, err := st.Report(ctx, r); err != nil {
		t.Fatalf("a repository added to the installation: %v", err)
	}
	if n := len(srv.Calls(githubtest.OpMintToken)); n != 2 {
		t.Errorf("%d mints, want 2", n)
	}
}

// TestCloneToken: one repository, contents:read, and it cannot write.
func TestCloneToken(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.New(t)
	srv.AddInstallation(githubtest.Installation{ID: 1, Repositories: []string{"acme/app", "acme/secret"}, Permissions: map[string]string{
		"checks": "write", "statuses": "write", "contents": "write", "metadata": "read",
	}})
	app := newApp(t, srv, nil)
	b := &v1alpha1.Build{ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "b"}, Spec: v1alpha1.BuildSpec{Source: testSource()}}
	tok, err := app.CloneToken(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	mints := srv.Calls(githubtest.OpMintToken)
	if len(mints) != 1 {
		t.Fatalf("%d mints", len(mints))
	}
	if got, want := string(mints[0].Body), `{"repositories":["app"],"permissions":{"contents":"read"}}`+"\n"; got != want {
		t.Errorf("mint body %s, want %s", got, want)
	}
	// A second Build mints a second token: clone tokens are never shared.
	if tok2, err := app.CloneToken(ctx, b); err != nil || tok2 == tok {
		t.Errorf("second clone token %v, same=%v", err, tok2 == tok)
	}
	// The clone token can read the repository but not write a status, nor see another repo.
	gh := ghClientWithToken(t, srv, tok)
	if _, resp, err := gh.Repositories.CreateStatus(ctx, "acme", "app", testSHA, StatusRequest(report(forge.StateSucceeded))); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("writing a status with the clone token: %v", err)
	}
	if _, _, resp, err := gh.Repositories.GetContents(ctx, "acme", "secret", "README", nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("reading another repository with the clone token: %v", err)
	}
	// The write is a problem; the read of a repository outside the token is GitHub's normal 404.
	if p := srv.TakeProblems(); len(p) != 1 {
		t.Errorf("problems %v, want the refused write", p)
	}
	// Builds from elsewhere get no token.
	for name, mutate := range map[string]func(*v1alpha1.Source){
		"gitlab":          func(s *v1alpha1.Source) { s.Forge = v1alpha1.ForgeGitLab },
		"other host":      func(s *v1alpha1.Source) { s.Host = "ghe.example.com" },
		"no installation": func(s *v1alpha1.Source) { s.InstallationID = 0 },
	} {
		bb := b.DeepCopy()
		mutate(&bb.Spec.Source)
		if _, err := app.CloneToken(ctx, bb); err == nil {
			t.Errorf("%s: CloneToken succeeded", name)
		}
	}
}

func TestStatusReport(t *testing.T) {
	srv := githubtest.New(t)
	st, _ := NewStatuses(newApp(t, srv, nil))
	r := report(forge.StateFailed)
	r.Description = strings.Repeat("é", 200)
	if _, err := st.Report(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	calls := srv.Calls("repos/create-commit-status")
	if len(calls) != 1 || calls[0].Path != "/repos/acme/app/statuses/"+testSHA {
		t.Fatalf("calls %+v", calls)
	}
	got := body(t, calls[0])
	if got["state"] != "failure" || got["context"] != "slipway/default" || got["target_url"] != r.TargetURL ||
		len([]rune(got["description"].(string))) != 140 || len(got) != 4 {
		t.Errorf("body %v", got)
	}
}

// TestCheckRunLifecycle: queued → in_progress → completed on one check run, each body valid.
func TestCheckRunLifecycle(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.New(t)
	ch, _ := NewChecks(newApp(t, srv, nil), CheckOptions{})
	id, err := ch.Report(ctx, report(forge.StatePending))
	if err != nil || id == "" {
		t.Fatalf("create: %q %v", id, err)
	}
	r := report(forge.StateRunning)
	r.ExternalID, r.StartedAt = id, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got, err := ch.Report(ctx, r); err != nil || got != id {
		t.Fatalf("in_progress: %q %v", got, err)
	}
	r = report(forge.StateTimedOut)
	r.ExternalID, r.CompletedAt = id, time.Date(2026, 1, 2, 3, 34, 5, 0, time.UTC)
	r.Annotations = make([]forge.Annotation, 60)
	for i := range r.Annotations {
		r.Annotations[i] = forge.Annotation{Path: "Dockerfile", Line: i + 1, Message: "x"}
	}
	if _, err := ch.Report(ctx, r); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range srv.Calls("checks/update") {
		if b := body(t, c); b["conclusion"] == "timed_out" {
			if a := b["output"].(map[string]any)["annotations"].([]any); len(a) != MaxAnnotationsPerRequest {
				t.Errorf("%d annotations sent, want %d", len(a), MaxAnnotationsPerRequest)
			}
			if b["completed_at"] != "2026-01-02T03:34:05Z" {
				t.Errorf("completed_at %v", b["completed_at"])
			}
		}
		n++
	}
	create := body(t, srv.Calls("checks/create")[0])
	if create["status"] != "queued" || create["name"] != "slipway/default" || create["head_sha"] != testSHA ||
		create["external_id"] != "builds/github-abc" || create["details_url"] != r.TargetURL {
		t.Errorf("create body %v", create)
	}
	cid := int64(0)
	_ = json.Unmarshal([]byte(id), &cid)
	status, conclusion, ok := srv.CheckRun(cid)
	if !ok || status != "completed" || conclusion != "timed_out" || n != 2 {
		t.Errorf("check run %s %s %v after %d updates", status, conclusion, ok, n)
	}
}

func TestCheckStateMapping(t *testing.T) {
	plain, _ := NewChecks(&App{}, CheckOptions{})
	skip, _ := NewChecks(&App{}, CheckOptions{SkipQueued: true})
	for _, tc := range []struct {
		s                    forge.State
		status, check, skipQ string
	}{
		{forge.StatePending, "pending", "queued", ""},
		{forge.StateRunning, "pending", "in_progress", "in_progress"},
		{forge.StateSucceeded, "success", "success", "success"},
		{forge.StateFailed, "failure", "failure", "failure"},
		{forge.StateErrored, "error", "failure", "failure"},
		{forge.StateCanceled, "error", "cancelled", "cancelled"},
		{forge.StateTimedOut, "failure", "timed_out", "timed_out"},
		{"bogus", "", "", ""},
	} {
		if got := StatusState(tc.s); got != tc.status {
			t.Errorf("StatusState(%s) = %q, want %q", tc.s, got, tc.status)
		}
		if got := plain.State(tc.s); got != tc.check {
			t.Errorf("Checks.State(%s) = %q, want %q", tc.s, got, tc.check)
		}
		if got := skip.State(tc.s); got != tc.skipQ {
			t.Errorf("Checks{SkipQueued}.State(%s) = %q, want %q", tc.s, got, tc.skipQ)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		status    int
		header    http.Header
		after     time.Duration
		permanent bool
	}{
		{"network error", 0, nil, 0, false},
		{"502", 502, h(), 0, false},
		{"503 with Retry-After", 503, h("Retry-After", "7"), 7 * time.Second, false},
		{"429 without headers", 429, h(), time.Minute, false},
		{"429 with reset", 429, h("X-RateLimit-Reset", "1700000030"), 31 * time.Second, false},
		{"secondary limit", 403, h("Retry-After", "60"), time.Minute, false},
		{"primary limit", 403, h("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1700000100"), 101 * time.Second, false},
		{"missing permission", 403, h("X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", "1700000100"), 0, true},
		{"not found", 404, h(), 0, true},
		{"invalid", 422, h(), 0, true},
		{"unauthorized", 401, h(), 0, false},
		{"HTTP date", 503, h("Retry-After", now.Add(90*time.Second).UTC().Format(http.TimeFormat)), 90 * time.Second, false},
		{"absurd Retry-After is capped", 503, h("Retry-After", "99999999"), time.Hour, false},
	} {
		after, permanent := RetryPolicy(tc.status, tc.header, now)
		if after != tc.after || permanent != tc.permanent {
			t.Errorf("%s: RetryPolicy = %s %v, want %s %v", tc.name, after, permanent, tc.after, tc.permanent)
		}
	}
}

// TestRateLimitedReportIsNotRetriedAtOnce: a secondary rate limit comes back as a RetryError
// with GitHub's wait, and nothing sleeps.
func TestRateLimitedReport(t *testing.T) {
	srv := githubtest.New(t)
	st, _ := NewStatuses(newApp(t, srv, nil))
	srv.SetFault(func(r githubtest.Request) *githubtest.Fault {
		if r.Operation == githubtest.OpMintToken {
			return nil
		}
		return &githubtest.Fault{Status: 403, Header: http.Header{"Retry-After": {"30"}},
			Body: `{"message":"You have exceeded a secondary rate limit","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`}
	})
	start := time.Now()
	_, err := st.Report(context.Background(), report(forge.StatePending))
	after, permanent := forge.RetryAfter(err)
	if err == nil || after != 30*time.Second || permanent || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %s permanent %v", err, after, permanent)
	}
}

func TestContents(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.New(t)
	srv.PutFile("acme/app", testSHA, ".slipway.yaml", "targets: []\n")
	srv.SetChanged("acme/app", "main", testSHA, []string{"a/b.go", "README.md"})
	c, _ := NewContents(newApp(t, srv, nil))
	s := testSource()
	data, err := c.ReadFile(ctx, &s, testSHA, ".slipway.yaml")
	if err != nil || string(data) != "targets: []\n" {
		t.Fatalf("ReadFile = %q, %v", data, err)
	}
	if _, err := c.ReadFile(ctx, &s, "main", ".slipway.yaml"); !errors.Is(err, repoconfig.ErrNotFound) {
		t.Errorf("absent file: %v", err)
	}
	files, err := c.ChangedFiles(ctx, &s, "main", testSHA)
	if err != nil || strings.Join(files, ",") != "a/b.go,README.md" {
		t.Errorf("ChangedFiles = %v, %v", files, err)
	}
	if got := srv.Calls("repos/get-content")[0]; got.Path != "/repos/acme/app/contents/.slipway.yaml" {
		t.Errorf("path %s", got.Path)
	}
}

// FuzzCheckRunRequest: whatever a Build's texts hold, the check run and status bodies Slipway
// sends are valid against GitHub's OpenAPI description and its limits.
func FuzzCheckRunRequest(f *testing.F) {
	spec, err := githubtest.LoadSpec("../../../testdata/github/openapi/operations.json")
	if err != nil {
		f.Fatal(err)
	}
	create, _, _ := spec.Find("POST", "/repos/acme/app/check-runs")
	update, _, _ := spec.Find("PATCH", "/repos/acme/app/check-runs/1")
	status, _, _ := spec.Find("POST", "/repos/acme/app/statuses/"+testSHA)
	f.Add("Building", "## Summary\n", "Dockerfile", 3, uint8(2))
	f.Add(strings.Repeat("ü", 300), strings.Repeat("x", 70000), "", -1, uint8(6))
	f.Fuzz(func(t *testing.T, desc, summary, path string, line int, state uint8) {
		states := []forge.State{forge.StatePending, forge.StateRunning, forge.StateSucceeded, forge.StateFailed, forge.StateErrored, forge.StateCanceled, forge.StateTimedOut}
		r := report(states[int(state)%len(states)])
		r.Description, r.Summary, r.Title = desc, summary, desc
		r.Annotations = []forge.Annotation{{Path: path, Line: line, Message: desc}}
		now := time.Now()
		for op, v := range map[*githubtest.Operation]any{
			create: CreateCheckRunRequest(r, now), update: UpdateCheckRunRequest(r, now), status: StatusRequest(r),
		} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if errs := spec.ValidateBody(op, b); len(errs) > 0 {
				t.Fatalf("%s: %v\n%s", op.ID, errs, b)
			}
		}
		if d := StatusRequest(r).Description; d != nil && len([]rune(*d)) > forge.MaxDescription {
			t.Fatalf("description of %d characters", len([]rune(*d)))
		}
	})
}

// Compile-time checks of the contracts the rest of Slipway relies on.
var (
	_ forge.Reporter    = (*Statuses)(nil)
	_ forge.Reporter    = (*Checks)(nil)
	_ forge.TokenSource = (*App)(nil)
	_ repoconfig.Reader = (*Contents)(nil)
)
