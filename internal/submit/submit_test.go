package submit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

const sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"

func env(over map[string]string) func(string) string {
	m := map[string]string{
		"GITHUB_REPOSITORY": "acme/app", "GITHUB_SHA": sha, "GITHUB_REF": "refs/heads/main",
		"GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "1",
		"GITHUB_EVENT_NAME": "push", "GITHUB_ACTOR": "octocat",
	}
	for k, v := range over {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func TestFromGitHubActions(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		over  map[string]string
		event v1alpha1.Event
		err   string
	}{
		{"push", nil, v1alpha1.EventPush, ""},
		{"tag", map[string]string{"GITHUB_REF": "refs/tags/v1"}, v1alpha1.EventTag, ""},
		{"pull request", map[string]string{"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/9/merge", "GITHUB_BASE_REF": "main"}, v1alpha1.EventPullRequest, ""},
		{"dispatch", map[string]string{"GITHUB_EVENT_NAME": "workflow_dispatch"}, v1alpha1.EventManual, ""},
		{"ghes", map[string]string{"GITHUB_SERVER_URL": "https://ghe.example.com"}, v1alpha1.EventPush, ""},
		{"outside actions", map[string]string{"GITHUB_SHA": ""}, "", "GITHUB_SHA is not set"},
		{"short sha", map[string]string{"GITHUB_SHA": "abc"}, "", "40-hex"},
		{"hostile repo", map[string]string{"GITHUB_REPOSITORY": "a/b;rm"}, "", "owner/name"},
		{"odd ref", map[string]string{"GITHUB_REF": "refs/remotes/x"}, "", "not a valid"},
		{"bad server", map[string]string{"GITHUB_SERVER_URL": "file:///etc"}, "", "http(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := FromGitHubActions(env(tc.over), Options{Namespace: "builds"}, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Spec.Source.Event != tc.event || b.Spec.Source.Commit != sha || b.Namespace != "builds" || b.Spec.Target.Name != "default" {
				t.Fatalf("build %+v", b.Spec)
			}
			if tc.name == "pull request" && (b.Spec.Source.Number != 9 || b.Spec.Source.BaseRef != "main") {
				t.Fatalf("pull request fields %+v", b.Spec.Source)
			}
			if tc.name == "ghes" && b.Spec.Source.CloneURL != "https://ghe.example.com/acme/app.git" {
				t.Fatalf("clone URL %s", b.Spec.Source.CloneURL)
			}
		})
	}
	a, _ := FromGitHubActions(env(nil), Options{}, now)
	again, _ := FromGitHubActions(env(nil), Options{}, now)
	rerun, _ := FromGitHubActions(env(map[string]string{"GITHUB_RUN_ATTEMPT": "2"}), Options{}, now)
	if a.Name != again.Name || a.Name == rerun.Name {
		t.Fatalf("names: %s %s %s; a retried step must reuse, a re-run must not", a.Name, again.Name, rerun.Name)
	}
}

func TestOutputs(t *testing.T) {
	b := &v1alpha1.Build{}
	b.Name = "actions-x-default"
	b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseSucceeded, Digest: "sha256:ab",
		Tags: []string{"10.244.0.1:15443/builds/acme/app:" + sha}}
	o := Outputs(b)
	if o["image"] != "10.244.0.1:15443/builds/acme/app@sha256:ab" || o["phase"] != "Succeeded" {
		t.Fatalf("outputs %v", o)
	}
	path := filepath.Join(t.TempDir(), "out")
	if err := WriteOutputs(path, o); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "digest=sha256:ab\n") || !strings.Contains(string(data), "image=10.244.0.1:15443/builds/acme/app@sha256:ab\n") {
		t.Fatalf("file:\n%s", data)
	}
	if err := WriteOutputs(path, map[string]string{"reason": "x\nimage=evil"}); err == nil {
		t.Fatal("a value with a newline could forge another output")
	}
}
