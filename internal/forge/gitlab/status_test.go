package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/gitlab/gitlabtest"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

const glSHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"

func newAPI(t *testing.T, srv *gitlabtest.Server) *API {
	t.Helper()
	a, err := NewAPI(APIConfig{URL: srv.URL, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func glSource(srv *gitlabtest.Server) v1alpha1.Source {
	return v1alpha1.Source{
		Forge: v1alpha1.ForgeGitLab, Host: strings.TrimPrefix(srv.URL, "http://"), Repository: "group/app",
		CloneURL: srv.URL + "/group/app.git", Commit: glSHA, Ref: "refs/heads/main", Event: v1alpha1.EventPush, ProjectID: 1,
	}
}

func glReport(srv *gitlabtest.Server, s forge.State) forge.Report {
	return forge.Report{Source: glSource(srv), Namespace: "builds", Name: "gitlab-x", Context: "slipway/default", State: s,
		Description: "Building", TargetURL: "https://slipway.example.com/builds/builds/gitlab-x?sig=1"}
}

func TestNewAPI(t *testing.T) {
	for _, tc := range []struct{ url, host string }{
		{"https://gitlab.example.com", "gitlab.example.com"},
		{"https://gitlab.example.com/api/v4/", "gitlab.example.com"},
		{"https://example.com/gitlab", "example.com"},
	} {
		a, err := NewAPI(APIConfig{URL: tc.url, Token: "t"})
		if err != nil || a.Host() != tc.host || !strings.HasSuffix(a.client.BaseURL().Path, "/api/v4/") {
			t.Errorf("NewAPI(%s) = %v, %v", tc.url, a, err)
		}
	}
	for _, cfg := range []APIConfig{{URL: "https://x"}, {URL: "gitlab.example.com", Token: "t"}} {
		if _, err := NewAPI(cfg); err == nil {
			t.Errorf("NewAPI(%+v) succeeded", cfg)
		}
	}
}

// TestStatusLifecycle: pending → running → success on one status, with exactly GitLab's body.
func TestStatusLifecycle(t *testing.T) {
	srv := gitlabtest.New(t)
	a := newAPI(t, srv)
	for _, s := range []forge.State{forge.StatePending, forge.StateRunning, forge.StateSucceeded} {
		if _, err := a.Report(context.Background(), glReport(srv, s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	calls := srv.Calls("statuses")
	if len(calls) != 3 {
		t.Fatalf("%d calls", len(calls))
	}
	if calls[0].Path != "/api/v4/projects/1/statuses/"+glSHA {
		t.Errorf("path %s", calls[0].Path)
	}
	want := `{"state":"running","ref":"main","name":"slipway/default","target_url":"https://slipway.example.com/builds/builds/gitlab-x?sig=1","description":"Building"}`
	if got := strings.TrimSpace(string(calls[1].Body)); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	if st, _ := srv.StatusOf(1, glSHA, "slipway/default"); st.State != "success" {
		t.Errorf("final state %q", st.State)
	}
}

// TestForkReportsToSourceProject: a merge request from a fork reports to the fork's commit.
func TestForkReportsToSourceProject(t *testing.T) {
	srv := gitlabtest.New(t)
	srv.AddProject(9, "someone/app")
	a := newAPI(t, srv)
	r := glReport(srv, forge.StatePending)
	r.Source.Event, r.Source.Ref, r.Source.Number, r.Source.SourceProjectID, r.Source.Fork = v1alpha1.EventMergeRequest, "refs/merge-requests/3/head", 3, 9, true
	if _, err := a.Report(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	c := srv.Calls("statuses")
	if len(c) != 1 || c[0].Project != "9" {
		t.Fatalf("calls %+v", c)
	}
	var b map[string]any
	_ = json.Unmarshal(c[0].Body, &b)
	if _, hasRef := b["ref"]; hasRef {
		t.Errorf("merge request status names ref %v", b["ref"])
	}
}

// TestRepeatedStateIsNotAnError: a state GitLab already has (an earlier report went through
// but was not recorded) counts as delivered.
func TestRepeatedStateIsNotAnError(t *testing.T) {
	srv := gitlabtest.New(t)
	a := newAPI(t, srv)
	for i := 0; i < 2; i++ {
		if _, err := a.Report(context.Background(), glReport(srv, forge.StateRunning)); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// An earlier state than the current one is a real error.
	if _, err := a.Report(context.Background(), glReport(srv, forge.StatePending)); err == nil {
		t.Error("running → pending accepted")
	}
}

func TestStatusErrors(t *testing.T) {
	srv := gitlabtest.New(t)
	a := newAPI(t, srv)
	srv.SetFault(func(gitlabtest.Request) *gitlabtest.Fault {
		return &gitlabtest.Fault{Status: 503, Header: http.Header{"Retry-After": {"12"}}, Body: `{"message":"down"}`}
	})
	start := time.Now()
	_, err := a.Report(context.Background(), glReport(srv, forge.StatePending))
	if after, perm := forge.RetryAfter(err); err == nil || after != 12*time.Second || perm || time.Since(start) > 5*time.Second {
		t.Errorf("503: %v after=%s permanent=%v (go-gitlab must not retry or sleep)", err, after, perm)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests for one report, want 1 (no client-side retries)", n)
	}
	srv.SetFault(nil)
	bad, _ := NewAPI(APIConfig{URL: srv.URL, Token: "wrong"})
	_, err = bad.Report(context.Background(), glReport(srv, forge.StatePending))
	if _, perm := forge.RetryAfter(err); err == nil || !perm {
		t.Errorf("401: %v", err)
	}
	srv.TakeProblems()
	r := glReport(srv, forge.StatePending)
	r.Source.Forge = v1alpha1.ForgeGitHub
	if _, err := a.Report(context.Background(), r); err == nil {
		t.Error("a GitHub Build was reported to GitLab")
	}
}

func TestStatusStateMapping(t *testing.T) {
	for s, want := range map[forge.State]string{
		forge.StatePending: "pending", forge.StateRunning: "running", forge.StateSucceeded: "success",
		forge.StateFailed: "failed", forge.StateErrored: "failed", forge.StateTimedOut: "failed",
		forge.StateCanceled: "canceled", "x": "",
	} {
		if got := StatusState(s); got != want {
			t.Errorf("StatusState(%s) = %q, want %q", s, got, want)
		}
	}
}

func TestReadFileAndChanges(t *testing.T) {
	srv := gitlabtest.New(t)
	srv.PutFile(1, glSHA, ".slipway.yaml", "version: 1\n")
	srv.SetChanged(1, "main", glSHA, []string{"a.go"})
	a := newAPI(t, srv)
	s := glSource(srv)
	if b, err := a.ReadFile(context.Background(), &s, glSHA, ".slipway.yaml"); err != nil || string(b) != "version: 1\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := a.ReadFile(context.Background(), &s, "main", ".slipway.yaml"); !errors.Is(err, repoconfig.ErrNotFound) {
		t.Errorf("absent: %v", err)
	}
	if f, err := a.ChangedFiles(context.Background(), &s, "main", glSHA); err != nil || strings.Join(f, ",") != "a.go" {
		t.Errorf("ChangedFiles = %v, %v", f, err)
	}
}

// FuzzStatusRequest: any description and target survive GitLab's limits.
func FuzzStatusRequest(f *testing.F) {
	f.Add("Building", "https://x/y", "refs/heads/main", uint8(0))
	f.Add(strings.Repeat("€", 400), "", "refs/tags/v1", uint8(5))
	f.Fuzz(func(t *testing.T, desc, target, ref string, state uint8) {
		states := []forge.State{forge.StatePending, forge.StateRunning, forge.StateSucceeded, forge.StateFailed, forge.StateErrored, forge.StateCanceled, forge.StateTimedOut}
		r := forge.Report{Context: "slipway/x", State: states[int(state)%len(states)], Description: desc, TargetURL: target}
		r.Source.Ref = ref
		o := StatusRequest(r)
		if o.State == "" {
			t.Fatal("no state")
		}
		if o.Description != nil && len([]rune(*o.Description)) > MaxDescription {
			t.Fatalf("description of %d characters", len([]rune(*o.Description)))
		}
		switch {
		case strings.HasPrefix(ref, "refs/heads/") && (o.Ref == nil || *o.Ref != strings.TrimPrefix(ref, "refs/heads/")),
			strings.HasPrefix(ref, "refs/tags/") && (o.Ref == nil || *o.Ref != strings.TrimPrefix(ref, "refs/tags/")):
			t.Fatalf("ref %q sent as %v", ref, o.Ref)
		case !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/") && o.Ref != nil:
			t.Fatalf("ref %q sent as %q", ref, *o.Ref)
		}
	})
}

var (
	_ forge.Reporter    = (*API)(nil)
	_ repoconfig.Reader = (*API)(nil)
)
