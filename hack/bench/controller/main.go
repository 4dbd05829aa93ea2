// Command controller-bench measures Slipway's controller and build pods on the real test cluster
// (hack/cluster), with Slipway's own images, and prints a markdown report.
//
//	sudo hack/bench/controller/run.sh -out docs/performance-controller.md
//
// It is a benchmark, not a test: run it on an otherwise quiet machine with the cluster warm (images
// cached on the node). Three parts:
//
//  1. Sequential: `slipway serve` (intake + controller, out of cluster) and N trivial Builds one
//     after another, each a new commit of one repository (so the registry cache of the previous
//     commit applies, as for a real branch). Per Build, from the client's create call: builder
//     container started (pod watch), solve started (the builder's "solving" log line, kubelet
//     timestamp), Build Succeeded (observed).
//  2. Burst: M Builds of M repositories submitted at once with a global limit of L running builds:
//     total time to the last Succeeded, the most builds seen running at once, and the controller
//     process's RSS (sampled every 100 ms, plus the kernel's peak, VmHWM).
//  3. Pod shapes: P build pods per shape made by podspec.Pod without the controller: pod create →
//     builder started and → Succeeded.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/hack/bench/benchdoc"
	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/podspec"
	"github.com/slipway-dev/slipway/internal/testbed/cluster"
)

func main() {
	seq := flag.Int("builds", 20, "sequential trivial Builds")
	burst := flag.Int("burst", 50, "Builds submitted at once")
	limit := flag.Int("limit", 4, "global maximum of running builds during the burst")
	pods := flag.Int("pods", 5, "build pods per shape without the controller")
	shapeFlag := flag.String("shape", "", "build pod shape for parts 1 and 2 (default: userns when the node supports it)")
	out := flag.String("out", "", "also write the report between the bench markers of this file")
	flag.Parse()
	if *seq < 1 || *burst < 1 || *limit < 1 || *pods < 1 {
		fmt.Fprintln(os.Stderr, "controller-bench: -builds, -burst, -limit and -pods must be at least 1")
		os.Exit(2)
	}
	if err := run(context.Background(), *seq, *burst, *limit, *pods, *shapeFlag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "controller-bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

type bench struct {
	c    *cluster.Cluster
	ns   *cluster.BuildNamespace
	pw   *cluster.PodWatch
	work string
}

func run(ctx context.Context, seq, burst, limit, npods int, shapeFlag, out string) error {
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		return err
	}
	images, err := c.SlipwayImages(ctx, cluster.Options{})
	if err != nil {
		return err
	}
	if err := c.InstallCRDs(ctx, "charts/slipway/crds"); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "controller-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ns, err := c.NewBuildNamespace(ctx, "bench-controller-", images, work+"/git")
	if err != nil {
		return err
	}
	defer func() { _ = ns.Close(context.Background()) }()
	pw, err := c.WatchPods(ctx, ns.Name)
	if err != nil {
		return err
	}
	defer pw.Stop()
	b := &bench{c: c, ns: ns, pw: pw, work: work}

	shape := podspec.Shape(shapeFlag)
	if shape == "" {
		shape = podspec.ShapeRootless
		if c.SupportsUserNamespaces() {
			shape = podspec.ShapeUserNamespace
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "Cluster runtime %s; build pod shape %s for the controller runs.\n\n", c.Runtime, shape)

	// Part 1: sequential Builds through the controller.
	srv, err := b.serve(ctx, shape, 8)
	if err != nil {
		return err
	}
	logf("warm-up build")
	if _, err := b.sequential(ctx, 1, "warm"); err != nil {
		return err
	}
	logf("%d sequential builds", seq)
	samples, err := b.sequential(ctx, seq, "seq")
	if err != nil {
		return err
	}
	rssSeq, peakSeq, _ := srv.RSSKiB()
	if err := srv.Stop(20 * time.Second); err != nil {
		logf("stopping slipway serve: %v", err)
	}
	fmt.Fprintf(&report, "### Build created → started → Succeeded (%d trivial builds, one at a time)\n\n", seq)
	report.WriteString("| interval | p50 | p90 | min | max |\n|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		get  func(buildSample) time.Duration
	}{
		{"created → builder container started", func(s buildSample) time.Duration { return s.started }},
		{"created → solve started (builder's `solving` log line)", func(s buildSample) time.Duration { return s.solving }},
		{"created → Build Succeeded (observed)", func(s buildSample) time.Duration { return s.succeeded }},
		{"created → Build Running (observed)", func(s buildSample) time.Duration { return s.running }},
	} {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, row.get(s))
		}
		fmt.Fprintf(&report, "| %s | %s | %s | %s | %s |\n", row.name, benchdoc.Seconds(pct(ds, 50)), benchdoc.Seconds(pct(ds, 90)), benchdoc.Seconds(slices.Min(ds)), benchdoc.Seconds(slices.Max(ds)))
	}
	report.WriteString("\nMedians of the Build's own `status.timings` over the same builds:\n\n| timing | median |\n|---|---|\n")
	for _, k := range []string{"queued", "schedule", "imagePull", "daemonStart", "daemonWait", "fetch", "solve", "push", "cacheExport", "build"} {
		var ds []time.Duration
		for _, s := range samples {
			if d, ok := s.timings[k]; ok {
				ds = append(ds, d)
			}
		}
		if len(ds) > 0 {
			fmt.Fprintf(&report, "| %s | %s |\n", k, benchdoc.Seconds(pct(ds, 50)))
		}
	}
	fmt.Fprintf(&report, "\nController RSS after the sequential builds: %.1f MiB (peak %.1f MiB).\n\n", float64(rssSeq)/1024, float64(peakSeq)/1024)

	// Part 2: a burst under a global limit.
	logf("burst of %d builds, limit %d", burst, limit)
	srv, err = b.serve(ctx, shape, limit)
	if err != nil {
		return err
	}
	br, err := b.burst(ctx, srv, burst, limit)
	_ = srv.Stop(20 * time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(&report, "### %d Builds at once, global limit %d\n\n", burst, limit)
	fmt.Fprintf(&report, "| total (first create → last Succeeded) | per build (total / %d) | most admitted at once (Pending+Running) | controller RSS max (sampled) | controller peak RSS (VmHWM) | Succeeded |\n|---|---|---|---|---|---|\n", burst)
	fmt.Fprintf(&report, "| %s | %s | %d | %.1f MiB | %.1f MiB | %d/%d |\n\n", benchdoc.Seconds(br.total), benchdoc.Seconds(br.total/time.Duration(burst)), br.maxRunning,
		float64(br.rssMax)/1024, float64(br.peak)/1024, br.succeeded, burst)
	fmt.Fprintf(&report, "Queue wait (`status.timings.queued`): median %s, max %s. Controller RSS before the burst %.1f MiB.\n\n",
		benchdoc.Seconds(pct(br.queued, 50)), benchdoc.Seconds(slices.Max(br.queued)), float64(br.rssBefore)/1024)

	// Part 3: pod shapes without the controller.
	fmt.Fprintf(&report, "### Build pods without the controller (%d per shape, podspec.Pod)\n\n", npods)
	report.WriteString("| shape | pod create → builder started (median) | pod create → Succeeded (median) | all runs → Succeeded |\n|---|---|---|---|\n")
	for _, sh := range []podspec.Shape{podspec.ShapeUserNamespace, podspec.ShapeRootless} {
		if sh == podspec.ShapeUserNamespace && !c.SupportsUserNamespaces() {
			fmt.Fprintf(&report, "| %s | n/a on %s | | |\n", sh, c.Runtime)
			continue
		}
		logf("%d pods, shape %s", npods, sh)
		var st, done []time.Duration
		for i := range npods {
			s, d, err := b.pod(ctx, sh, i)
			if err != nil {
				return err
			}
			st, done = append(st, s), append(done, d)
		}
		fmt.Fprintf(&report, "| %s | %s | %s | %s |\n", sh, benchdoc.Seconds(pct(st, 50)), benchdoc.Seconds(pct(done, 50)), joinD(done))
	}

	fmt.Print(report.String())
	if out != "" {
		return benchdoc.Write(out, report.String())
	}
	return nil
}

func (b *bench) serve(ctx context.Context, shape podspec.Shape, limit int) (*cluster.Serve, error) {
	dir, err := os.MkdirTemp(b.work, "serve-")
	if err != nil {
		return nil, err
	}
	listen, secret, err := cluster.ServeFiles(dir)
	if err != nil {
		return nil, err
	}
	cfg := b.ns.ServeConfig(listen, secret, shape)
	cfg.Controller.MaxRunning, cfg.Controller.MaxRunningPerRepo = limit, limit
	return b.ns.StartServe(ctx, dir, cfg)
}

type buildSample struct {
	started, solving, running, succeeded time.Duration
	timings                              map[string]time.Duration
}

// sequential runs n Builds one after another, each a new commit of the same repository.
func (b *bench) sequential(ctx context.Context, n int, prefix string) ([]buildSample, error) {
	repo := prefix + "-" + cluster.RandomHex(4)
	cloneURL, _, err := b.ns.NewRepo(ctx, repo, b.ns.Dockerfile(""), "v0")
	if err != nil {
		return nil, err
	}
	var out []buildSample
	for i := range n {
		sha, err := b.ns.Commit(ctx, repo, b.ns.Dockerfile(""), fmt.Sprintf("v%d", i+1))
		if err != nil {
			return nil, err
		}
		bd := b.ns.NewBuild(fmt.Sprintf("%s-%d", repo, i), repo, cloneURL, sha)
		created := time.Now()
		if err := b.ns.Kube.Create(ctx, bd); err != nil {
			return nil, err
		}
		var s buildSample
		var got v1alpha1.Build
		err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := b.ns.Kube.Get(ctx, client.ObjectKeyFromObject(bd), &got); err != nil {
				return false, nil
			}
			if s.running == 0 && (got.Status.Phase == v1alpha1.PhaseRunning || got.Status.Phase.Terminal()) {
				s.running = time.Since(created)
			}
			return got.Status.Phase.Terminal(), nil
		})
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", bd.Name, err)
		}
		s.succeeded = time.Since(created)
		if got.Status.Phase != v1alpha1.PhaseSucceeded {
			return nil, fmt.Errorf("build %s: %s %s: %s", bd.Name, got.Status.Phase, got.Status.Reason, got.Status.Message)
		}
		pod, err := b.c.Client.CoreV1().Pods(b.ns.Name).Get(ctx, bd.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		st, ok := b.pw.BuilderStarted(string(pod.UID))
		if !ok {
			return nil, fmt.Errorf("pod %s: builder start not seen", pod.Name)
		}
		s.started = st.Sub(created)
		solving, err := b.logLineTime(ctx, pod.Name, "msg=solving")
		if err != nil {
			return nil, err
		}
		s.solving = solving.Sub(created)
		s.timings = map[string]time.Duration{}
		for k, v := range got.Status.Timings {
			s.timings[k] = v.Duration
		}
		logf("%s: started %s, solving %s, Succeeded %s", bd.Name, benchdoc.Seconds(s.started), benchdoc.Seconds(s.solving), benchdoc.Seconds(s.succeeded))
		out = append(out, s)
	}
	return out, nil
}

// logLineTime is the kubelet's timestamp of the builder's first log line containing substr.
func (b *bench) logLineTime(ctx context.Context, pod, substr string) (time.Time, error) {
	raw, err := b.c.Client.CoreV1().Pods(b.ns.Name).GetLogs(pod, &corev1.PodLogOptions{Container: podspec.BuilderName, Timestamps: true}).DoRaw(ctx)
	if err != nil {
		return time.Time{}, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ts, line, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.Contains(line, substr) {
			return time.Parse(time.RFC3339Nano, ts)
		}
	}
	return time.Time{}, fmt.Errorf("pod %s: no log line with %q", pod, substr)
}

type burstResult struct {
	total                   time.Duration
	maxRunning, succeeded   int
	rssMax, peak, rssBefore int64
	queued                  []time.Duration
}

// burst creates n Builds of n repositories at once and waits for all of them.
func (b *bench) burst(ctx context.Context, srv *cluster.Serve, n, limit int) (burstResult, error) {
	var r burstResult
	r.rssBefore, _, _ = srv.RSSKiB()
	var builds []*v1alpha1.Build
	for i := range n {
		repo := fmt.Sprintf("burst-%d-%s", i, cluster.RandomHex(3))
		cloneURL, sha, err := b.ns.NewRepo(ctx, repo, b.ns.Dockerfile(""), "burst")
		if err != nil {
			return r, err
		}
		builds = append(builds, b.ns.NewBuild(repo, repo, cloneURL, sha))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() { // controller RSS and builds running at once
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if rss, _, err := srv.RSSKiB(); err == nil {
				mu.Lock()
				r.rssMax = max(r.rssMax, rss)
				mu.Unlock()
			}
			var list v1alpha1.BuildList
			if err := b.ns.Kube.List(ctx, &list, client.InNamespace(b.ns.Name)); err == nil {
				running := 0
				for _, bd := range list.Items {
					if bd.Status.Phase == v1alpha1.PhasePending || bd.Status.Phase == v1alpha1.PhaseRunning {
						running++
					}
				}
				mu.Lock()
				r.maxRunning = max(r.maxRunning, running)
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	errc := make(chan error, n)
	for _, bd := range builds {
		go func() { errc <- b.ns.Kube.Create(ctx, bd) }()
	}
	for range builds {
		if err := <-errc; err != nil {
			close(stop)
			return r, err
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
		var list v1alpha1.BuildList
		if err := b.ns.Kube.List(ctx, &list, client.InNamespace(b.ns.Name)); err != nil {
			return false, nil
		}
		done := 0
		for _, bd := range list.Items {
			if strings.HasPrefix(bd.Name, "burst-") && bd.Status.Phase.Terminal() {
				done++
			}
		}
		return done == n, nil
	})
	r.total = time.Since(start)
	close(stop)
	wg.Wait()
	_, r.peak, _ = srv.RSSKiB()
	if err != nil {
		return r, fmt.Errorf("burst: %w", err)
	}
	var list v1alpha1.BuildList
	if err := b.ns.Kube.List(ctx, &list, client.InNamespace(b.ns.Name)); err != nil {
		return r, err
	}
	for _, bd := range list.Items {
		if !strings.HasPrefix(bd.Name, "burst-") {
			continue
		}
		if bd.Status.Phase == v1alpha1.PhaseSucceeded {
			r.succeeded++
		} else {
			logf("burst build %s: %s %s: %s; failure %+v", bd.Name, bd.Status.Phase, bd.Status.Reason, bd.Status.Message, bd.Status.Failure)
			if raw, err := b.c.Client.CoreV1().Pods(b.ns.Name).GetLogs(bd.Name, &corev1.PodLogOptions{Container: podspec.BuilderName, Timestamps: true}).DoRaw(ctx); err == nil {
				logf("builder log of %s:\n%s", bd.Name, raw)
			}
		}
		if q, ok := bd.Status.Timings["queued"]; ok {
			r.queued = append(r.queued, q.Duration)
		}
	}
	if len(r.queued) == 0 {
		return r, errors.New("burst: no queued timings")
	}
	logf("burst: %s total, %d/%d Succeeded, at most %d running, RSS max %d KiB, peak %d KiB", benchdoc.Seconds(r.total), r.succeeded, n, r.maxRunning, r.rssMax, r.peak)
	return r, nil
}

// pod runs one build pod of the given shape made by podspec.Pod, without the controller.
func (b *bench) pod(ctx context.Context, shape podspec.Shape, i int) (started, succeeded time.Duration, err error) {
	repo := fmt.Sprintf("pod-%s-%d-%s", shape, i, cluster.RandomHex(3))
	cloneURL, sha, err := b.ns.NewRepo(ctx, repo, b.ns.Dockerfile(""), "pod")
	if err != nil {
		return 0, 0, err
	}
	bd := b.ns.NewBuild(repo, repo, cloneURL, sha)
	if err := b.ns.Kube.Create(ctx, bd); err != nil { // the pod's owner must exist
		return 0, 0, err
	}
	refs, err := podspec.ImageRefs(bd, b.ns.RegistryPrefix())
	if err != nil {
		return 0, 0, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: bd.Name + "-git"}, Data: map[string][]byte{podspec.GitTokenKey: []byte(b.ns.Token)}}
	if _, err := b.c.Client.CoreV1().Secrets(b.ns.Name).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return 0, 0, err
	}
	pod := podspec.Pod(podspec.Input{Build: bd, Refs: refs, GitTokenSecret: secret.Name, Push: true}, b.ns.PodSettings(shape))
	created := time.Now()
	got, err := b.c.Client.CoreV1().Pods(b.ns.Name).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return 0, 0, err
	}
	var phase corev1.PodPhase
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := b.c.Client.CoreV1().Pods(b.ns.Name).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	succeeded = time.Since(created)
	if err != nil || phase != corev1.PodSucceeded {
		raw, _ := b.c.Client.CoreV1().Pods(b.ns.Name).GetLogs(pod.Name, &corev1.PodLogOptions{Container: podspec.BuilderName}).DoRaw(ctx)
		return 0, 0, fmt.Errorf("pod %s: %s (%v); builder log:\n%s", pod.Name, phase, err, raw)
	}
	st, ok := b.pw.BuilderStarted(string(got.UID))
	if !ok {
		return 0, 0, fmt.Errorf("pod %s: builder start not seen", pod.Name)
	}
	logf("%s: builder started %s, Succeeded %s", pod.Name, benchdoc.Seconds(st.Sub(created)), benchdoc.Seconds(succeeded))
	return st.Sub(created), succeeded, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // nearest rank
	return s[max(i-1, 0)]
}

func joinD(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return strings.Join(parts, ", ") + " s"
}
