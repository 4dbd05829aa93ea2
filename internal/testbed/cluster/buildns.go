package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/gitserver"
)

// Names of the per-namespace objects that Slipway's configuration refers to in a BuildNamespace.
const (
	PushSecretName     = "registry-push"
	CloneSecretName    = "git-clone"
	BuildKitConfigName = "buildkitd-config"
)

// BuildNamespace is a namespace prepared the way Slipway's configuration expects a build
// namespace (the registry CA for BuildKit, a push Secret, a clone-token Secret), with a git server
// that pods reach, for end-to-end tests and benchmarks of the build pod and the controller.
type BuildNamespace struct {
	Cluster *Cluster
	// Kube is a controller-runtime client that knows Builds.
	Kube client.Client
	Name string
	// Git serves the test repositories on the bridge gateway; Token is its clone token.
	Git    *gitserver.Server
	Token  string
	Images Images
}

// NewBuildNamespace creates a namespace named prefix+random and everything in it; Close deletes it.
// gitRoot is where the git server keeps its repositories. The Build CRD must be installed.
func (c *Cluster) NewBuildNamespace(ctx context.Context, prefix string, images Images, gitRoot string) (*BuildNamespace, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	quietControllerRuntime()
	kube, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	b := &BuildNamespace{Cluster: c, Kube: kube, Images: images, Token: RandomHex(16)}
	cs := c.Client.CoreV1()
	ns, err := cs.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	b.Name = ns.Name
	fail := func(err error) (*BuildNamespace, error) {
		_ = b.Close(context.Background())
		return nil, err
	}
	// Pods are refused until the controller-manager has created the default ServiceAccount.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.ServiceAccounts(b.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return fail(fmt.Errorf("no default ServiceAccount in %s: %w", b.Name, err))
	}
	gw := c.Env["SLIPWAY_CLUSTER_GATEWAY"]
	if gw == "" {
		return fail(fmt.Errorf("cluster env file lacks SLIPWAY_CLUSTER_GATEWAY"))
	}
	// The bridge gateway: pods reach it as their default gateway, and nothing else binds there.
	if b.Git, err = gitserver.StartOn(gw+":0", gitRoot, b.Token); err != nil {
		return fail(err)
	}
	if _, err := cs.ConfigMaps(b.Name).Create(ctx, c.BuildKitConfigMap(BuildKitConfigName, podspec.BuildKitConfigDir), metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	if _, err := cs.Secrets(b.Name).Create(ctx, c.PushSecret(PushSecretName), metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	if _, err := cs.Secrets(b.Name).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CloneSecretName},
		Data:       map[string][]byte{"token": []byte(b.Token)},
	}, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	return b, nil
}

// Close stops the git server and deletes the namespace (without waiting for it to go).
func (b *BuildNamespace) Close(ctx context.Context) error {
	if b.Git != nil {
		_ = b.Git.Close()
	}
	return b.Cluster.Client.CoreV1().Namespaces().Delete(ctx, b.Name, metav1.DeleteOptions{})
}

// RegistryPrefix is where the namespace's builds push.
func (b *BuildNamespace) RegistryPrefix() string { return b.Cluster.Registry + "/e2e" }

// Resources of the build pods here: small requests, so that many fit on the 2-CPU node.
var (
	builderResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	buildkitResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
	}
)

// PodSettings are the build-pod settings that ServeConfig gives the controller, for tests that
// make pods with podspec.Pod themselves.
func (b *BuildNamespace) PodSettings(shape podspec.Shape) podspec.Settings {
	return podspec.Settings{
		Shape: shape, BuilderImage: b.Images.Builder, BuildKitImage: b.Images.BuildKit,
		ImagePullPolicy: corev1.PullIfNotPresent, DefaultTimeout: 5 * time.Minute,
		RegistryPrefix: b.RegistryPrefix(), PushSecretName: PushSecretName, BuildKitConfigMap: BuildKitConfigName,
		BuilderResources: builderResources, BuildKitResources: buildkitResources,
	}
}

// ServeConfig is a `slipway serve` configuration for this namespace, listening on listen, with
// the controller on (leader-elected) and build pods of the given shape.
func (b *BuildNamespace) ServeConfig(listen, webhookSecretFile string, shape podspec.Shape) config.Serve {
	c := config.Default()
	c.Listen = listen
	c.Kubeconfig = b.Cluster.Kubeconfig
	c.Namespace = b.Name
	c.GitHub.WebhookSecretFile = webhookSecretFile
	cc := &c.Controller
	cc.Enabled, cc.LeaderElection = true, true
	cc.Shape = string(shape)
	cc.BuilderImage, cc.BuildKitImage = b.Images.Builder, b.Images.BuildKit
	cc.ImagePullPolicy = corev1.PullIfNotPresent
	cc.RegistryPrefix = b.RegistryPrefix()
	cc.PushSecretName, cc.CloneTokenSecret, cc.BuildKitConfigMap = PushSecretName, CloneSecretName, BuildKitConfigName
	cc.BuilderResources, cc.BuildKitResources = builderResources, buildkitResources
	cc.DefaultTimeout = metav1.Duration{Duration: 5 * time.Minute}
	cc.ImagePullTimeout = metav1.Duration{Duration: time.Minute}
	cc.UnschedulableTimeout = metav1.Duration{Duration: 2 * time.Minute}
	return c
}

// StartServe runs the slipway binary of b.Images with cfg, outside the cluster, keeping its
// config, webhook secret and log in dir.
func (b *BuildNamespace) StartServe(ctx context.Context, dir string, cfg config.Serve) (*Serve, error) {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return StartServe(ctx, b.Images.Binary, dir, data, cfg.Listen)
}

// ServeFiles prepares dir for StartServe: a webhook secret file (returned) and a free loopback
// address to listen on.
func ServeFiles(dir string) (listen, webhookSecretFile string, err error) {
	webhookSecretFile = filepath.Join(dir, "github-webhook-secret")
	if err := os.WriteFile(webhookSecretFile, []byte(RandomHex(16)), 0o600); err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	listen = ln.Addr().String()
	ln.Close()
	return listen, webhookSecretFile, nil
}

// Dockerfile is the test repositories' Dockerfile: the cluster's busybox image as the base (BuildKit
// pulls it from the TLS registry, trusting its CA), a file from the commit, and a RUN step that
// records its PID (1 only with BuildKit's process sandbox) and uid. extra goes before CMD.
func (b *BuildNamespace) Dockerfile(extra string) string {
	return fmt.Sprintf(`FROM %s
COPY greeting.txt /greeting.txt
RUN echo "pid=$$ uid=$(id -u)" > /run-info
%sCMD ["sh", "-c", "cat /greeting.txt /run-info"]
`, b.Cluster.TestImage, extra)
}

// NewRepo creates repository name on the git server with the Dockerfile and a greeting file, and
// returns its clone URL and commit.
func (b *BuildNamespace) NewRepo(ctx context.Context, name, dockerfile, greeting string) (cloneURL, sha string, err error) {
	sha, err = b.Git.NewRepo(ctx, name, map[string]string{"Dockerfile": dockerfile, "greeting.txt": greeting + "\n"})
	return b.Git.RepoURL(name), sha, err
}

// Commit adds a commit with this Dockerfile and greeting to repository name.
func (b *BuildNamespace) Commit(ctx context.Context, name, dockerfile, greeting string) (string, error) {
	return b.Git.Commit(ctx, name, map[string]string{"Dockerfile": dockerfile, "greeting.txt": greeting + "\n"}, nil)
}

// NewBuild is a Build named name of commit sha, pushed to branch main of repository e2e/<repo>.
func (b *BuildNamespace) NewBuild(name, repo, cloneURL, sha string) *v1alpha1.Build {
	return &v1alpha1.Build{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Build"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.Name},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{
				Forge: v1alpha1.ForgeGitHub, Host: strings.TrimPrefix(b.Git.URL, "http://"), Repository: "e2e/" + repo,
				CloneURL: cloneURL, Commit: sha, Ref: "refs/heads/main", Event: v1alpha1.EventPush, DefaultBranch: "main",
			},
			Target: v1alpha1.Target{Name: "default", Context: ".", Dockerfile: "Dockerfile"},
		},
	}
}

// PodWatch records, for every pod of a namespace, each UID it ever had and when the builder
// container was first seen started, from a watch that begins before anything is created.
type PodWatch struct {
	mu      sync.Mutex
	uids    map[string]map[string]bool
	started map[string]time.Time // pod UID -> first seen with the builder running or done
	cancel  context.CancelFunc
	done    chan struct{}
}

// WatchPods starts a PodWatch on namespace ns; Stop ends it.
func (c *Cluster) WatchPods(ctx context.Context, ns string) (*PodWatch, error) {
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &PodWatch{uids: map[string]map[string]bool{}, started: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	for i := range list.Items {
		w.observe(&list.Items[i])
	}
	rv := list.ResourceVersion
	go func() {
		defer close(w.done)
		for wctx.Err() == nil {
			wi, err := c.Client.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = pod.ResourceVersion
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					w.observe(pod)
				}
			}
			wi.Stop()
		}
	}()
	return w, nil
}

func (w *PodWatch) observe(p *corev1.Pod) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.uids[p.Name] == nil {
		w.uids[p.Name] = map[string]bool{}
	}
	w.uids[p.Name][string(p.UID)] = true
	if _, ok := w.started[string(p.UID)]; ok {
		return
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == podspec.BuilderName && (s.State.Running != nil || s.State.Terminated != nil) {
			w.started[string(p.UID)] = now
		}
	}
}

// Stop ends the watch.
func (w *PodWatch) Stop() {
	w.cancel()
	<-w.done
}

// UIDs are the distinct UIDs ever seen for pod name.
func (w *PodWatch) UIDs(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for u := range w.uids[name] {
		out = append(out, u)
	}
	return out
}

// BuilderStarted is when the watch first saw the builder of pod uid started.
func (w *PodWatch) BuilderStarted(uid string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.started[uid]
	return t, ok
}

var quietOnce sync.Once

// quietControllerRuntime gives controller-runtime's global logger a sink, so that its client does
// not print a "log.SetLogger(...) was never called" stack trace into test output.
func quietControllerRuntime() { quietOnce.Do(func() { ctrllog.SetLogger(logr.Discard()) }) }

// RandomHex is n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
