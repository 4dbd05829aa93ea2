package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/github/githubtest"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/syncbuf"
	"github.com/slipway-dev/slipway/internal/testbed/webhook"
)

// served is one `slipway serve` running against the test API server.
type served struct {
	t    *testing.T
	base string
	ns   string
	logs *syncbuf.Buffer
}

// serveConfig prepares a fresh namespace, a kubeconfig and a webhook secret ("s3cret"), and
// returns a valid serve configuration for them.
func serveConfig(t *testing.T, mutate func(c *config.Serve, dir string)) config.Serve {
	t.Helper()
	dir := t.TempDir()
	user, err := env.AddUser(envtest.User{Name: "serve-" + strings.ToLower(t.Name()), Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "serve-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs in envtest: create the ServiceAccount pods need.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Namespace = ns.Name
	c.Kubeconfig = writeFile(t, dir, "kubeconfig", kc)
	c.GitHub.WebhookSecretFile = writeFile(t, dir, "secret", []byte("s3cret\n"))
	c.Controller.BuilderImage = "registry.test/slipway:dev"
	c.Controller.BuildKitImage = "registry.test/buildkit:dev"
	c.Controller.RegistryPrefix = "registry.test/builds"
	if mutate != nil {
		mutate(&c, dir)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// startServe runs the real serve wiring (intake, controller, reporter, build page) in a fresh
// namespace until the test ends.
func startServe(t *testing.T, mutate func(c *config.Serve, dir string)) *served {
	t.Helper()
	c := serveConfig(t, mutate)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, mgr, err := newServer(ctx, c, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, mgr, ln, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	})
	return &served{t: t, base: "http://" + ln.Addr().String(), ns: ns.Name, logs: logs}
}

// deliver sends a signed GitHub delivery and expects it accepted.
func (s *served) deliver(event, id string, body []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/hooks/github", bytes.NewReader(body))
	req.Header.Set(github.HeaderEvent, event)
	req.Header.Set(github.HeaderDelivery, id)
	req.Header.Set(github.HeaderSignature256, github.Sign([]byte("s3cret"), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		s.t.Fatalf("%s delivery: %d %s", event, resp.StatusCode, out)
	}
}

func (s *served) build(name string) (*v1alpha1.Build, error) {
	var b v1alpha1.Build
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: name}, &b)
	return &b, err
}

// builds lists the Builds, after every trigger has been expanded.
func (s *served) builds() []v1alpha1.Build {
	s.t.Helper()
	var l v1alpha1.BuildList
	eventually(s.t, "every trigger is expanded", func() bool {
		if err := env.Client.List(context.Background(), &l, client.InNamespace(s.ns)); err != nil {
			return false
		}
		return !slices.ContainsFunc(l.Items, func(b v1alpha1.Build) bool { return b.IsTrigger() && b.Status.Phase == "" })
	})
	return l.Items
}

func (s *served) pod(name string) *corev1.Pod {
	s.t.Helper()
	p := &corev1.Pod{}
	eventually(s.t, "pod "+name+" exists", func() bool {
		return env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: name}, p) == nil
	})
	return p
}

// kubelet plays the kubelet for a pod: envtest has none.
func (s *served) kubelet(name string, exit int32, res *buildresult.Result) {
	s.t.Helper()
	p := s.pod(name)
	now := time.Now()
	started := metav1.NewTime(now.Add(-2 * time.Second))
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started}}
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuildKitName, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuilderName,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
	if err := env.Client.Status().Update(context.Background(), p); err != nil {
		s.t.Fatal(err)
	}
	eventually(s.t, name+" runs", func() bool {
		b, err := s.build(name)
		return err == nil && b.Status.Phase == v1alpha1.PhaseRunning
	})
	if res == nil {
		return
	}
	msg, err := buildresult.Encode(*res)
	if err != nil {
		s.t.Fatal(err)
	}
	p = s.pod(name)
	p.Status.Phase = corev1.PodSucceeded
	if exit != 0 {
		p.Status.Phase = corev1.PodFailed
	}
	p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: exit, Message: string(msg), StartedAt: started, FinishedAt: metav1.Now()}}
	if err := env.Client.Status().Update(context.Background(), p); err != nil {
		s.t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// example is an official octokit webhook example rewritten to the fake's acme/app.
func example(t *testing.T, file string, edits ...func(map[string]any)) []byte {
	t.Helper()
	body, err := webhook.GitHub(file, webhook.Repo{FullName: "acme/app", HTMLURL: "https://github.com/acme/app",
		CloneURL: "https://github.com/acme/app.git", Installation: 1}, edits...)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

const (
	commit1 = "1111111111111111111111111111111111111111"
	commit2 = "2222222222222222222222222222222222222222"
	commit3 = "3333333333333333333333333333333333333333"
	commit4 = "4444444444444444444444444444444444444444"
)

// TestForgesEndToEnd drives the whole path through `slipway serve` against the fake GitHub
// (every request checked against GitHub's OpenAPI description): a signed delivery, the
// controller reading .slipway.yaml at the commit, one Build per target with its own clone
// token, the pod (played here), and check runs reported within the API budget, linking to a
// build page that opens without cluster credentials.
func TestForgesEndToEnd(t *testing.T) {
	gh := githubtest.New(t)
	s := startServe(t, func(c *config.Serve, dir string) {
		c.ExternalURL = "https://slipway.example.com"
		c.BuildPage.SigningKeyFile = writeFile(t, dir, "link-key", []byte("0123456789abcdef0123456789abcdef"))
		c.GitHub.AppID = gh.AppID
		c.GitHub.PrivateKeyFile = writeFile(t, dir, "app.pem", gh.KeyPEM)
		c.GitHub.APIURL = gh.APIURL()
		c.GitHub.Host = "github.com"
	})

	t.Run("push without config builds the default target within budget", func(t *testing.T) {
		mark := len(gh.Requests())
		s.deliver("push", "d-1", example(t, "push.none.4.json", webhook.Push(commit1)))
		bs := s.builds()
		if len(bs) != 1 || !strings.HasSuffix(bs[0].Name, "-default") || bs[0].Annotations[v1alpha1.AnnotationConfigRef] != commit1 {
			t.Fatalf("builds %+v", names(bs))
		}
		name := bs[0].Name
		// The clone token is minted for this build: contents read on acme/app only.
		var sec corev1.Secret
		eventually(t, "the clone token secret", func() bool {
			return env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: name + "-git"}, &sec) == nil
		})
		mints := gh.Calls(githubtest.OpMintToken)
		if len(mints) == 0 || !strings.Contains(string(mints[len(mints)-1].Body), `"contents":"read"`) || !strings.Contains(string(mints[len(mints)-1].Body), `"repositories":["app"]`) {
			t.Errorf("clone token mint %s", lastBody(mints))
		}
		if args := strings.Join(s.pod(name).Spec.Containers[0].Args, " "); strings.Contains(args, "--no-push") {
			t.Errorf("a push to the repository itself must push: %s", args)
		}
		s.kubelet(name, 0, &buildresult.Result{Outcome: buildresult.Succeeded, Digest: "sha256:" + strings.Repeat("ab", 32), Tags: []string{"registry.test/builds/acme/app:" + commit1}})
		eventually(t, "the check run completes", func() bool {
			return len(gh.Calls("checks/update")) == 2
		})
		ops := operations(gh.Requests()[mark:])
		want := []string{"repos/get-content", "checks/create", "checks/update", "checks/update"}
		if !slices.Equal(ops, want) {
			t.Errorf("API calls %v, want %v (at most 4 per build, mints not counted)", ops, want)
		}
		create := bodyMap(t, gh.Calls("checks/create")[0].Body)
		if create["name"] != "slipway/default" || create["head_sha"] != commit1 || create["status"] != "queued" {
			t.Errorf("create %v", create)
		}
		last := bodyMap(t, gh.Calls("checks/update")[1].Body)
		if last["status"] != "completed" || last["conclusion"] != "success" {
			t.Errorf("final update %v", last)
		}
		// The link opens the build page without credentials; a forged one does not.
		link, _ := create["details_url"].(string)
		path, ok := strings.CutPrefix(link, "https://slipway.example.com")
		if !ok || !strings.Contains(path, "/builds/"+s.ns+"/"+name+"?") {
			t.Fatalf("details_url %q", link)
		}
		if code, page := get(t, s.base+path); code != http.StatusOK || !strings.Contains(page, "Succeeded") {
			t.Errorf("build page: %d %s", code, page)
		}
		if code, _ := get(t, s.base+strings.Replace(path, "sig=", "sig=0", 1)); code == http.StatusOK {
			t.Errorf("a forged signature opened the page")
		}
	})

	t.Run("one Build per matching target, paths filters from the compare API", func(t *testing.T) {
		gh.PutFile("acme/app", commit2, ".slipway.yaml", `targets:
  - name: api
    context: api
    dockerfile: api/Dockerfile
    image: team/api
    when: {paths: ["api/**"]}
  - name: web
    dockerfile: web/Dockerfile
    when: {paths: ["web/**"]}
`)
		gh.SetChanged("acme/app", commit1, commit2, []string{"api/main.go"})
		s.deliver("push", "d-2", example(t, "push.none.4.json", webhook.Push(commit2), func(m map[string]any) { m["before"] = commit1 }))
		var got []v1alpha1.Build
		for _, b := range s.builds() {
			if b.Spec.Source.Commit == commit2 {
				got = append(got, b)
			}
		}
		if len(got) != 1 || got[0].Spec.Target.Name != "api" || got[0].Spec.Target.Image != "registry.test/builds/team/api" || got[0].Spec.Target.Context != "api" {
			t.Fatalf("builds %+v", got)
		}
	})

	t.Run("invalid config fails with the line and no pod", func(t *testing.T) {
		gh.PutFile("acme/app", commit3, ".slipway.yaml", "targets:\n  - name: api\n    dockerfile: ../../etc/passwd\n")
		s.deliver("push", "d-3", example(t, "push.none.4.json", webhook.Push(commit3)))
		var failed *v1alpha1.Build
		eventually(t, "the trigger fails", func() bool {
			for _, b := range s.builds() {
				if b.Spec.Source.Commit == commit3 && b.Status.Phase == v1alpha1.PhaseFailed {
					failed = &b
					return true
				}
			}
			return false
		})
		if failed.Status.Reason != "ConfigInvalid" || !strings.Contains(failed.Status.Message, "line 3") {
			t.Errorf("reason %s message %q", failed.Status.Reason, failed.Status.Message)
		}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: failed.Name}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("a pod exists for an invalid config: %v", err)
		}
		eventually(t, "the failure is reported", func() bool { return len(checksFor(gh, commit3)) == 1 })
		c := checksFor(gh, commit3)[0]
		out, _ := c["output"].(map[string]any)
		if c["name"] != "slipway/config" || c["conclusion"] != "failure" || !strings.Contains(out["summary"].(string)+out["title"].(string), "line 3") {
			t.Errorf("check run %v", c)
		}
	})

	t.Run("fork pull request builds without push", func(t *testing.T) {
		gh.PutFile("acme/app", "main", ".slipway.yaml", "forkPolicy: build-no-push\n")
		s.deliver("pull_request", "d-4", example(t, "pull_request.opened.0.json", func(m map[string]any) {
			m["action"] = "opened"
			pr := m["pull_request"].(map[string]any)
			head := pr["head"].(map[string]any)
			head["sha"] = commit4
			head["repo"] = map[string]any{"id": 999, "full_name": "mallory/app", "fork": true}
			pr["base"].(map[string]any)["ref"] = "main"
			m["repository"].(map[string]any)["id"] = 1
		}))
		var fork *v1alpha1.Build
		for _, b := range s.builds() {
			if b.Spec.Source.Commit == commit4 {
				fork = &b
			}
		}
		if fork == nil || !fork.Spec.Source.Fork || fork.Annotations[v1alpha1.AnnotationConfigRef] != "main" || fork.Pushes() {
			t.Fatalf("fork build %+v", fork)
		}
		if args := strings.Join(s.pod(fork.Name).Spec.Containers[0].Args, " "); !strings.Contains(args, "--no-push") {
			t.Errorf("fork build pushes: %s", args)
		}
	})

	t.Run("re-running one check run rebuilds only its target", func(t *testing.T) {
		s.deliver("check_run", "d-5", example(t, "check_run.rerequested.7.json", func(m map[string]any) {
			cr := m["check_run"].(map[string]any)
			cr["name"], cr["head_sha"] = "slipway/api", commit2
			cr["check_suite"].(map[string]any)["head_branch"] = "main"
		}))
		var reruns []string
		for _, b := range s.builds() {
			if b.Spec.Source.Event == v1alpha1.EventRerun {
				reruns = append(reruns, b.Spec.Target.Name)
			}
		}
		if !slices.Equal(reruns, []string{"api"}) {
			t.Errorf("rerun targets %v", reruns)
		}
	})

	t.Run("a redelivery creates nothing new", func(t *testing.T) {
		before := len(s.builds())
		s.deliver("push", "d-1", example(t, "push.none.4.json", webhook.Push(commit1)))
		if after := len(s.builds()); after != before {
			t.Errorf("%d Builds after a redelivery, was %d", after, before)
		}
	})
}

func names(bs []v1alpha1.Build) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func lastBody(rs []githubtest.Request) string {
	if len(rs) == 0 {
		return "(none)"
	}
	return string(rs[len(rs)-1].Body)
}

// operations lists the API calls, except token mints (which the budget does not count).
func operations(rs []githubtest.Request) []string {
	var out []string
	for _, r := range rs {
		if r.Operation != githubtest.OpMintToken {
			out = append(out, r.Operation)
		}
	}
	return out
}

func checksFor(gh *githubtest.Server, sha string) []map[string]any {
	var out []map[string]any
	for _, r := range gh.Calls("checks/create") {
		var m map[string]any
		if json.Unmarshal(r.Body, &m) == nil && m["head_sha"] == sha {
			out = append(out, m)
		}
	}
	return out
}

func bodyMap(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
