// Command builder-bench measures Slipway's builder on the real BuildKit test bed against Debian's
// buildah, with the same multi-stage Dockerfile, and prints a markdown table of medians.
//
//	sudo hack/bench/builder/run.sh -runs 5 -out docs/performance-builder.md   (installs buildah, prepares the test bed)
//
// It is a benchmark, not a test: run it by hand on an otherwise quiet machine. Scenarios run
// interleaved, one of each per round, so that machine noise spreads evenly over them. Every build
// pushes its image to the test bed's loopback registry.
//
// BuildKit rows time builder.Run (the code `slipway build` runs) from a local source dir, so the
// git fetch is excluded; "fresh daemon" rows start a new rootless buildkitd on an empty state dir
// first (its start-up time is reported separately: in a pod it overlaps the source fetch).
// buildah runs rootless as the test bed's daemon user, overlay storage, --layers, host network.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/hack/bench/benchdoc"
	"github.com/slipway-dev/slipway/internal/builder"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/testbed/buildkit"
)

func main() {
	runs := flag.Int("runs", 5, "rounds; each scenario runs once per round")
	spin := flag.Int("spin", 1500000, "busy-loop iterations in the build stage (CPU cost of the 'compile')")
	out := flag.String("out", "", "also write the markdown report to this file")
	flag.Parse()
	if err := run(context.Background(), *runs, *spin, *out); err != nil {
		fmt.Fprintln(os.Stderr, "builder-bench:", err)
		os.Exit(1)
	}
}

const dockerfileTmpl = `FROM {{BASE}} AS build
WORKDIR /src
COPY src/ /src/
RUN sh ./build.sh /out
RUN sha256sum /out/* > /out/SUMS

FROM {{BASE}}
RUN echo "app:x:10001:10001::/app:/bin/sh" >> /etc/passwd && mkdir -p /app && chown 10001:10001 /app
COPY --from=build /out/ /app/
ARG FINAL=v1
RUN echo "$FINAL" > /app/version.txt
USER app
WORKDIR /app
CMD ["cat", "/app/version.txt"]
`

const buildScript = `set -e
mkdir -p "$1"
dd if=/dev/urandom of="$1/artifact.bin" bs=1M count=16 2>/dev/null
i=0; while [ $i -lt %d ]; do i=$((i+1)); done
echo built > "$1/version.txt"
`

type sample struct {
	d       time.Duration
	steps   buildresult.Steps
	hasStep bool
}

type scenario struct {
	key, title string
	samples    []sample
}

type bench struct {
	bed     *buildkit.Bed
	work    string // workspace owned by the daemon user
	ctxDir  string
	user    string
	uid     int
	gid     int
	rows    map[string]*scenario
	order   []string
	starts  []time.Duration
	seq     int
	verbose io.Writer
}

func (b *bench) add(key, title string, s sample) {
	sc, ok := b.rows[key]
	if !ok {
		sc = &scenario{key: key, title: title}
		b.rows[key] = sc
		b.order = append(b.order, key)
	}
	sc.samples = append(sc.samples, s)
}

func run(ctx context.Context, runs, spin int, out string) error {
	bed, err := buildkit.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = bed.Stop(context.Background()) }()

	name := os.Getenv("SLIPWAY_BUILDKIT_USER")
	if name == "" {
		name = "slipway-bk"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	work := filepath.Join(bed.Instance, "bench")
	b := &bench{bed: bed, user: name, work: work, ctxDir: filepath.Join(work, "ctx"), uid: uid, gid: gid, rows: map[string]*scenario{}, verbose: os.Stderr}
	if err := b.prepare(spin); err != nil {
		return err
	}

	// Warm the long-lived daemon and buildah's long-lived storage once, outside the measurements.
	if _, err := b.buildkit(ctx, bed.Addr, "v1", nil, "main"); err != nil {
		return fmt.Errorf("warming the long-lived daemon: %w", err)
	}
	if _, err := b.buildah(ctx, "longlived", false, true); err != nil {
		return fmt.Errorf("warming buildah: %w", err)
	}

	for round := 1; round <= runs; round++ {
		fmt.Fprintf(os.Stderr, "round %d/%d\n", round, runs)
		steps := []func() error{
			func() error { // cold: new daemon, empty state, no import, export the default branch's cache
				return b.fresh(ctx, "bk-cold", "BuildKit, fresh daemon, cold (exports registry cache)", "v1", nil, "main")
			},
			func() error {
				return b.fresh(ctx, "bk-fresh-warm", "BuildKit, fresh daemon + registry cache, nothing changed", "v1",
					[]string{"feature", "main"}, "feature")
			},
			func() error {
				return b.fresh(ctx, "bk-fresh-final", "BuildKit, fresh daemon + registry cache, final stage changed",
					fmt.Sprintf("r%d-%d", round, time.Now().UnixNano()%1e6), []string{"feature", "main"}, "feature")
			},
			func() error {
				s, err := b.buildkit(ctx, bed.Addr, "v1", []string{"feature", "main"}, "feature")
				if err == nil {
					b.add("bk-long-warm", "BuildKit, long-lived daemon, warm rebuild", s)
				}
				return err
			},
			func() error {
				s, err := b.buildah(ctx, b.nextDir("buildah-cold"), false, true)
				if err == nil {
					b.add("buildah-cold", "buildah, fresh storage, cold (exports registry cache)", s)
				}
				return err
			},
			func() error {
				s, err := b.buildah(ctx, b.nextDir("buildah-fresh"), true, true)
				if err == nil {
					b.add("buildah-fresh-warm", "buildah, fresh storage + registry cache, nothing changed", s)
				}
				return err
			},
			func() error {
				s, err := b.buildah(ctx, "longlived", false, false)
				if err == nil {
					b.add("buildah-long-warm", "buildah, long-lived storage, warm rebuild", s)
				}
				return err
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	report := b.report(runs, spin)
	fmt.Print(report)
	if out != "" {
		return benchdoc.Write(out, report)
	}
	return nil
}

func (b *bench) prepare(spin int) error {
	if err := os.MkdirAll(filepath.Join(b.ctxDir, "src"), 0o755); err != nil {
		return err
	}
	df := strings.ReplaceAll(dockerfileTmpl, "{{BASE}}", b.bed.BaseImage)
	if err := os.WriteFile(filepath.Join(b.ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.ctxDir, "src", "build.sh"), fmt.Appendf(nil, buildScript, spin), 0o644); err != nil {
		return err
	}
	return filepath.Walk(b.work, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, b.uid, b.gid)
	})
}

func (b *bench) nextDir(prefix string) string {
	b.seq++
	return fmt.Sprintf("%s-%d", prefix, b.seq)
}

func (b *bench) cacheRef(tag string) string { return b.bed.Registry + "/cache/bench-bk:" + tag }

// buildkit runs one build with the builder against addr.
func (b *bench) buildkit(ctx context.Context, addr, final string, cacheFrom []string, cacheTo string) (sample, error) {
	cfg := builder.Config{
		Addr:               addr,
		DaemonTimeout:      time.Minute,
		SourceDir:          b.ctxDir,
		BuildArgs:          []string{"FINAL=" + final},
		Tags:               []string{b.bed.Registry + "/bench/bk:latest"},
		InsecureRegistries: []string{b.bed.Registry},
	}
	for _, c := range cacheFrom {
		cfg.CacheFrom = append(cfg.CacheFrom, b.cacheRef(c))
	}
	if cacheTo != "" {
		cfg.CacheTo = b.cacheRef(cacheTo)
	}
	var progress bytes.Buffer
	start := time.Now()
	rep := builder.Run(ctx, cfg, &progress, &progress)
	d := time.Since(start)
	if rep.Result.Outcome != buildresult.Succeeded {
		return sample{}, fmt.Errorf("BuildKit build failed: %s\n%s", rep.Result.Summary(), progress.String())
	}
	if len(rep.Result.Warnings) > 0 {
		return sample{}, fmt.Errorf("BuildKit build warned: %v", rep.Result.Warnings)
	}
	fmt.Fprintf(b.verbose, "  buildkit %-8s %6.2fs  %d/%d cached\n", final, d.Seconds(), rep.Result.Steps.Cached, rep.Result.Steps.Total)
	return sample{d: d, steps: rep.Result.Steps, hasStep: true}, nil
}

// fresh starts a new daemon on an empty state dir, builds once, and stops it.
func (b *bench) fresh(ctx context.Context, key, title, final string, cacheFrom []string, cacheTo string) error {
	start := time.Now()
	d, err := b.bed.StartDaemon(ctx, key)
	if err != nil {
		return err
	}
	b.starts = append(b.starts, time.Since(start))
	defer func() { _ = d.Stop(context.Background()) }()
	s, err := b.buildkit(ctx, d.Addr, final, cacheFrom, cacheTo)
	if err != nil {
		return err
	}
	b.add(key, title, s)
	return nil
}

// buildah builds with buildah as the daemon user in storage dir name (under the workspace),
// optionally importing the registry cache, and pushes. It times bud + push.
func (b *bench) buildah(ctx context.Context, name string, importCache, exportCache bool) (sample, error) {
	dir := filepath.Join(b.work, name)
	for _, d := range []string{dir, filepath.Join(dir, "xdg")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return sample{}, err
		}
		if err := os.Chown(d, b.uid, b.gid); err != nil {
			return sample{}, err
		}
	}
	storage := []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "overlay"}
	tag := b.bed.Registry + "/bench/buildah:latest"
	cache := b.bed.Registry + "/cache/bench-buildah"
	bud := append(slices.Clone(storage), "bud", "--layers", "--network", "host", "--tls-verify=false", "--build-arg", "FINAL=v1", "-t", tag)
	if importCache {
		bud = append(bud, "--cache-from", cache)
	}
	if exportCache {
		bud = append(bud, "--cache-to", cache)
	}
	bud = append(bud, b.ctxDir)
	push := append(slices.Clone(storage), "push", "--tls-verify=false", tag)
	start := time.Now()
	for _, args := range [][]string{bud, push} {
		if err := b.asUser(ctx, dir, "buildah", args...); err != nil {
			return sample{}, err
		}
	}
	d := time.Since(start)
	fmt.Fprintf(b.verbose, "  buildah  %-8s %6.2fs\n", name, d.Seconds())
	if strings.HasPrefix(name, "buildah-") { // one-shot storage: delete it (sub-uid-owned files need root)
		_ = os.RemoveAll(dir)
	}
	return sample{d: d}, nil
}

func (b *bench) asUser(ctx context.Context, home, cmdName string, args ...string) error {
	full := append([]string{
		fmt.Sprintf("--reuid=%d", b.uid), fmt.Sprintf("--regid=%d", b.gid), "--init-groups",
		"env", "-i", "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "xdg"),
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "USER=" + b.user,
		cmdName,
	}, args...)
	cmd := exec.CommandContext(ctx, "setpriv", full...)
	cmd.Dir = home
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", cmdName, strings.Join(args, " "), err, outb.String())
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (sc *scenario) durations() []time.Duration {
	var ds []time.Duration
	for _, s := range sc.samples {
		ds = append(ds, s.d)
	}
	return ds
}

func (b *bench) report(runs, spin int) string {
	var w strings.Builder
	cold := median(b.rows["bk-cold"].durations())
	fmt.Fprintf(&w, "| scenario | median | min-max | steps cached (median run) | vs BuildKit cold |\n|---|---|---|---|---|\n")
	for _, key := range b.order {
		sc := b.rows[key]
		ds := sc.durations()
		m := median(ds)
		lo, hi := slices.Min(ds), slices.Max(ds)
		steps := "-"
		if sc.samples[0].hasStep {
			// The steps of the sample closest to the median.
			best := sc.samples[0]
			for _, s := range sc.samples {
				if abs(s.d-m) < abs(best.d-m) {
					best = s
				}
			}
			steps = fmt.Sprintf("%d/%d", best.steps.Cached, best.steps.Total)
		}
		fmt.Fprintf(&w, "| %s | **%s** | %.2f-%.2f s | %s | %.2f |\n", sc.title, benchdoc.Seconds(m), lo.Seconds(), hi.Seconds(), steps, float64(m)/float64(cold))
	}
	freshWarm := median(b.rows["bk-fresh-warm"].durations())
	longWarm := median(b.rows["bk-long-warm"].durations())
	bahCold := median(b.rows["buildah-cold"].durations())
	bahFresh := median(b.rows["buildah-fresh-warm"].durations())
	bahLong := median(b.rows["buildah-long-warm"].durations())
	fmt.Fprintf(&w, "\nMedians of %d interleaved rounds; build stage: 16 MiB random artifact + %d-iteration shell loop. "+
		"Fresh rootless buildkitd start-up (not included above): median %s.\n\n", runs, spin, benchdoc.Seconds(median(b.starts)))
	fmt.Fprintf(&w, "Goals:\n")
	fmt.Fprintf(&w, "- fresh-daemon warm <= 1.5x long-lived warm: %s / %s = %.2fx (%s)\n", benchdoc.Seconds(freshWarm), benchdoc.Seconds(longWarm),
		float64(freshWarm)/float64(longWarm), verdict(float64(freshWarm) <= 1.5*float64(longWarm)))
	fmt.Fprintf(&w, "- faster than buildah, cold: %s vs %s (%s)\n", benchdoc.Seconds(cold), benchdoc.Seconds(bahCold), verdict(cold < bahCold))
	fmt.Fprintf(&w, "- faster than buildah, warm with a fresh instance: %s vs %s (%s)\n", benchdoc.Seconds(freshWarm), benchdoc.Seconds(bahFresh), verdict(freshWarm < bahFresh))
	fmt.Fprintf(&w, "- faster than buildah, warm long-lived: %s vs %s (%s)\n", benchdoc.Seconds(longWarm), benchdoc.Seconds(bahLong), verdict(longWarm < bahLong))
	return w.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
