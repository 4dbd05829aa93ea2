// Package submit hands a build to Slipway from a CI job (the GitHub Action): it turns the job's
// environment into a Build, creates it through the Kubernetes API, and follows it to the end.
// The job needs only a kubeconfig allowed to create and watch Builds in one namespace; no
// Slipway endpoint, forge token or registry credential passes through the job.
package submit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// Options are what the workflow says about the build; the rest comes from the job's context.
type Options struct {
	Namespace string
	Target    v1alpha1.Target
}

// FromGitHubActions builds the Build for the job described by getenv (GitHub's documented
// GITHUB_* variables). The name derives from the run, attempt and target, so a retried step
// finds the Build it already created, and a re-run of the job makes a new one.
func FromGitHubActions(getenv func(string) string, o Options, now time.Time) (*v1alpha1.Build, error) {
	need := func(k string) (string, error) {
		v := getenv(k)
		if v == "" {
			return "", fmt.Errorf("%s is not set: run inside a GitHub Actions job", k)
		}
		return v, nil
	}
	var vals [5]string
	for i, k := range []string{"GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_REF", "GITHUB_SERVER_URL", "GITHUB_RUN_ID"} {
		v, err := need(k)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	repo, sha, ref, server, runID := vals[0], vals[1], vals[2], vals[3], vals[4]
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("GITHUB_SERVER_URL %q is not an http(s) URL", forge.Truncate(server))
	}
	attempt := getenv("GITHUB_RUN_ATTEMPT")
	if attempt == "" {
		attempt = "1"
	}
	s := v1alpha1.Source{
		Forge:      v1alpha1.ForgeGitHub,
		Host:       u.Host,
		Repository: repo,
		CloneURL:   strings.TrimSuffix(server, "/") + "/" + repo + ".git",
		Commit:     sha,
		Ref:        ref,
		Event:      eventFor(getenv("GITHUB_EVENT_NAME"), ref),
	}
	if s.Event == v1alpha1.EventPullRequest {
		// refs/pull/N/merge: GITHUB_SHA is the merge commit, which that ref carries.
		parts := strings.Split(ref, "/")
		n, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("GITHUB_REF %q is not a pull request ref", forge.Truncate(ref))
		}
		s.Number = n
		s.BaseRef = getenv("GITHUB_BASE_REF")
	}
	if err := forge.ValidateSource(&s); err != nil {
		return nil, fmt.Errorf("the job's context: %w", err)
	}
	t := o.Target
	if t.Name == "" {
		t.Name = "default"
	}
	delivery := "actions/" + repo + "/" + runID + "/" + attempt
	at := metav1.NewTime(now.UTC().Truncate(time.Second))
	return &v1alpha1.Build{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Build"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(delivery, t.Name),
			Namespace: o.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelForge:       string(s.Forge),
				v1alpha1.LabelEvent:       string(s.Event),
				v1alpha1.LabelTarget:      t.Name,
				v1alpha1.LabelCommitShort: sha[:7],
			},
		},
		Spec: v1alpha1.BuildSpec{
			Source:  s,
			Trigger: v1alpha1.Trigger{DeliveryID: delivery, Sender: getenv("GITHUB_ACTOR"), ReceivedAt: &at},
			Target:  t,
		},
	}, nil
}

// Name is "actions-<hash>-<target>", DNS-safe like intake's names.
func Name(delivery, target string) string {
	sum := sha256.Sum256([]byte(delivery))
	return "actions-" + hex.EncodeToString(sum[:8]) + "-" + target
}

func eventFor(name, ref string) v1alpha1.Event {
	switch {
	case (name == "pull_request" || name == "pull_request_target") && strings.HasPrefix(ref, "refs/pull/"):
		return v1alpha1.EventPullRequest
	case strings.HasPrefix(ref, "refs/tags/"):
		return v1alpha1.EventTag
	case name == "push":
		return v1alpha1.EventPush
	}
	return v1alpha1.EventManual // workflow_dispatch, schedule, …: never superseded
}
