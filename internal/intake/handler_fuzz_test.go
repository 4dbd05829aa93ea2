package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/intake"
)

// fuzzHandler is the real handler over an in-memory client: fuzzing needs thousands of
// requests a second, and what is fuzzed here is the handler's own logic (the real API server
// is exercised by the other tests).
func fuzzHandler(f *testing.F) (http.Handler, client.Client) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		f.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).Build()
	gh, _ := github.NewReceiver(githubSecret)
	gl, _ := gitlab.NewReceiver(gitlabToken, gitlabSign, func() time.Time { return now })
	m, err := intake.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	h, err := intake.NewHandler(intake.Options{
		Client: c, Namespace: "fuzz", Metrics: m, Log: slog.New(slog.DiscardHandler),
		Receivers: map[v1alpha1.Forge]forge.Receiver{v1alpha1.ForgeGitHub: gh, v1alpha1.ForgeGitLab: gl},
		Now:       func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return mux, c
}

// checkAnswer holds for every request: a known status, a JSON body, and a 202 exactly when
// the named Build exists.
func checkAnswer(t *testing.T, c client.Client, rec *httptest.ResponseRecorder) {
	var resp intake.Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("status %d with a non-JSON body %q", rec.Code, rec.Body.Bytes())
	}
	switch rec.Code {
	case http.StatusAccepted:
		if len(resp.Builds) != 1 {
			t.Fatalf("202 without a build: %+v", resp)
		}
		var b v1alpha1.Build
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "fuzz", Name: resp.Builds[0].Name}, &b); err != nil {
			t.Fatalf("202 names a Build that does not exist: %v", err)
		}
		if err := forge.ValidateSource(&b.Spec.Source); err != nil {
			t.Fatalf("stored an invalid source: %v", err)
		}
	case http.StatusOK:
		if resp.Ignored == "" {
			t.Fatalf("200 without a reason: %+v", resp)
		}
	case http.StatusBadRequest, http.StatusUnauthorized:
		if resp.Error == "" {
			t.Fatalf("%d without an error: %+v", rec.Code, resp)
		}
	default:
		t.Fatalf("unexpected status %d: %+v", rec.Code, resp)
	}
}

func seedFixtures(f *testing.F, glob string, event func(name string) string) {
	files, _ := filepath.Glob(glob)
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(event(filepath.Base(file)), "delivery-"+filepath.Base(file), body, true)
	}
}

func FuzzGitHubHandler(f *testing.F) {
	seedFixtures(f, "../../testdata/github/webhooks/*.json", func(n string) string {
		e, _, _ := bytes.Cut([]byte(n), []byte("."))
		return string(e)
	})
	h, c := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, event, delivery string, body []byte, sign bool) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
		req.Header.Set(github.HeaderEvent, event)
		req.Header.Set(github.HeaderDelivery, delivery)
		if sign {
			req.Header.Set(github.HeaderSignature256, github.Sign(githubSecret, body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !sign && rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned delivery answered %d", rec.Code)
		}
		checkAnswer(t, c, rec)
	})
}

func FuzzGitLabHandler(f *testing.F) {
	for name, event := range map[string]string{"push.json": "Push Hook", "tag_push.json": "Tag Push Hook", "merge_request.json": "Merge Request Hook", "job.json": "Job Hook"} {
		body, err := os.ReadFile(filepath.Join("../../testdata/gitlab/webhooks", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(event, "delivery-"+name, body, true)
	}
	h, c := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, event, delivery string, body []byte, sign bool) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", bytes.NewReader(body))
		req.Header.Set(gitlab.HeaderEvent, event)
		req.Header.Set(gitlab.HeaderToken, string(gitlabToken))
		ts := strconv.FormatInt(now.Unix(), 10)
		req.Header.Set(gitlab.HeaderWebhookID, delivery)
		req.Header.Set(gitlab.HeaderTimestamp, ts)
		if sign {
			req.Header.Set(gitlab.HeaderSignature, "v1,"+gitlab.Sign(gitlabSign, delivery, ts, body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !sign && rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned delivery answered %d", rec.Code)
		}
		checkAnswer(t, c, rec)
	})
}
