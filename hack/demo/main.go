// Command demo is the Go half of `make demo` (hack/demo/demo.sh runs it):
//
//	demo forge -state DIR -env CLUSTER_ENV   # long-running: fake GitHub + git server on the bridge gateway
//	demo run   -state DIR -env CLUSTER_ENV   # install the chart, send a signed push, follow it
//
// The forge is the fake GitHub of the tests (every request checked against GitHub's OpenAPI
// description) and the tests' git server, holding testdata/demo/app as demo/hello. Its App key,
// webhook secret and ports are fixed per state dir, so that a second `make demo` reuses all.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/forge/github/githubtest"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
	"github.com/slipway-dev/slipway/internal/testbed/gitserver"
	"github.com/slipway-dev/slipway/internal/testbed/webhook"
)

// Fixed addresses on the bridge gateway (pods reach it) and loopback (the control endpoint).
const (
	githubPort  = "17080"
	gitPort     = "17081"
	controlAddr = "127.0.0.1:17082"
	repo        = "demo/hello"
	releaseNS   = "slipway-demo"
	buildNS     = "slipway-demo-builds"
)

// forgeInfo is what `forge` tells `run`, through the state dir.
type forgeInfo struct {
	APIURL, GitURL, CloneURL, Commit, GitHost string
	AppID                                     int64
}

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: demo forge|run -state DIR -env CLUSTER_ENV")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	state := fs.String("state", "", "state directory")
	envFile := fs.String("env", "", "cluster env file (hack/cluster/up.sh)")
	values := fs.String("values", "", "image values file (hack/images/slipway-images.sh)")
	_ = fs.Parse(os.Args[2:])
	if *state == "" || *envFile == "" {
		log.Fatal("-state and -env are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cluster.Load(ctx, *envFile)
	if err != nil {
		log.Fatal(err)
	}
	switch os.Args[1] {
	case "forge":
		err = serveForge(ctx, c, *state)
	case "run":
		err = run(ctx, c, *state, *values)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal("demo: ", err)
	}
}

// tb lets the tests' fake GitHub run outside a test.
type tb struct{ cleanups []func() }

func (*tb) Helper()                           {}
func (*tb) Fatal(args ...any)                 { log.Fatal(args...) }
func (*tb) Errorf(format string, args ...any) { log.Printf("fake GitHub: "+format, args...) }
func (t *tb) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }

// secret returns the content of a state file, creating it with make the first time.
func secret(path string, make func() []byte) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b := make()
	return b, os.WriteFile(path, b, 0o600)
}

func randomHex(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return []byte(hex.EncodeToString(b))
}

func serveForge(ctx context.Context, c *cluster.Cluster, state string) error {
	gw := c.Env["SLIPWAY_CLUSTER_GATEWAY"]
	// demo.sh stops the forge by this PID (setsid may fork, so $! is not it).
	if err := os.WriteFile(filepath.Join(state, "forge.pid"), []byte(fmt.Sprint(os.Getpid())), 0o600); err != nil {
		return err
	}
	t := &tb{}
	defer func() {
		for _, f := range slices.Backward(t.cleanups) {
			f()
		}
	}()
	gh := githubtest.NewOn(t, gw+":"+githubPort)
	// The App's key survives restarts of the forge, so the installed Secret stays valid.
	keyPEM, err := secret(filepath.Join(state, "app.pem"), func() []byte { return gh.KeyPEM })
	if err != nil {
		return err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return errors.New("app.pem holds no PEM block")
	}
	if gh.Key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return fmt.Errorf("app.pem: %w", err)
	}
	gh.KeyPEM = keyPEM
	gh.AddInstallation(githubtest.Installation{ID: 1, Repositories: []string{repo}, Permissions: map[string]string{
		"checks": "write", "statuses": "write", "contents": "read", "metadata": "read",
	}})

	gitRoot := filepath.Join(state, "git")
	if err := os.RemoveAll(gitRoot); err != nil {
		return err
	}
	git, err := gitserver.StartOn(gw+":"+gitPort, gitRoot, string(randomHex(16)))
	if err != nil {
		return err
	}
	defer git.Close()
	// Builds clone with the token the App minted for demo/hello, as they would on GitHub.
	git.SetTokenCheck(func(tok, r string) bool { return gh.CloneTokenAllows(tok, "demo/"+r) })
	files, err := appFiles(c)
	if err != nil {
		return err
	}
	sha, err := git.NewRepo(ctx, "hello", files)
	if err != nil {
		return err
	}
	gh.PutFile(repo, sha, ".slipway.yaml", files[".slipway.yaml"])
	info := forgeInfo{APIURL: gh.APIURL(), GitURL: git.URL, CloneURL: git.RepoURL("hello"), Commit: sha,
		GitHost: strings.TrimPrefix(git.URL, "http://"), AppID: gh.AppID}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(state, "forge.json"), data, 0o600); err != nil {
		return err
	}

	// The control endpoint lets `run` show what GitHub received.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, _ *http.Request) {
		var out []request
		for _, r := range gh.Requests() {
			out = append(out, request{Operation: r.Operation, Status: r.Status, Body: string(r.Body)})
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	ctl := &http.Server{Addr: controlAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = ctl.Close() }()
	log.Printf("fake GitHub %s, git server %s (demo/hello at %s)", gh.APIURL(), git.URL, sha[:7])
	if err := ctl.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// appFiles is testdata/demo/app plus the .slipway.yaml that names the cluster's base image.
func appFiles(c *cluster.Cluster) (map[string]string, error) {
	dir := filepath.Join(repoRoot(), "testdata", "demo", "app")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = string(b)
	}
	files[".slipway.yaml"] = fmt.Sprintf("# Written by make demo.\ntargets:\n  - name: web\n    image: hello\n    buildArgs:\n      BASE: %q\n", c.TestImage)
	return files, nil
}

func repoRoot() string {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		wd, _ := os.Getwd()
		return wd
	}
	return strings.TrimSpace(string(out))
}

func run(ctx context.Context, c *cluster.Cluster, state, valuesFile string) error {
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Printf("%6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var info forgeInfo
	data, err := os.ReadFile(filepath.Join(state, "forge.json"))
	if err != nil {
		return fmt.Errorf("the fake forge has not started: %w", err)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return err
	}
	webhookSecret, err := secret(filepath.Join(state, "webhook-secret"), func() []byte { return randomHex(16) })
	if err != nil {
		return err
	}
	linkKey, err := secret(filepath.Join(state, "link-key"), func() []byte { return randomHex(32) })
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(state, "app.pem"))
	if err != nil {
		return err
	}
	kube, err := kubeClient(c)
	if err != nil {
		return err
	}

	// Namespaces and what the build namespace needs: the registry's CA for BuildKit, a push
	// Secret. Applied every time, so a second run changes nothing.
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: releaseNS}},
		{ObjectMeta: metav1.ObjectMeta{Name: buildNS, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "restricted",
			"pod-security.kubernetes.io/audit": "restricted"}}},
	} {
		if err := apply(ctx, kube, ns); err != nil {
			return err
		}
	}
	cm := c.BuildKitConfigMap(cluster.BuildKitConfigName, podspec.BuildKitConfigDir)
	cm.Namespace = buildNS
	push := c.PushSecret(cluster.PushSecretName)
	push.Namespace = buildNS
	for _, o := range []client.Object{cm, push,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "slipway-github", Namespace: releaseNS},
			Data: map[string][]byte{"webhook-secret": webhookSecret, "private-key": keyPEM}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "slipway-build-page", Namespace: releaseNS},
			Data: map[string][]byte{"signing-key": linkKey}},
	} {
		if err := apply(ctx, kube, o); err != nil {
			return err
		}
	}
	step("namespaces %s (Slipway) and %s (builds) ready", releaseNS, buildNS)

	if err := helmInstall(ctx, c, state, valuesFile, info); err != nil {
		return err
	}
	var svc corev1.Service
	if err := kube.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: "slipway"}, &svc); err != nil {
		return err
	}
	base := fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	hooks := base + "/hooks/github"
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i == 600 {
			return fmt.Errorf("Slipway does not answer at %s/readyz", base)
		}
		time.Sleep(200 * time.Millisecond)
	}
	step("chart installed: 2 replicas of slipway serve, webhooks at %s", hooks)

	mark := len(forgeRequests())
	delivery := "demo-" + string(randomHex(6))
	body, err := pushPayload(info)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hooks, bytes.NewReader(body))
	req.Header.Set(github.HeaderEvent, "push")
	req.Header.Set(github.HeaderDelivery, delivery)
	req.Header.Set(github.HeaderSignature256, github.Sign(webhookSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the push: %w", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	step("signed push of %s@%s (delivery %s) → %d %s", repo, info.Commit[:7], delivery, resp.StatusCode, strings.TrimSpace(string(answer)))
	if resp.StatusCode != http.StatusAccepted {
		return errors.New("the push was not accepted")
	}
	return follow(ctx, c, kube, step, delivery, mark)
}

// follow prints the Build's phases, its pod, what GitHub received, and the outcome.
func follow(ctx context.Context, c *cluster.Cluster, kube client.Client, step func(string, ...any), delivery string, mark int) error {
	seen := map[string]bool{}
	var name string
	deadline := time.Now().Add(5 * time.Minute)
	for ; time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		var l v1alpha1.BuildList
		if err := kube.List(ctx, &l, client.InNamespace(buildNS)); err != nil {
			return err
		}
		var b *v1alpha1.Build
		for i := range l.Items {
			x := &l.Items[i]
			if x.Spec.Trigger.DeliveryID != delivery {
				continue
			}
			if x.IsTrigger() {
				if !seen["trigger "+x.Name] {
					seen["trigger "+x.Name] = true
					step("Build %s recorded (trigger: .slipway.yaml is read next)", x.Name)
				}
				continue
			}
			b = x
		}
		if rs := forgeRequests(); len(rs) > mark {
			for _, r := range rs[mark:] {
				if line := describeRequest(r); line != "" {
					step("GitHub ← %s", line)
				}
			}
			mark = len(rs)
		}
		if b == nil {
			continue
		}
		name = b.Name
		if !seen["build"] {
			seen["build"] = true
			step("Build %s for target %q (image %s)", b.Name, b.Spec.Target.Name, b.Spec.Target.Image)
		}
		if p := string(b.Status.Phase); p != "" && !seen[p] {
			seen[p] = true
			step("phase %s%s", p, suffix(b.Status.Message))
		}
		var pod corev1.Pod
		if !seen["pod"] && kube.Get(ctx, client.ObjectKey{Namespace: buildNS, Name: b.Name}, &pod) == nil {
			seen["pod"] = true
			step("pod %s/%s: buildkitd sidecar (rootless) + builder", buildNS, pod.Name)
		}
		if b.Status.Phase.Terminal() && seen["reported"] {
			break
		}
		if b.Status.Phase.Terminal() {
			// One more round for the final reports.
			time.Sleep(2 * time.Second)
			seen["reported"] = true
		}
	}
	var b v1alpha1.Build
	if err := kube.Get(ctx, client.ObjectKey{Namespace: buildNS, Name: name}, &b); err != nil {
		return fmt.Errorf("the Build did not appear: %w", err)
	}
	logs, err := c.Client.CoreV1().Pods(buildNS).GetLogs(b.Name, &corev1.PodLogOptions{Container: podspec.BuilderName, TailLines: ptr(int64(12))}).DoRaw(ctx)
	if err == nil {
		fmt.Printf("\n--- builder log (tail) ---\n%s--- end ---\n\n", logs)
	}
	if b.Status.Phase != v1alpha1.PhaseSucceeded {
		return fmt.Errorf("Build %s ended %s: %s %s", b.Name, b.Status.Phase, b.Status.Reason, b.Status.Message)
	}
	fmt.Printf("Succeeded: %s@%s\n", b.Spec.Target.Image, b.Status.Digest)
	if len(b.Status.Tags) > 0 {
		fmt.Printf("tags:      %s\n", strings.Join(b.Status.Tags, " "))
	}
	fmt.Printf("timings:   %s\n", timings(&b))
	return nil
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func timings(b *v1alpha1.Build) string {
	var parts []string
	for _, k := range []string{"queued", "schedule", "imagePull", "daemonStart", "fetch", "solve", "push", "build"} {
		if d, ok := b.Status.Timings[k]; ok {
			parts = append(parts, k+" "+d.Duration.String())
		}
	}
	return strings.Join(parts, ", ")
}

// request is one call the fake GitHub received, as the control endpoint reports it.
type request struct {
	Operation string
	Status    int
	Body      string
}

func describeRequest(r request) string {
	var body map[string]any
	_ = json.Unmarshal([]byte(r.Body), &body)
	switch r.Operation {
	case "repos/get-content":
		return fmt.Sprintf("GET .slipway.yaml (%d)", r.Status)
	case githubtest.OpMintToken:
		if strings.Contains(r.Body, "repositories") {
			return fmt.Sprintf("mint clone token for %s, contents:read only (%d)", repo, r.Status)
		}
		return ""
	case "checks/create", "checks/update":
		s := fmt.Sprint("check run ", body["status"])
		if c, ok := body["conclusion"]; ok {
			s += " / " + fmt.Sprint(c)
		}
		return fmt.Sprintf("%s (%d)", s, r.Status)
	case "repos/create-commit-status":
		return fmt.Sprintf("commit status %v %q (%d)", body["state"], body["description"], r.Status)
	}
	return ""
}

func forgeRequests() []request {
	resp, err := http.Get("http://" + controlAddr + "/requests")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var rs []request
	_ = json.NewDecoder(resp.Body).Decode(&rs)
	return rs
}

func pushPayload(info forgeInfo) ([]byte, error) {
	return webhook.GitHub("push.none.4.json", webhook.Repo{FullName: repo, HTMLURL: info.GitURL + "/" + repo,
		CloneURL: info.CloneURL, Installation: 1}, webhook.Push(info.Commit))
}

func helmInstall(ctx context.Context, c *cluster.Cluster, state, imageValues string, info forgeInfo) error {
	values := map[string]any{
		"replicas":       2,
		"resources":      map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}},
		"externalURL":    "http://slipway.demo.invalid",
		"buildPage":      map[string]any{"signingKey": map[string]any{"name": "slipway-build-page"}},
		"buildNamespace": map[string]any{"name": buildNS, "create": false},
		"github": map[string]any{"enabled": true, "app": map[string]any{"id": info.AppID},
			"apiURL": info.APIURL, "host": info.GitHost, "reporting": "both"},
		"build": map[string]any{
			"shape":             map[bool]string{true: "userns", false: "rootless"}[c.SupportsUserNamespaces()],
			"registryPrefix":    c.Registry + "/demo",
			"allowedRegistries": []string{c.Registry},
			"pushSecretName":    cluster.PushSecretName,
			"buildkitConfigMap": cluster.BuildKitConfigName,
			"builderResources":  map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "32Mi"}},
			"buildkitResources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "64Mi"}},
		},
	}
	data, err := yaml.Marshal(values)
	if err != nil {
		return err
	}
	f := filepath.Join(state, "values.yaml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		return err
	}
	helm, err := exec.CommandContext(ctx, filepath.Join(repoRoot(), "hack", "tool.sh"), "helm").Output()
	if err != nil {
		return fmt.Errorf("building helm: %w", err)
	}
	args := []string{"upgrade", "--install", "slipway", filepath.Join(repoRoot(), "charts", "slipway"),
		"--kubeconfig", c.Kubeconfig, "-n", releaseNS, "--wait", "--timeout", "3m", "-f", imageValues, "-f", f}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(helm)), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func kubeClient(c *cluster.Cluster) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(c.Config, client.Options{Scheme: scheme})
}

// apply creates o, or updates it to what is given: the demo's objects are entirely its own.
func apply(ctx context.Context, kube client.Client, o client.Object) error {
	err := kube.Create(ctx, o)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur := o.DeepCopyObject().(client.Object)
	if err := kube.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
		return err
	}
	o.SetResourceVersion(cur.GetResourceVersion())
	return kube.Update(ctx, o)
}

func ptr[T any](v T) *T { return &v }
