package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/submit"
)

// TestSubmitFollowsTheBuild runs the Action's command against the real API server while the
// test plays the controller, and checks the step outputs.
func TestSubmitFollowsTheBuild(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "submit-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "github_output")
	for k, v := range map[string]string{
		"GITHUB_REPOSITORY": "acme/app", "GITHUB_SHA": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
		"GITHUB_REF": "refs/heads/main", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "7",
		"GITHUB_EVENT_NAME": "push", "GITHUB_OUTPUT": outFile,
	} {
		t.Setenv(k, v)
	}
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	for i, final := range []v1alpha1.Phase{v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed} {
		t.Setenv("GITHUB_RUN_ATTEMPT", string(rune('1'+i)))
		b, err := submit.FromGitHubActions(os.Getenv, submit.Options{Namespace: ns.Name, Target: v1alpha1.Target{Name: "web", Tags: []string{"{sha}"}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		go playController(t, client.ObjectKeyFromObject(b), final)
		var out bytes.Buffer
		cmd := newSubmitCommand()
		cmd.SetOut(&out)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = runSubmit(ctx, cmd, c, b, true)
		cancel()
		var sf submitFailed
		if (final == v1alpha1.PhaseSucceeded) != (err == nil) || err != nil && !errors.As(err, &sf) {
			t.Fatalf("final %s: err %v\n%s", final, err, out.String())
		}
		for _, want := range []string{"created build", "Queued", "Running", string(final)} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	}
	data, _ := os.ReadFile(outFile)
	if !strings.Contains(string(data), "phase=Succeeded\n") || !strings.Contains(string(data), "image=reg.test/acme/app@sha256:") {
		t.Fatalf("GITHUB_OUTPUT:\n%s", data)
	}

	// A retried step (same run and attempt) attaches to the Build it created.
	b, _ := submit.FromGitHubActions(os.Getenv, submit.Options{Namespace: ns.Name, Target: v1alpha1.Target{Name: "web"}}, time.Now())
	var out bytes.Buffer
	cmd := newSubmitCommand()
	cmd.SetOut(&out)
	_ = runSubmit(context.Background(), cmd, c, b, false)
	if !strings.Contains(out.String(), "attached to build") {
		t.Fatalf("retry: %s", out.String())
	}
}

// playController moves the Build through its phases as the controller would.
func playController(t *testing.T, key client.ObjectKey, final v1alpha1.Phase) {
	ctx := context.Background()
	for _, p := range []v1alpha1.Phase{v1alpha1.PhaseQueued, v1alpha1.PhasePending, v1alpha1.PhaseRunning, final} {
		for {
			var b v1alpha1.Build
			if err := env.Client.Get(ctx, key, &b); err != nil {
				time.Sleep(20 * time.Millisecond) // not created yet
				continue
			}
			b.Status.Phase = p
			if p == v1alpha1.PhaseSucceeded {
				b.Status.Digest = "sha256:" + strings.Repeat("ab", 32)
				b.Status.Tags = []string{"reg.test/acme/app:6113728f27ae82c7b1a177c8d03f9e96e0adf246"}
			}
			if p == v1alpha1.PhaseFailed {
				b.Status.Reason = "BuildFailed"
			}
			if err := env.Client.Status().Update(ctx, &b); err == nil {
				break
			}
		}
	}
}
