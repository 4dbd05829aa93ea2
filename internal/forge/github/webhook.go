// Package github is Slipway's GitHub App forge: webhook verification and parsing here, API
// clients (tokens, statuses, check runs) beside it. go-github stays inside this package so that
// a move to a newer major touches nothing else.
package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// Header names GitHub sends with every delivery.
const (
	HeaderSignature256 = "X-Hub-Signature-256"
	HeaderEvent        = "X-GitHub-Event"
	HeaderDelivery     = "X-GitHub-Delivery"
)

// Receiver verifies X-Hub-Signature-256 and turns GitHub App deliveries into build requests.
type Receiver struct {
	secret []byte
}

// NewReceiver returns a Receiver for the App's webhook secret. An empty secret is refused:
// it would make every signature check meaningless.
func NewReceiver(secret []byte) (*Receiver, error) {
	if len(secret) == 0 {
		return nil, errors.New("github webhook secret is empty")
	}
	return &Receiver{secret: secret}, nil
}

// Receive implements forge.Receiver.
func (r *Receiver) Receive(h http.Header, body []byte) (forge.Delivery, error) {
	if err := VerifySignature(r.secret, h.Get(HeaderSignature256), body); err != nil {
		return forge.Delivery{}, err
	}
	event := h.Get(HeaderEvent)
	if event == "" {
		return forge.Delivery{}, forge.Invalidf("missing %s header", HeaderEvent)
	}
	d, err := Parse(event, body)
	if err != nil {
		return forge.Delivery{}, err
	}
	d.ID = h.Get(HeaderDelivery)
	return d, nil
}

// VerifySignature checks a "sha256=<hex>" HMAC of body in constant time. The SHA-1
// X-Hub-Signature is deliberately not accepted: GitHub always sends the SHA-256 one too, so a
// delivery with only SHA-1 is not from GitHub, or is a downgrade attempt.
func VerifySignature(secret []byte, header string, body []byte) error {
	if header == "" {
		return fmt.Errorf("%w: missing %s header", forge.ErrUnauthenticated, HeaderSignature256)
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return fmt.Errorf("%w: %s is not a sha256 signature", forge.ErrUnauthenticated, HeaderSignature256)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: %s is not a hex SHA-256", forge.ErrUnauthenticated, HeaderSignature256)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: signature does not match", forge.ErrUnauthenticated)
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value GitHub would send; tests and hack/ tools use it.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Parse normalises one verified delivery. It is a pure function of its inputs.
func Parse(event string, body []byte) (forge.Delivery, error) {
	switch event {
	case "push", "pull_request", "check_suite", "check_run",
		"ping", "installation", "installation_repositories":
	default:
		return forge.Delivery{Event: event, Ignored: fmt.Sprintf("event %q does not trigger builds", forge.Truncate(event))}, nil
	}
	payload, err := gh.ParseWebHook(event, body)
	if err != nil {
		return forge.Delivery{}, forge.Invalidf("%s payload: %v", event, err)
	}
	d := forge.Delivery{Event: event}
	switch e := payload.(type) {
	case *gh.PushEvent:
		return push(d, e)
	case *gh.PullRequestEvent:
		return pullRequest(d, e)
	case *gh.CheckSuiteEvent:
		d.Action = e.GetAction()
		d.Sender = e.GetSender().GetLogin()
		if d.Action != "rerequested" {
			d.Ignored = fmt.Sprintf("check_suite action %q does not trigger builds", forge.Truncate(d.Action))
			return d, nil
		}
		cs := e.GetCheckSuite()
		return rerun(d, e.GetRepo(), e.GetInstallation(), cs.GetHeadSHA(), cs.GetHeadBranch(), cs.PullRequests)
	case *gh.CheckRunEvent:
		d.Action = e.GetAction()
		d.Sender = e.GetSender().GetLogin()
		if d.Action != "rerequested" {
			d.Ignored = fmt.Sprintf("check_run action %q does not trigger builds", forge.Truncate(d.Action))
			return d, nil
		}
		cr := e.GetCheckRun()
		// Re-running one check run rebuilds only its target; other names mean every target.
		d.Target = forge.TargetFromContext(cr.GetName())
		return rerun(d, e.GetRepo(), e.GetInstallation(), cr.GetHeadSHA(), cr.GetCheckSuite().GetHeadBranch(), cr.PullRequests)
	case *gh.PingEvent:
		d.Ignored = "ping"
		return d, nil
	case *gh.InstallationEvent:
		d.Action = e.GetAction()
		d.Sender = e.GetSender().GetLogin()
		d.Ignored = fmt.Sprintf("installation %d %s", e.GetInstallation().GetID(), forge.Truncate(d.Action))
		return d, nil
	case *gh.InstallationRepositoriesEvent:
		d.Action = e.GetAction()
		d.Sender = e.GetSender().GetLogin()
		d.Ignored = fmt.Sprintf("installation %d repositories %s (+%d -%d)", e.GetInstallation().GetID(),
			forge.Truncate(d.Action), len(e.RepositoriesAdded), len(e.RepositoriesRemoved))
		return d, nil
	}
	return forge.Delivery{}, forge.Invalidf("unexpected payload type %T for event %q", payload, event)
}

func push(d forge.Delivery, e *gh.PushEvent) (forge.Delivery, error) {
	d.Sender = e.GetSender().GetLogin()
	if e.GetDeleted() || e.GetAfter() == forge.ZeroSHA {
		d.Ignored = fmt.Sprintf("%s was deleted", forge.Truncate(e.GetRef()))
		return d, nil
	}
	ev := v1alpha1.EventPush
	switch {
	case strings.HasPrefix(e.GetRef(), "refs/tags/"):
		ev = v1alpha1.EventTag
	case strings.HasPrefix(e.GetRef(), "refs/heads/"):
	default:
		return forge.Delivery{}, forge.Invalidf("push ref %q is neither a branch nor a tag", forge.Truncate(e.GetRef()))
	}
	repo := e.GetRepo()
	s, err := source(repo.GetHTMLURL(), repo.GetFullName(), repo.GetCloneURL(), repo.GetDefaultBranch(), e.GetInstallation().GetID())
	if err != nil {
		return forge.Delivery{}, err
	}
	s.Commit, s.Ref, s.Event = e.GetAfter(), e.GetRef(), ev
	if forge.IsSHA(e.GetBefore()) {
		d.Before = e.GetBefore()
	}
	d.Source = s
	return d, forge.ValidateSource(s)
}

func pullRequest(d forge.Delivery, e *gh.PullRequestEvent) (forge.Delivery, error) {
	d.Action = e.GetAction()
	d.Sender = e.GetSender().GetLogin()
	switch d.Action {
	case "opened", "synchronize", "reopened":
	default:
		d.Ignored = fmt.Sprintf("pull_request action %q does not trigger builds", forge.Truncate(d.Action))
		return d, nil
	}
	pr := e.GetPullRequest()
	if pr == nil {
		return forge.Delivery{}, forge.Invalidf("pull_request payload without pull_request")
	}
	repo := e.GetRepo()
	s, err := source(repo.GetHTMLURL(), repo.GetFullName(), repo.GetCloneURL(), repo.GetDefaultBranch(), e.GetInstallation().GetID())
	if err != nil {
		return forge.Delivery{}, err
	}
	n := int64(pr.GetNumber())
	if n == 0 {
		n = int64(e.GetNumber())
	}
	s.Commit = pr.GetHead().GetSHA()
	// refs/pull/N/head lives in the base repository even for forks, so the builder always
	// fetches from the base repository and never needs access to the fork.
	s.Ref = fmt.Sprintf("refs/pull/%d/head", n)
	s.Event = v1alpha1.EventPullRequest
	s.Number = n
	s.BaseRef = pr.GetBase().GetRef()
	// A deleted fork leaves head.repo null: treat it as a fork, the safe side.
	head := pr.GetHead().GetRepo()
	s.Fork = head == nil || head.GetID() != repo.GetID()
	d.Source = s
	return d, forge.ValidateSource(s)
}

// rerun handles check_suite and check_run "rerequested": a person pressed "Re-run" on GitHub,
// which asks for a fresh Build of the same commit.
func rerun(d forge.Delivery, repo *gh.Repository, inst *gh.Installation, sha, branch string, prs []*gh.PullRequest) (forge.Delivery, error) {
	s, err := source(repo.GetHTMLURL(), repo.GetFullName(), repo.GetCloneURL(), repo.GetDefaultBranch(), inst.GetID())
	if err != nil {
		return forge.Delivery{}, err
	}
	s.Commit, s.Event = sha, v1alpha1.EventRerun
	switch {
	case branch != "":
		s.Ref = "refs/heads/" + branch
	case len(prs) > 0 && prs[0].GetNumber() > 0:
		s.Ref = fmt.Sprintf("refs/pull/%d/head", prs[0].GetNumber())
		s.Number = int64(prs[0].GetNumber())
	default:
		d.Ignored = "rerun of a commit with neither a branch nor a pull request"
		return d, nil
	}
	d.Source = s
	return d, forge.ValidateSource(s)
}

// source fills the repository part of a Source. The host comes from the repository's web URL
// so that GitHub Enterprise Server deliveries name their own host.
func source(htmlURL, fullName, cloneURL, defaultBranch string, installationID int64) (*v1alpha1.Source, error) {
	if fullName == "" {
		return nil, forge.Invalidf("payload has no repository.full_name")
	}
	u, err := url.Parse(htmlURL)
	if err != nil || u.Host == "" {
		return nil, forge.Invalidf("repository.html_url %q is not a URL", forge.Truncate(htmlURL))
	}
	return &v1alpha1.Source{
		Forge:          v1alpha1.ForgeGitHub,
		Host:           u.Host,
		Repository:     fullName,
		CloneURL:       cloneURL,
		DefaultBranch:  defaultBranch,
		InstallationID: installationID,
	}, nil
}
