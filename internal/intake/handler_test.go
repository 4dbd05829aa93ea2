package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/intake"
	"github.com/slipway-dev/slipway/internal/testbed/apiserver"
)

var env *apiserver.Env

func TestMain(m *testing.M) {
	os.Exit(apiserver.RunTests(m, func(e *apiserver.Env) { env = e }))
}

var (
	githubSecret = []byte("github-secret")
	gitlabToken  = []byte("gitlab-token")
	gitlabSign   = []byte("gitlab-signing-key")
	// now is the fixed clock; GitLab signatures are made for it.
	now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
)

// server is a real intake handler in front of the real API server, in a namespace of its own
// so that each test can count exactly the Builds it caused.
type server struct {
	*httptest.Server
	ns  string
	reg *prometheus.Registry
}

func newServer(t testing.TB, withSigning bool) *server {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "intake-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	gh, err := github.NewReceiver(githubSecret)
	if err != nil {
		t.Fatal(err)
	}
	var signing []byte
	if withSigning {
		signing = gitlabSign
	}
	gl, err := gitlab.NewReceiver(gitlabToken, signing, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := intake.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := intake.NewHandler(intake.Options{
		Client:    env.Client,
		Namespace: ns.Name,
		Receivers: map[v1alpha1.Forge]forge.Receiver{v1alpha1.ForgeGitHub: gh, v1alpha1.ForgeGitLab: gl},
		Metrics:   metrics,
		Now:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return &server{Server: s, ns: ns.Name, reg: reg}
}

func (s *server) post(t testing.TB, path string, h http.Header, body []byte) (int, intake.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r intake.Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, r
}

func (s *server) builds(t testing.TB) []v1alpha1.Build {
	t.Helper()
	var l v1alpha1.BuildList
	if err := env.Client.List(context.Background(), &l, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func githubHeaders(event, delivery string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(github.HeaderEvent, event)
	if delivery != "" {
		h.Set(github.HeaderDelivery, delivery)
	}
	h.Set(github.HeaderSignature256, github.Sign(githubSecret, body))
	return h
}

func gitlabHeaders(event, id string, body []byte, signed bool) http.Header {
	h := http.Header{}
	h.Set(gitlab.HeaderEvent, event)
	h.Set(gitlab.HeaderToken, string(gitlabToken))
	h.Set(gitlab.HeaderEventUUID, id)
	if signed {
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set(gitlab.HeaderWebhookID, id)
		h.Set(gitlab.HeaderTimestamp, ts)
		h.Set(gitlab.HeaderSignature, "v1,"+gitlab.Sign(gitlabSign, id, ts, body))
	}
	return h
}

// checkDelivery asserts what one fixture must lead to: a Build equal to what intake derives
// from the parsed delivery, stored by the real API server with its defaults; or an ignore
// reason and no Build.
func checkDelivery(t *testing.T, s *server, f v1alpha1.Forge, want forge.Delivery, code int, resp intake.Response, before int) {
	t.Helper()
	if want.Source == nil {
		if code != http.StatusOK || resp.Ignored == "" || len(resp.Builds) != 0 {
			t.Fatalf("ignored delivery answered %d %+v", code, resp)
		}
		if n := len(s.builds(t)); n != before {
			t.Fatalf("ignored delivery created a Build (%d → %d)", before, n)
		}
		return
	}
	if code != http.StatusAccepted || len(resp.Builds) != 1 || resp.Builds[0].Duplicate {
		t.Fatalf("buildable delivery answered %d %+v", code, resp)
	}
	var b v1alpha1.Build
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: resp.Builds[0].Name}, &b); err != nil {
		t.Fatalf("getting the Build the response names: %v", err)
	}
	wantB := intake.NewBuild(s.ns, want, now)
	if b.Name != intake.BuildName(f, want.ID, "") || !strings.HasPrefix(b.Name, string(f)+"-") {
		t.Errorf("name %q", b.Name)
	}
	// A trigger: the controller expands it into the targets of the repository's config.
	if targets := b.Annotations[v1alpha1.AnnotationTargets]; !b.IsTrigger() || (want.Target == "" && targets != "*") || (want.Target != "" && targets != want.Target) {
		t.Errorf("trigger annotation %q for delivery target %q", targets, want.Target)
	}
	if b.Annotations[v1alpha1.AnnotationBefore] != want.Before {
		t.Errorf("before annotation %q, want %q", b.Annotations[v1alpha1.AnnotationBefore], want.Before)
	}
	if !equality.Semantic.DeepEqual(b.Spec, wantB.Spec) {
		t.Errorf("stored spec differs:\n got %+v\nwant %+v", b.Spec, wantB.Spec)
	}
	if b.Spec.Source.Commit != want.Source.Commit || b.Labels[v1alpha1.LabelCommitShort] != want.Source.Commit[:7] {
		t.Errorf("commit %q label %q", b.Spec.Source.Commit, b.Labels[v1alpha1.LabelCommitShort])
	}
	if b.Spec.Target.Name != "default" || b.Spec.Target.Dockerfile != "Dockerfile" || b.Spec.Target.Context != "." {
		t.Errorf("default target not applied: %+v", b.Spec.Target)
	}
	if b.Spec.Trigger.ReceivedAt == nil || !b.Spec.Trigger.ReceivedAt.Time.Equal(now) {
		t.Errorf("receivedAt %v", b.Spec.Trigger.ReceivedAt)
	}
}

// TestGitHubOfficialExamples signs every vendored octokit example and sends it through the
// real handler to the real API server.
func TestGitHubOfficialExamples(t *testing.T) {
	s := newServer(t, false)
	files, err := filepath.Glob("../../testdata/github/webhooks/*.json")
	if err != nil || len(files) < 50 {
		t.Fatalf("expected the octokit examples, found %d files: %v", len(files), err)
	}
	built := 0
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			event, _, _ := strings.Cut(name, ".")
			want, err := github.Parse(event, body)
			if err != nil {
				t.Fatal(err)
			}
			want.ID = "gh-" + name
			before := len(s.builds(t))
			code, resp := s.post(t, "/hooks/github", githubHeaders(event, want.ID, body), body)
			checkDelivery(t, s, v1alpha1.ForgeGitHub, want, code, resp, before)
			if want.Source != nil {
				built++
			}
		})
	}
	// The examples hold branch pushes, tag pushes, PR opened/synchronize/reopened and reruns.
	if built < 8 {
		t.Errorf("only %d examples built; the fixtures or the parser changed", built)
	}
}

func TestGitLabOfficialExamples(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			s := newServer(t, signed)
			for name, event := range map[string]string{
				"push.json": "Push Hook", "tag_push.json": "Tag Push Hook", "merge_request.json": "Merge Request Hook",
				"pipeline.json": "Pipeline Hook", "job.json": "Job Hook",
			} {
				t.Run(name, func(t *testing.T) {
					body, err := os.ReadFile(filepath.Join("../../testdata/gitlab/webhooks", name))
					if err != nil {
						t.Fatal(err)
					}
					want, err := gitlab.Parse(event, body)
					if err != nil {
						t.Fatal(err)
					}
					want.ID = "gl-" + name
					before := len(s.builds(t))
					code, resp := s.post(t, "/hooks/gitlab", gitlabHeaders(event, want.ID, body, signed), body)
					checkDelivery(t, s, v1alpha1.ForgeGitLab, want, code, resp, before)
				})
			}
		})
	}
}

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRejections: every bad request gets a precise status and reason, is counted, and creates
// nothing.
func TestRejections(t *testing.T) {
	s := newServer(t, true)
	push := readFixture(t, "github/webhooks/push.none.4.json")
	glPush := readFixture(t, "gitlab/webhooks/push.json")
	prBody := readFixture(t, "github/webhooks/pull_request.opened.12.json")

	stale := gitlabHeaders("Push Hook", "stale", glPush, true)
	stale.Set(gitlab.HeaderTimestamp, strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10))
	stale.Set(gitlab.HeaderSignature, "v1,"+gitlab.Sign(gitlabSign, "stale", stale.Get(gitlab.HeaderTimestamp), glPush))

	big := bytes.Repeat([]byte(" "), intake.MaxBodyBytes+1)
	truncated := push[:len(push)/2]

	for _, tc := range []struct {
		name     string
		path     string
		header   http.Header
		body     []byte
		code     int
		contains string
		outcome  string
	}{
		{"tampered body", "/hooks/github", githubHeaders("push", "t1", push), append(bytes.Clone(push), ' '), 401, "does not match", "unauthenticated"},
		{"wrong secret", "/hooks/github", func() http.Header {
			h := githubHeaders("push", "t2", push)
			h.Set(github.HeaderSignature256, github.Sign([]byte("wrong"), push))
			return h
		}(), push, 401, "does not match", "unauthenticated"},
		{"missing signature", "/hooks/github", func() http.Header {
			h := githubHeaders("push", "t3", push)
			h.Del(github.HeaderSignature256)
			return h
		}(), push, 401, "missing X-Hub-Signature-256", "unauthenticated"},
		{"sha1 only", "/hooks/github", func() http.Header {
			h := githubHeaders("push", "t4", push)
			h.Del(github.HeaderSignature256)
			h.Set("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000")
			return h
		}(), push, 401, "missing X-Hub-Signature-256", "unauthenticated"},
		{"missing event header", "/hooks/github", func() http.Header {
			h := githubHeaders("push", "t5", push)
			h.Del(github.HeaderEvent)
			return h
		}(), push, 400, "missing X-GitHub-Event", "invalid"},
		{"wrong event header for the body", "/hooks/github", githubHeaders("push", "t6", prBody), prBody, 400, "push", "invalid"},
		{"truncated JSON", "/hooks/github", githubHeaders("push", "t7", truncated), truncated, 400, "push payload", "invalid"},
		{"oversize body", "/hooks/github", githubHeaders("push", "t8", big), big, 413, "exceeds", "too_large"},
		{"hostile delivery id", "/hooks/github", githubHeaders("push", strings.Repeat("x", 300), push), push, 400, "delivery ID", "invalid"},
		{"gitlab missing token", "/hooks/gitlab", func() http.Header {
			h := gitlabHeaders("Push Hook", "g1", glPush, true)
			h.Del(gitlab.HeaderToken)
			return h
		}(), glPush, 401, "missing X-Gitlab-Token", "unauthenticated"},
		{"gitlab wrong token", "/hooks/gitlab", func() http.Header {
			h := gitlabHeaders("Push Hook", "g2", glPush, true)
			h.Set(gitlab.HeaderToken, "nope")
			return h
		}(), glPush, 401, "does not match", "unauthenticated"},
		{"gitlab unsigned while signing is configured", "/hooks/gitlab", gitlabHeaders("Push Hook", "g3", glPush, false), glPush, 401, "signing token configured", "unauthenticated"},
		{"gitlab stale timestamp", "/hooks/gitlab", stale, glPush, 401, "off", "unauthenticated"},
		{"gitlab tampered body", "/hooks/gitlab", gitlabHeaders("Push Hook", "g4", glPush, true), append(bytes.Clone(glPush), '\n'), 401, "signature does not match", "unauthenticated"},
		{"gitlab wrong event for body", "/hooks/gitlab", gitlabHeaders("Merge Request Hook", "g5", glPush, true), glPush, 400, "", "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := deliveries(t, s, tc.path, tc.outcome)
			code, resp := s.post(t, tc.path, tc.header, tc.body)
			if code != tc.code || resp.Error == "" || !strings.Contains(resp.Error, tc.contains) {
				t.Fatalf("got %d %+v, want %d with an error containing %q", code, resp, tc.code, tc.contains)
			}
			if n := len(s.builds(t)); n != 0 {
				t.Fatalf("a rejected delivery created %d Builds", n)
			}
			if after := deliveries(t, s, tc.path, tc.outcome); after != before+1 {
				t.Fatalf("outcome %q counted %v → %v", tc.outcome, before, after)
			}
		})
	}
}

// deliveries reads one series of slipway_webhook_deliveries_total.
func deliveries(t testing.TB, s *server, path, outcome string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	forgeName := strings.TrimPrefix(path, "/hooks/")
	for _, mf := range mfs {
		if mf.GetName() != "slipway_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["forge"] == forgeName && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestConcurrentRedelivery: ten copies of one delivery at once yield one Build, and every
// answer names it.
func TestConcurrentRedelivery(t *testing.T) {
	s := newServer(t, false)
	body := readFixture(t, "github/webhooks/push.none.4.json")
	const copies = 10
	var wg sync.WaitGroup
	resps := make([]intake.Response, copies)
	codes := make([]int, copies)
	for i := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], resps[i] = s.post(t, "/hooks/github", githubHeaders("push", "same-delivery", body), body)
		}()
	}
	wg.Wait()
	builds := s.builds(t)
	if len(builds) != 1 {
		t.Fatalf("%d Builds for one delivery", len(builds))
	}
	fresh := 0
	for i := range copies {
		if codes[i] != http.StatusAccepted || len(resps[i].Builds) != 1 || resps[i].Builds[0].Name != builds[0].Name {
			t.Fatalf("copy %d answered %d %+v", i, codes[i], resps[i])
		}
		if !resps[i].Builds[0].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d answers claim to have created the Build", fresh)
	}
}

// TestWithoutDeliveryID: the body hash stands in, so an identical redelivery is still a duplicate.
func TestWithoutDeliveryID(t *testing.T) {
	s := newServer(t, false)
	body := readFixture(t, "github/webhooks/push.none.4.json")
	for i := range 2 {
		code, resp := s.post(t, "/hooks/github", githubHeaders("push", "", body), body)
		if code != http.StatusAccepted || len(resp.Builds) != 1 || resp.Builds[0].Duplicate != (i == 1) {
			t.Fatalf("send %d: %d %+v", i, code, resp)
		}
	}
	b := s.builds(t)
	if len(b) != 1 || b[0].Name != intake.BuildName(v1alpha1.ForgeGitHub, intake.BodyDeliveryID(body), "") {
		t.Fatalf("builds %+v", b)
	}
}

func TestUnknownForgeIs404(t *testing.T) {
	s := newServer(t, false)
	resp, err := s.Client().Post(s.URL+"/hooks/bitbucket", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkGitHubIntake measures the whole intake path of one push: verify, parse, create the
// Build in the real API server, answer.
func BenchmarkGitHubIntake(b *testing.B) {
	s := newServer(b, false)
	body := readFixture(b, "github/webhooks/push.none.4.json")
	// Warm up: the first create discovers the Build API's REST mapping.
	if code, _ := s.post(b, "/hooks/github", githubHeaders("push", "bench-warmup", body), body); code != http.StatusAccepted {
		b.Fatalf("warm-up status %d", code)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h := githubHeaders("push", "bench-"+strconv.Itoa(i), body)
		code, _ := s.post(b, "/hooks/github", h, body)
		if code != http.StatusAccepted {
			b.Fatalf("status %d", code)
		}
	}
}
