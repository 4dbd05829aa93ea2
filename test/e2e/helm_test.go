//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/github/githubtest"
	"github.com/slipway-dev/slipway/internal/forge/gitlab"
	"github.com/slipway-dev/slipway/internal/forge/gitlab/gitlabtest"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/report"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
	"github.com/slipway-dev/slipway/internal/testbed/webhook"
)

// installation is the fake GitHub App installation every test repository belongs to.
const installation = 7

// helmEnv is Slipway installed with its chart, running in the cluster, with the fake forges and
// the git server on the host's bridge gateway, where pods reach them.
type helmEnv struct {
	*cluster.BuildNamespace
	release string // Slipway's own namespace
	hooks   string // http://<service>/hooks/
	secret  string // webhook secret of both forges
	gh      *githubtest.Server
	gl      *gitlabtest.Server

	mu    sync.Mutex
	repos []string // full names the App installation may access
}

// TestHelm installs the chart the way users will and drives it through its webhooks: a GitHub
// push (redelivered five times), a GitLab push, a failing build, a superseded pull request and
// the leader killed mid-build. The forges see every state exactly once, in order.
func TestHelm(t *testing.T) {
	c := startCluster(t)
	e := newBuildNamespace(t, c, "e2e-helm-")
	h := installSlipway(t, c, e)

	t.Run("Parallel", func(t *testing.T) {
		t.Run("GitHubPushRedelivered", func(t *testing.T) { t.Parallel(); testGitHubPush(t, h) })
		t.Run("GitLabPush", func(t *testing.T) { t.Parallel(); testGitLabPush(t, h) })
		t.Run("Failure", func(t *testing.T) { t.Parallel(); testReportedFailure(t, h) })
		t.Run("Supersede", func(t *testing.T) { t.Parallel(); testReportedSupersede(t, h) })
	})
	// Alone: it kills the replica the others depend on.
	t.Run("LeaderKilled", func(t *testing.T) { testLeaderKilled(t, h) })
}

func installSlipway(t *testing.T, c *cluster.Cluster, e *cluster.BuildNamespace) *helmEnv {
	t.Helper()
	ctx := t.Context()
	gw := c.Env["SLIPWAY_CLUSTER_GATEWAY"]
	h := &helmEnv{BuildNamespace: e, secret: cluster.RandomHex(16)}
	h.gh = githubtest.NewOn(t, gw+":0")
	h.gl = gitlabtest.NewOn(t, gw+":0")
	// The builder clones with the token the App minted for its one repository, as on GitHub.
	e.Git.SetTokenCheck(func(tok, repo string) bool { return h.gh.CloneTokenAllows(tok, "e2e/"+repo) })

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-slipway-"}}
	if err := e.Kube.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	h.release = ns.Name
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command(e.Cluster.Env["SLIPWAY_CLUSTER_KUBECTL"], "--kubeconfig", e.Cluster.Kubeconfig,
				"-n", h.release, "logs", "-l", "app.kubernetes.io/name=slipway", "--tail", "-1", "--prefix").CombinedOutput()
			var keep []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"reported"`) {
					keep = append(keep, l)
				}
			}
			t.Logf("slipway logs (warnings, errors, reports):\n%s", strings.Join(keep[max(0, len(keep)-80):], "\n"))
		}
		_ = e.Kube.Delete(context.Background(), ns)
	})
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "slipway-github", Namespace: h.release},
			Data: map[string][]byte{"webhook-secret": []byte(h.secret), "private-key": h.gh.KeyPEM}},
		{ObjectMeta: metav1.ObjectMeta{Name: "slipway-gitlab", Namespace: h.release},
			Data: map[string][]byte{"webhook-secret": []byte(h.secret), "token": []byte(h.gl.Token)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "slipway-build-page", Namespace: h.release},
			Data: map[string][]byte{"signing-key": []byte(cluster.RandomHex(32))}},
	} {
		if err := e.Kube.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	shape := podspec.ShapeRootless
	if c.SupportsUserNamespaces() {
		shape = podspec.ShapeUserNamespace
	}
	cfg := e.ServeConfig("", "", shape).Controller
	repo, digest, _ := strings.Cut(e.Images.Server, "@")
	values := map[string]any{
		"image":          map[string]any{"repository": repo, "digest": digest},
		"replicas":       2,
		"resources":      map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}},
		"externalURL":    "http://slipway.e2e.invalid",
		"buildPage":      map[string]any{"signingKey": map[string]any{"name": "slipway-build-page"}},
		"buildNamespace": map[string]any{"name": e.Name, "create": false},
		"github": map[string]any{"enabled": true, "app": map[string]any{"id": h.gh.AppID},
			"apiURL": h.gh.APIURL(), "host": strings.TrimPrefix(e.Git.URL, "http://"), "reporting": "both"},
		"gitlab": map[string]any{"enabled": true, "url": h.gl.URL, "apiToken": map[string]any{"name": "slipway-gitlab"}},
		"build": map[string]any{
			"shape": cfg.Shape, "builderImage": cfg.BuilderImage, "buildkitImage": cfg.BuildKitImage,
			"registryPrefix": cfg.RegistryPrefix, "pushSecretName": cfg.PushSecretName,
			"cloneTokenSecret": cfg.CloneTokenSecret, "buildkitConfigMap": cfg.BuildKitConfigMap,
			"builderResources": cfg.BuilderResources, "buildkitResources": cfg.BuildKitResources,
			"defaultTimeout": "5m", "imagePullTimeout": "1m",
		},
	}
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	helm, err := exec.Command("../../hack/tool.sh", "helm").Output()
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(helm)), "install", "slipway", "../../charts/slipway",
		"--kubeconfig", c.Kubeconfig, "-n", h.release, "-f", valuesFile, "--wait", "--timeout", "3m")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s\nvalues:\n%s", err, out, data)
	}
	var svc corev1.Service
	if err := e.Kube.Get(ctx, client.ObjectKey{Namespace: h.release, Name: "slipway"}, &svc); err != nil {
		t.Fatal(err)
	}
	// The host reaches the Service's cluster IP through kube-proxy, as an Ingress would.
	base := fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	h.hooks = base + "/hooks/"
	waitFor(t, 2*time.Minute, "Slipway answers through its Service", func(ctx context.Context) (bool, error) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	t.Logf("helm install: 2 replicas ready in %v; webhooks at %s", time.Since(start).Round(time.Millisecond), h.hooks)
	return h
}

// newRepo makes a repository on the git server that the App installation covers.
func (h *helmEnv) newRepo(t *testing.T, prefix, dockerfile string) (name, sha string) {
	t.Helper()
	name = prefix + "-" + cluster.RandomHex(4)
	_, sha, err := h.NewRepo(t.Context(), name, dockerfile, "hello from "+name)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.repos = append(h.repos, "e2e/"+name)
	h.gh.AddInstallation(githubtest.Installation{ID: installation, Repositories: slices.Clone(h.repos), Permissions: map[string]string{
		"checks": "write", "statuses": "write", "contents": "read", "metadata": "read",
	}})
	h.mu.Unlock()
	return name, sha
}

// githubDelivery is an official example rewritten to repo on the git server.
func (h *helmEnv) githubDelivery(t *testing.T, file, repo string, edits ...func(map[string]any)) []byte {
	t.Helper()
	body, err := webhook.GitHub(file, webhook.Repo{FullName: "e2e/" + repo, HTMLURL: h.Git.URL + "/e2e/" + repo,
		CloneURL: h.Git.RepoURL(repo), Installation: installation}, edits...)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (h *helmEnv) send(t *testing.T, forge string, header http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.hooks+forge, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%s delivery: %d %s", forge, resp.StatusCode, out)
	}
}

func (h *helmEnv) sendGitHub(t *testing.T, event, delivery string, body []byte) {
	t.Helper()
	h.send(t, "github", http.Header{
		github.HeaderEvent: {event}, github.HeaderDelivery: {delivery},
		github.HeaderSignature256: {github.Sign([]byte(h.secret), body)}, "Content-Type": {"application/json"},
	}, body)
}

// buildOf waits for the one Build of a commit (after its trigger is expanded) and returns it.
func (h *helmEnv) buildOf(t *testing.T, sha string) *v1alpha1.Build {
	t.Helper()
	var found []v1alpha1.Build
	waitFor(t, time.Minute, "the Build of "+sha[:7], func(ctx context.Context) (bool, error) {
		var l v1alpha1.BuildList
		if err := h.Kube.List(ctx, &l, client.InNamespace(h.Name), client.MatchingLabels{v1alpha1.LabelCommitShort: sha[:7]}); err != nil {
			return false, err
		}
		found = slices.DeleteFunc(l.Items, func(b v1alpha1.Build) bool { return b.IsTrigger() })
		return len(found) > 0 && len(found) == len(l.Items), nil
	})
	if len(found) != 1 {
		t.Fatalf("Builds of %s: %v, want one", sha[:7], buildNames(found))
	}
	return &found[0]
}

func buildNames(bs []v1alpha1.Build) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

// githubReports lists what the fake GitHub accepted for a commit, in order: "status:<state>"
// and "check:<status>[/<conclusion>]".
func (h *helmEnv) githubReports(sha string) []string {
	var out []string
	for _, r := range h.gh.Requests() {
		if r.Status/100 != 2 {
			continue
		}
		var body map[string]any
		_ = json.Unmarshal(r.Body, &body)
		switch r.Operation {
		case "repos/create-commit-status":
			if strings.HasSuffix(r.Path, "/statuses/"+sha) {
				out = append(out, fmt.Sprint("status:", body["state"]))
			}
		case "checks/create":
			if body["head_sha"] != sha {
				continue
			}
			out = append(out, checkState(body))
		case "checks/update":
			if h.checkRunOf(r.Path, sha) {
				out = append(out, checkState(body))
			}
		}
	}
	return out
}

// checkRunOf reports whether a check-runs/{id} path is a run of commit sha.
func (h *helmEnv) checkRunOf(path, sha string) bool {
	var id int64
	if _, err := fmt.Sscanf(path[strings.LastIndex(path, "/")+1:], "%d", &id); err != nil {
		return false
	}
	return h.gh.CheckRunSHA(id) == sha
}

func checkState(body map[string]any) string {
	s := fmt.Sprint("check:", body["status"])
	if c, ok := body["conclusion"]; ok {
		s += "/" + fmt.Sprint(c)
	}
	return s
}

// settledReports waits until the fake GitHub has seen every report in final for the commit of
// Build name, and the reporter has let go of that Build (its finalizer is gone: nothing is left
// to send), then returns every report of the commit, so that one sent twice is among them.
func (h *helmEnv) settledReports(t *testing.T, name, sha string, final ...string) []string {
	t.Helper()
	var got []string
	waitFor(t, 2*time.Minute, "GitHub reports of "+sha[:7], func(ctx context.Context) (bool, error) {
		var b v1alpha1.Build
		if err := h.Kube.Get(ctx, client.ObjectKey{Namespace: h.Name, Name: name}, &b); err != nil {
			return false, err
		}
		got = h.githubReports(sha)
		for _, f := range final {
			if !slices.Contains(got, f) {
				return false, nil
			}
		}
		return !controllerutil.ContainsFinalizer(&b, report.Finalizer), nil
	})
	return got
}

// waitReports checks that Build name's commit got exactly want: each channel in order (the
// two channels are independent of each other), each state once.
func (h *helmEnv) waitReports(t *testing.T, name, sha string, want []string) {
	t.Helper()
	got := h.settledReports(t, name, sha, want...)
	for _, kind := range []string{"status:", "check:"} {
		if g, w := only(got, kind), only(want, kind); !slices.Equal(g, w) {
			t.Errorf("GitHub reports of %s:\n got %v\nwant %v", sha[:7], got, want)
		}
	}
}

func only(reports []string, prefix string) []string {
	var out []string
	for _, r := range reports {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

var success = []string{"status:pending", "check:queued", "check:in_progress", "status:success", "check:completed/success"}

// testGitHubPush: a signed push, delivered five times, gives one Build and one pod; the image is
// in the registry with the Build's digest and runs; GitHub sees each state once, in order.
func testGitHubPush(t *testing.T, h *helmEnv) {
	repo, sha := h.newRepo(t, "gh", h.Dockerfile(""))
	body := h.githubDelivery(t, "push.none.4.json", repo, webhook.Push(sha))
	delivery := "e2e-" + cluster.RandomHex(8)
	for range 5 {
		h.sendGitHub(t, "push", delivery, body)
	}
	b := h.buildOf(t, sha)
	got := waitBuild(t, h.BuildNamespace, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseSucceeded {
		dumpPod(t, h.Cluster, h.Name, b.Name)
		t.Fatalf("Build %s: %s (%s: %s)", b.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	refs, err := podspec.ImageRefs(got, h.RegistryPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if want, err := h.Cluster.ManifestDigest(t.Context(), refs.Image+":"+sha); err != nil || want != got.Status.Digest {
		t.Errorf("status.digest %s, registry has %s (%v)", got.Status.Digest, want, err)
	}
	if out := runCanary(t, h.Cluster, h.Name, "canary-"+repo, refs.Image+"@"+got.Status.Digest); !strings.Contains(out, "hello from "+repo) {
		t.Errorf("canary output %q", out)
	}
	h.waitReports(t, b.Name, sha, success)
	var pods corev1.PodList
	if err := h.Kube.List(t.Context(), &pods, client.InNamespace(h.Name), client.MatchingLabels{podspec.LabelBuild: b.Name}); err != nil || len(pods.Items) != 1 {
		t.Errorf("pods of %s: %d (%v), want 1", b.Name, len(pods.Items), err)
	}
	t.Logf("5 deliveries → Build %s Succeeded, digest %s; GitHub saw %v", b.Name, got.Status.ShortDigest, h.githubReports(sha))
}

// testGitLabPush: the same through /hooks/gitlab; GitLab gets pending → running → success.
func testGitLabPush(t *testing.T, h *helmEnv) {
	repo, sha := h.newRepo(t, "gl", h.Dockerfile(""))
	const project = 4242
	h.gl.AddProject(project, "e2e/"+repo)
	m, err := webhook.Example("gitlab", "push.json")
	if err != nil {
		t.Fatal(err)
	}
	p := m["project"].(map[string]any)
	p["id"], p["path_with_namespace"], p["default_branch"] = project, "e2e/"+repo, "main"
	p["web_url"], p["git_http_url"] = h.gl.URL+"/e2e/"+repo, h.Git.RepoURL(repo)
	m["project_id"], m["ref"], m["after"], m["checkout_sha"] = project, "refs/heads/main", sha, sha
	body, _ := json.Marshal(m)
	h.send(t, "gitlab", http.Header{gitlab.HeaderEvent: {"Push Hook"}, gitlab.HeaderToken: {h.secret},
		gitlab.HeaderEventUUID: {"e2e-" + cluster.RandomHex(8)}, "Content-Type": {"application/json"}}, body)
	b := h.buildOf(t, sha)
	got := waitBuild(t, h.BuildNamespace, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseSucceeded {
		dumpPod(t, h.Cluster, h.Name, b.Name)
		t.Fatalf("Build %s: %s (%s: %s)", b.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	var states []string
	waitFor(t, time.Minute, "GitLab's success status", func(context.Context) (bool, error) {
		states = nil
		for _, r := range h.gl.Calls("statuses") {
			if strings.HasSuffix(r.Path, "/statuses/"+sha) {
				var body map[string]any
				_ = json.Unmarshal(r.Body, &body)
				states = append(states, fmt.Sprint(body["state"]))
			}
		}
		return slices.Contains(states, "success"), nil
	})
	if want := []string{"pending", "running", "success"}; !slices.Equal(states, want) {
		t.Errorf("GitLab statuses %v, want %v", states, want)
	}
}

// testReportedFailure: a failing RUN gives a failure status and a check run whose summary
// carries the failing step and the log tail.
func testReportedFailure(t *testing.T, h *helmEnv) {
	repo, sha := h.newRepo(t, "fail", h.Dockerfile("RUN echo about to fail && exit 3\n"))
	h.sendGitHub(t, "push", "e2e-"+cluster.RandomHex(8), h.githubDelivery(t, "push.none.4.json", repo, webhook.Push(sha)))
	b := h.buildOf(t, sha)
	if got := waitBuild(t, h.BuildNamespace, b.Name, 3*time.Minute, terminal); got.Status.Phase != v1alpha1.PhaseFailed {
		t.Fatalf("Build %s: %s, want Failed", b.Name, got.Status.Phase)
	}
	h.waitReports(t, b.Name, sha, []string{"status:pending", "check:queued", "check:in_progress", "status:failure", "check:completed/failure"})
	for _, r := range h.gh.Calls("checks/update") {
		var body struct {
			Conclusion string `json:"conclusion"`
			Output     struct {
				Summary string `json:"summary"`
			} `json:"output"`
		}
		if json.Unmarshal(r.Body, &body) != nil || body.Conclusion != "failure" || !h.checkRunOf(r.Path, sha) {
			continue
		}
		for _, want := range []string{"exit 3", "about to fail"} {
			if !strings.Contains(body.Output.Summary, want) {
				t.Errorf("check run summary lacks %q:\n%s", want, body.Output.Summary)
			}
		}
		return
	}
	t.Errorf("no completed failure check run for %s", sha[:7])
}

// testReportedSupersede: a pull request synchronized twice quickly; the first Build is Canceled
// and reported cancelled, the second succeeds.
func testReportedSupersede(t *testing.T, h *helmEnv) {
	repo, sha1 := h.newRepo(t, "pr", h.Dockerfile("RUN sleep 120\n"))
	pr := func(sha string) []byte {
		return h.githubDelivery(t, "pull_request.synchronize.22.json", repo, func(m map[string]any) {
			m["action"], m["number"] = "synchronize", 5
			p := m["pull_request"].(map[string]any)
			p["number"] = 5
			p["head"].(map[string]any)["sha"] = sha
			p["head"].(map[string]any)["repo"] = m["repository"]
			p["base"].(map[string]any)["ref"] = "main"
			p["base"].(map[string]any)["repo"] = m["repository"]
		})
	}
	h.sendGitHub(t, "pull_request", "e2e-"+cluster.RandomHex(8), pr(sha1))
	first := h.buildOf(t, sha1)
	waitBuild(t, h.BuildNamespace, first.Name, 2*time.Minute, func(b *v1alpha1.Build) bool {
		return b.Status.Phase == v1alpha1.PhaseRunning || b.Status.Phase.Terminal()
	})
	sha2, err := h.Commit(t.Context(), repo, h.Dockerfile(""), "second")
	if err != nil {
		t.Fatal(err)
	}
	h.sendGitHub(t, "pull_request", "e2e-"+cluster.RandomHex(8), pr(sha2))
	if got := waitBuild(t, h.BuildNamespace, first.Name, time.Minute, terminal); got.Status.Phase != v1alpha1.PhaseCanceled {
		t.Fatalf("first Build: %s (%s)", got.Status.Phase, got.Status.Message)
	}
	second := h.buildOf(t, sha2)
	if got := waitBuild(t, h.BuildNamespace, second.Name, 3*time.Minute, terminal); got.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("second Build: %s (%s)", got.Status.Phase, got.Status.Message)
	}
	// The reporter sends the current state, not a replay: a build cancelled soon after it
	// started may skip in_progress. What must hold: the final state, each state at most once,
	// in order.
	cancelled := []string{"status:pending", "check:queued", "check:in_progress", "status:error", "check:completed/cancelled"}
	if got := h.settledReports(t, first.Name, sha1, "status:error", "check:completed/cancelled"); !subsequence(only(got, "status:"), only(cancelled, "status:")) || !subsequence(only(got, "check:"), only(cancelled, "check:")) {
		t.Errorf("GitHub reports of the cancelled build: %v, want a subsequence of %v", got, cancelled)
	}
	h.waitReports(t, second.Name, sha2, success)
}

// testLeaderKilled: the leader is killed (no grace) mid-build; the other replica takes the
// lease, finishes following the build, and the final state is reported exactly once.
func testLeaderKilled(t *testing.T, h *helmEnv) {
	repo, sha := h.newRepo(t, "ha", h.Dockerfile("RUN sleep 15\n"))
	h.sendGitHub(t, "push", "e2e-"+cluster.RandomHex(8), h.githubDelivery(t, "push.none.4.json", repo, webhook.Push(sha)))
	b := h.buildOf(t, sha)
	waitBuild(t, h.BuildNamespace, b.Name, 2*time.Minute, func(b *v1alpha1.Build) bool {
		return b.Status.Phase == v1alpha1.PhaseRunning || b.Status.Phase.Terminal()
	})
	var lease coordinationv1.Lease
	if err := h.Kube.Get(t.Context(), client.ObjectKey{Namespace: h.release, Name: "slipway-controller"}, &lease); err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("leader lease: %v", err)
	}
	leader, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: h.release, Name: leader}}
	if err := h.Kube.Delete(t.Context(), pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("killing leader %s: %v", leader, err)
	}
	killed := time.Now()
	got := waitBuild(t, h.BuildNamespace, b.Name, 3*time.Minute, terminal)
	if got.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("Build %s after the leader was killed: %s (%s)", b.Name, got.Status.Phase, got.Status.Message)
	}
	h.waitReports(t, b.Name, sha, success)
	if err := h.Kube.Get(t.Context(), client.ObjectKey{Namespace: h.release, Name: "slipway-controller"}, &lease); err == nil && lease.Spec.HolderIdentity != nil {
		t.Logf("leader %s killed; %s took over; Build Succeeded %v later", leader, *lease.Spec.HolderIdentity, time.Since(killed).Round(time.Second))
	}
}

// subsequence reports whether got is want with some elements left out, none repeated.
func subsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		for i < len(want) && want[i] != g {
			i++
		}
		if i == len(want) {
			return false
		}
		i++
	}
	return true
}
