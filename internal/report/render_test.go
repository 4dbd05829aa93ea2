package report

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleBuild(mutate func(*v1alpha1.Build)) *v1alpha1.Build {
	start := metav1.NewTime(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	done := metav1.NewTime(start.Add(83 * time.Second))
	b := &v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "github-1a2b3c"},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: "acme/app",
				Commit: "6dcb09b5b57875f334f61aebed695e2e4193db5e", Ref: "refs/heads/main", Event: v1alpha1.EventPush, InstallationID: 1},
			Target: v1alpha1.Target{Name: "api", Dockerfile: "services/api/Dockerfile", Timeout: &metav1.Duration{Duration: 30 * time.Minute}},
		},
		Status: v1alpha1.BuildStatus{
			Phase: v1alpha1.PhaseSucceeded, StartTime: &start, CompletionTime: &done,
			Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ShortDigest: "0123456789ab",
			Tags: []string{"registry.test/acme/app/api:6dcb09b5b57875f334f61aebed695e2e4193db5e", "registry.test/acme/app/api:main"},
			Timings: map[string]metav1.Duration{
				"queued": {Duration: 1200 * time.Millisecond}, "schedule": {Duration: 800 * time.Millisecond},
				"imagePull": {Duration: 4 * time.Second}, "daemonStart": {Duration: 2100 * time.Millisecond},
				"fetch": {Duration: 900 * time.Millisecond}, "solve": {Duration: 71 * time.Second}, "push": {Duration: 5 * time.Second},
				"build": {Duration: 83 * time.Second}, "custom": {Duration: time.Second},
			},
			Steps: &v1alpha1.Steps{Total: 9, Cached: 6},
		},
	}
	if mutate != nil {
		mutate(b)
	}
	return b
}

func failed(b *v1alpha1.Build) {
	b.Status.Phase, b.Status.Reason, b.Status.Message = v1alpha1.PhaseFailed, "BuildFailed", "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"
	b.Status.Digest, b.Status.Tags = "", nil
	b.Status.Failure = &v1alpha1.Failure{Step: "[build 5/7] RUN make", Line: 12, ExitCode: 2, Message: "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		phase   v1alpha1.Phase
		reason  string
		deleted bool
		want    forge.State
	}{
		{"", "", false, forge.StatePending},
		{v1alpha1.PhaseQueued, "", false, forge.StatePending},
		{v1alpha1.PhasePending, "", false, forge.StatePending},
		{v1alpha1.PhaseRunning, "", false, forge.StateRunning},
		{v1alpha1.PhaseSucceeded, "", false, forge.StateSucceeded},
		{v1alpha1.PhaseFailed, "BuildFailed", false, forge.StateFailed},
		{v1alpha1.PhaseFailed, "ConfigInvalid", false, forge.StateFailed},
		{v1alpha1.PhaseFailed, "OOMKilled", false, forge.StateFailed},
		{v1alpha1.PhaseFailed, "DeadlineExceeded", false, forge.StateTimedOut},
		{v1alpha1.PhaseFailed, "PodLost", false, forge.StateErrored},
		{v1alpha1.PhaseFailed, "SourceFailed", false, forge.StateErrored},
		{v1alpha1.PhaseFailed, "Unschedulable", false, forge.StateErrored},
		{v1alpha1.PhaseCanceled, "Superseded", false, forge.StateCanceled},
		{v1alpha1.PhaseRunning, "", true, forge.StateCanceled},
		{v1alpha1.PhaseQueued, "", true, forge.StateCanceled},
		{v1alpha1.PhaseSucceeded, "", true, forge.StateSucceeded}, // a finished Build keeps its outcome
	} {
		b := &v1alpha1.Build{Status: v1alpha1.BuildStatus{Phase: tc.phase, Reason: tc.reason}}
		if got := StateOf(b, tc.deleted); got != tc.want {
			t.Errorf("StateOf(%s %s deleted=%v) = %s, want %s", tc.phase, tc.reason, tc.deleted, got, tc.want)
		}
	}
}

func TestDescription(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*v1alpha1.Build)
		deleted bool
		want    string
	}{
		{"new", func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{} }, false, "Accepted, waiting to start"},
		{"queued", func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseQueued} }, false, "Queued: waiting for a build slot"},
		{"pending", func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhasePending} }, false, "Starting the build pod"},
		{"running", func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseRunning} }, false, "Building"},
		{"succeeded", nil, false, "Built sha256:0123456789ab in 1m23s"},
		{"fork", func(b *v1alpha1.Build) { b.Spec.Source.Fork = true }, false, "Built sha256:0123456789ab in 1m23s (not pushed: fork)"},
		{"failed step", failed, false, "Failed at [build 5/7] RUN make (exit 2)"},
		{"failed reason", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseFailed, Reason: "ImagePullFailed", Message: "image x\ncould not be pulled"}
		}, false, "ImagePullFailed: image x could not be pulled"},
		{"config invalid", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseFailed, Reason: "ConfigInvalid", Message: ".slipway.yaml line 3: targets[0].dockerfile: \"../x\" must stay inside the repository (no ..)"}
		}, false, "ConfigInvalid: .slipway.yaml line 3: targets[0].dockerfile: \"../x\" must stay inside the repository (no ..)"},
		{"timed out", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseFailed, Reason: "DeadlineExceeded"}
		}, false, "Timed out after 30m00s"},
		{"superseded", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseCanceled, Reason: "Superseded", SupersededBy: "github-x"}
		}, false, "Canceled: superseded by a newer build"},
		{"deleted", func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseRunning} }, true, "Canceled: the build was deleted before it finished"},
		{"long", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseFailed, Reason: "PodLost", Message: strings.Repeat("x", 300)}
		}, false, "PodLost: " + strings.Repeat("x", 130) + "…"},
	} {
		b := sampleBuild(tc.mutate)
		got := Description(b, StateOf(b, tc.deleted), tc.deleted)
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
		if n := len([]rune(got)); n > forge.MaxDescription {
			t.Errorf("%s: %d characters", tc.name, n)
		}
	}
}

// TestSummaryGolden compares check run summaries with testdata/*.md.
func TestSummaryGolden(t *testing.T) {
	logTail := Redact([]string{
		"#9 [build 5/7] RUN make",
		"#9 0.412 cc -o app main.c",
		"#9 0.433 curl -H 'Authorization: Bearer ghs_16C7e42F292c6912E7710c838347Ae178B4a' https://api.github.com",
		"#9 0.501 main.c:3:1: error: expected ';' before '}' token",
		"#9 0.502 ``` not a fence",
		"#9 0.510 make: *** [Makefile:2: all] Error 1",
	})
	for _, tc := range []struct {
		name    string
		mutate  func(*v1alpha1.Build)
		deleted bool
		log     []string
	}{
		{"succeeded", nil, false, nil},
		{"failed", failed, false, logTail},
		{"timed-out", func(b *v1alpha1.Build) {
			b.Status.Phase, b.Status.Reason, b.Status.Message = v1alpha1.PhaseFailed, "DeadlineExceeded", "the build exceeded its timeout"
			b.Status.Digest, b.Status.Tags = "", nil
		}, false, []string{"#7 sleep 3600"}},
		{"canceled", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseCanceled, Reason: "Superseded", SupersededBy: "github-x", Message: "superseded by github-x"}
		}, false, nil},
		{"running", func(b *v1alpha1.Build) {
			b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseRunning, Timings: map[string]metav1.Duration{"queued": {Duration: 300 * time.Millisecond}}}
		}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sampleBuild(tc.mutate)
			s := StateOf(b, tc.deleted)
			got := "<!-- title: " + Title(b, s) + " -->\n" + Summary(b, s, tc.deleted, tc.log)
			golden := filepath.Join("testdata", tc.name+".md")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("summary differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestSummaryLimit(t *testing.T) {
	b := sampleBuild(failed)
	var lines []string
	for i := 0; i < 40; i++ {
		lines = append(lines, strings.Repeat("é", MaxLogLineLength))
	}
	b.Status.Failure.Message = strings.Repeat("m", 30000)
	s := Summary(b, forge.StateFailed, false, Redact(lines))
	if n := len([]rune(s)); n > 65535 {
		t.Fatalf("summary of %d characters", n)
	}
	if !strings.Contains(s, "log lines") {
		t.Error("the log was dropped entirely rather than cut from its start")
	}
}

func TestAnnotations(t *testing.T) {
	b := sampleBuild(failed)
	a := Annotations(b, forge.StateFailed)
	if len(a) != 1 || a[0].Path != "services/api/Dockerfile" || a[0].Line != 12 || a[0].Level != "failure" ||
		a[0].Title != "[build 5/7] RUN make" || !strings.HasPrefix(a[0].Message, "exit code 2: ") {
		t.Errorf("annotations %+v", a)
	}
	b.Status.Failure.Line = 0
	if a := Annotations(b, forge.StateFailed); a != nil {
		t.Errorf("annotation without a line: %+v", a)
	}
	if a := Annotations(sampleBuild(nil), forge.StateSucceeded); a != nil {
		t.Errorf("annotation on success: %+v", a)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"git clone https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz012345@github.com/acme/app": "git clone https://x-access-token:***@github.com/acme/app",
		"using ghp_abcdefghijklmnopqrstuvwxyz0123456789":                                            "using ***",
		"pat github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz":                                       "pat ***",
		"gitlab glpat-abcdefghijklmnopqrst":                                                         "gitlab ***",
		"Authorization: Bearer abc.def.ghi":                                                         "Authorization: Bearer ***",
		"export PASSWORD=hunter22 next":                                                             "export PASSWORD=*** next",
		`{"api_key": "sk-123456"}`:                                                                  `{"api_key": "***"}`,
		"AWS AKIAIOSFODNN7EXAMPLE here":                                                             "AWS *** here",
		"nothing secret here: token bucket":                                                         "nothing secret here: token bucket",
	} {
		if got := Redact([]string{in})[0]; got != want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", in, got, want)
		}
	}
	key := Redact([]string{"-----BEGIN RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA", "abc", "-----END RSA PRIVATE KEY-----", "after"})
	if strings.Join(key, "|") != "-----BEGIN RSA PRIVATE KEY-----***|***|***|***|after" {
		t.Errorf("key block: %q", key)
	}
}

func TestBackoff(t *testing.T) {
	base, max := 2*time.Second, 5*time.Minute
	for n, want := range []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if got := Backoff(n, base, max, 0); got != want {
			t.Errorf("Backoff(%d, jitter 0) = %s, want %s", n, got, want)
		}
	}
	if got := Backoff(3, base, max, 0.999); got < 15*time.Second || got > 16*time.Second {
		t.Errorf("Backoff(3, jitter ~1) = %s", got)
	}
	if got := Backoff(100, base, max, 0.999); got > max {
		t.Errorf("Backoff(100) = %s, above the cap", got)
	}
}

// TestDueReports: a state is due only when a channel's mapping of it differs from what is
// recorded; "running" is nothing new for GitHub statuses.
func TestDueReports(t *testing.T) {
	statuses := Channel{Kind: "github-status", Forge: v1alpha1.ForgeGitHub, State: func(s forge.State) string {
		if s == forge.StateRunning || s == forge.StatePending {
			return "pending"
		}
		return string(s)
	}}
	checks := Channel{Kind: "github-check", Forge: v1alpha1.ForgeGitHub, State: func(s forge.State) string { return string(s) }}
	rec := func(ctx, state string) v1alpha1.Report { return v1alpha1.Report{Context: ctx, State: state} }
	for _, tc := range []struct {
		name    string
		phase   v1alpha1.Phase
		reports []v1alpha1.Report
		want    []string
	}{
		{"new build", "", nil, []string{"github-status/slipway/api=pending", "github-check/slipway/api=pending"}},
		{"pending recorded", v1alpha1.PhasePending, []v1alpha1.Report{rec("github-status/slipway/api", "pending"), rec("github-check/slipway/api", "pending")}, nil},
		{"running", v1alpha1.PhaseRunning, []v1alpha1.Report{rec("github-status/slipway/api", "pending"), rec("github-check/slipway/api", "pending")}, []string{"github-check/slipway/api=running"}},
		{"done, one delivered", v1alpha1.PhaseSucceeded, []v1alpha1.Report{rec("github-status/slipway/api", "succeeded"), rec("github-check/slipway/api", "running")}, []string{"github-check/slipway/api=succeeded"}},
		{"missed everything", v1alpha1.PhaseSucceeded, nil, []string{"github-status/slipway/api=succeeded", "github-check/slipway/api=succeeded"}},
	} {
		b := sampleBuild(func(b *v1alpha1.Build) { b.Status = v1alpha1.BuildStatus{Phase: tc.phase, Reports: tc.reports} })
		var got []string
		for _, d := range dueReports(b, []Channel{statuses, checks}, false) {
			got = append(got, d.key+"="+d.want)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: due %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzRender: whatever a Build's status holds, the texts fit the forges' limits.
func FuzzRender(f *testing.F) {
	f.Add("BuildFailed", "msg", "[1/2] RUN x", int32(3), "line1\nline2", uint8(3))
	f.Fuzz(func(t *testing.T, reason, msg, step string, line int32, log string, phase uint8) {
		phases := []v1alpha1.Phase{"", v1alpha1.PhaseQueued, v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed, v1alpha1.PhaseCanceled}
		b := sampleBuild(func(b *v1alpha1.Build) {
			b.Status.Phase, b.Status.Reason, b.Status.Message = phases[int(phase)%len(phases)], reason, msg
			b.Status.Failure = &v1alpha1.Failure{Step: step, Line: line, Message: msg}
		})
		for _, deleted := range []bool{false, true} {
			s := StateOf(b, deleted)
			if d := Description(b, s, deleted); len([]rune(d)) > forge.MaxDescription || strings.ContainsAny(d, "\n\r") {
				t.Fatalf("description %q", d)
			}
			if sum := Summary(b, s, deleted, Redact(strings.Split(log, "\n"))); len([]rune(sum)) > 65535 {
				t.Fatalf("summary of %d characters", len([]rune(sum)))
			}
			for _, a := range Annotations(b, s) {
				if a.Line <= 0 || a.Path == "" {
					t.Fatalf("annotation %+v", a)
				}
			}
		}
	})
}

func TestPodLogs(t *testing.T) {
	c := k8sfake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "b"}})
	p := PodLogs{Client: c, Container: "build"}
	b := sampleBuild(func(b *v1alpha1.Build) { b.Status.PodName = "b" })
	lines, err := p.Tail(context.Background(), b, 40)
	if err != nil || len(lines) != 1 { // the fake clientset serves "fake logs"
		t.Errorf("Tail = %q, %v", lines, err)
	}
	b.Status.PodName = ""
	if lines, err := p.Tail(context.Background(), b, 40); lines != nil || err != nil {
		t.Errorf("no pod: %q, %v", lines, err)
	}
	got, err := readLines(strings.NewReader("a\nb\nc\nd\n"), 2)
	if err != nil || strings.Join(got, ",") != "c,d" {
		t.Errorf("readLines = %v, %v", got, err)
	}
}
