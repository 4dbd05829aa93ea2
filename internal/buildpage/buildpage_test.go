package buildpage

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	sig := Sign(key, "builds", "github-abc", exp)
	if err := Verify(key, "builds", "github-abc", exp, sig, now); err != nil {
		t.Fatalf("valid link: %v", err)
	}
	for name, tc := range map[string]struct {
		ns, build string
		exp       int64
		sig       string
		key       []byte
		want      error
	}{
		"other build":     {"builds", "github-abd", exp, sig, key, ErrBadSignature},
		"other namespace": {"other", "github-abc", exp, sig, key, ErrBadSignature},
		// Moving the boundary between namespace and name must not keep the signature valid.
		"shifted boundary": {"buildsg", "ithub-abc", exp, sig, key, ErrBadSignature},
		"extended expiry":  {"builds", "github-abc", exp + 3600, sig, key, ErrBadSignature},
		"other key":        {"builds", "github-abc", exp, sig, []byte("another key of at least 32 bytes!"), ErrBadSignature},
		"garbage":          {"builds", "github-abc", exp, "!!", key, ErrBadSignature},
		"empty":            {"builds", "github-abc", exp, "", key, ErrBadSignature},
		"expired":          {"builds", "github-abc", now.Unix(), Sign(key, "builds", "github-abc", now.Unix()), key, ErrExpired},
	} {
		if err := Verify(tc.key, tc.ns, tc.build, tc.exp, tc.sig, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, tc.want)
		}
	}
}

func TestSigner(t *testing.T) {
	if _, err := NewSigner([]byte("short"), "https://x", 0); err == nil {
		t.Error("short key accepted")
	}
	if _, err := NewSigner(key, "slipway.example.com", 0); err == nil {
		t.Error("URL without scheme accepted")
	}
	s, err := NewSigner(key, "https://slipway.example.com/ci/", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1_800_000_000, 0)
	link := s.BuildURL("builds", "github-abc", created)
	u, _ := url.Parse(link)
	if u.Path != "/ci/builds/builds/github-abc" || u.Query().Get("exp") != strconv.FormatInt(created.Add(time.Hour).Unix(), 10) {
		t.Errorf("link %s", link)
	}
	if link != s.BuildURL("builds", "github-abc", created) {
		t.Error("two links of one build differ")
	}
}

type logs struct {
	lines []string
	err   error
}

func (l logs) Tail(context.Context, *v1alpha1.Build, int) ([]string, error) { return l.lines, l.err }

func TestHandler(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	b := &v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Namespace: "builds", Name: "github-abc", CreationTimestamp: metav1.Now()},
		Spec: v1alpha1.BuildSpec{Source: v1alpha1.Source{Repository: "acme/app", Commit: strings.Repeat("a", 40), Ref: "refs/heads/main"},
			Target: v1alpha1.Target{Name: "default"}},
		Status: v1alpha1.BuildStatus{Phase: v1alpha1.PhaseFailed, Reason: "BuildFailed", Message: "<script>alert(1)</script>",
			Failure: &v1alpha1.Failure{Step: "[2/3] RUN make", Line: 4, ExitCode: 2, Message: "make: *** [all] Error 2"},
			Timings: map[string]metav1.Duration{"solve": {Duration: 3 * time.Second}, "queued": {Duration: time.Second}}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(b).Build()
	now := time.Now()
	h, err := NewHandler(key, c, logs{lines: []string{"#5 RUN make", "token=ghs_abcdefghijklmnopqrstuvwxyz0123"}}, HandlerOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Pattern, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s, _ := NewSigner(key, srv.URL, time.Hour)
	get := func(u string) (int, string, http.Header) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	status, body, hdr := get(s.BuildURL("builds", "github-abc", now))
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	for _, want := range []string{"acme/app", "[2/3] RUN make", "exited 2", "line 4", "&lt;script&gt;", "#5 RUN make", "token=***", "queued", "3s"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script>", "ghs_abcdefghij"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if strings.Index(body, "queued") > strings.Index(body, "solve") {
		t.Error("timings are not in build order")
	}
	if hdr.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v", hdr)
	}
	// Tampered, unsigned, expired, missing.
	link := s.BuildURL("builds", "github-abc", now)
	for name, tc := range map[string]struct {
		url  string
		want int
	}{
		"other build":  {strings.Replace(link, "github-abc", "github-abd", 1), 404},
		"no signature": {srv.URL + "/builds/builds/github-abc", 404},
		"expired":      {s.BuildURL("builds", "github-abc", now.Add(-2*time.Hour)), 410},
		"gone build":   {s.BuildURL("builds", "github-zzz", now), 404},
		"bad name":     {srv.URL + "/builds/Builds/x", 404},
		"post":         {"", 405},
	} {
		if tc.url == "" {
			resp, err := http.Post(link, "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %d, want %d", name, resp.StatusCode, tc.want)
			}
			continue
		}
		if status, body, _ := get(tc.url); status != tc.want {
			t.Errorf("%s: %d, want %d (%s)", name, status, tc.want, body)
		}
	}
	// A running build refreshes itself; a gone pod says so.
	b.Status = v1alpha1.BuildStatus{Phase: v1alpha1.PhaseRunning}
	if err := c.Update(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	h.logs = logs{}
	_, body, _ = get(link)
	if !strings.Contains(body, `http-equiv="refresh"`) || !strings.Contains(body, "no longer exists") {
		t.Errorf("running page: %s", body)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("builds", "b", int64(2_000_000_000), "x")
	f.Fuzz(func(t *testing.T, ns, name string, exp int64, sig string) {
		now := time.Unix(1_800_000_000, 0)
		if Verify(key, ns, name, exp, sig, now) == nil && sig != Sign(key, ns, name, exp) {
			t.Fatalf("accepted a signature that is not Sign's: %q", sig)
		}
		good := Sign(key, ns, name, exp)
		if err := Verify(key, ns, name, exp, good, now); err != nil && !errors.Is(err, ErrExpired) {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}
