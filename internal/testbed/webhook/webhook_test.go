package webhook

import (
	"testing"

	"github.com/slipway-dev/slipway/internal/forge/github"
)

// TestGitHubPush: the rewritten example still parses as the push it claims to be.
func TestGitHubPush(t *testing.T) {
	const sha = "1111111111111111111111111111111111111111"
	body, err := GitHub("push.none.4.json", Repo{FullName: "acme/app", HTMLURL: "http://git.test/acme/app",
		CloneURL: "http://git.test/acme/app.git", Installation: 7}, Push(sha))
	if err != nil {
		t.Fatal(err)
	}
	d, err := github.Parse("push", body)
	if err != nil {
		t.Fatal(err)
	}
	s := d.Source
	if s == nil || s.Repository != "acme/app" || s.Host != "git.test" || s.Commit != sha || s.Ref != "refs/heads/main" || s.InstallationID != 7 || s.CloneURL != "http://git.test/acme/app.git" {
		t.Errorf("parsed %+v", s)
	}
}
