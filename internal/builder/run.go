package builder

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"

	"github.com/slipway-dev/slipway/internal/buildresult"
)

// Report is a finished build: the contract result plus the per-step detail that tests and local
// users want but the 4 KiB termination message has no room for.
type Report struct {
	Result buildresult.Result
	Steps  []Step
}

// Timing knobs that are not part of the build's inputs.
const (
	// daemonPollInterval spaces ListWorkers attempts while the sidecar starts.
	daemonPollInterval = 200 * time.Millisecond
	// cancelGrace is how long a canceled solve may take to unwind before the builder stops
	// waiting for it: SIGTERM must end the build within a few seconds.
	cancelGrace = 4 * time.Second
	// fetchTimeout bounds one source fetch.
	fetchTimeout = 10 * time.Minute
)

// Run performs one build. It never returns an error: every failure becomes the Result's outcome,
// with secrets masked. Progress goes to stdout, the builder's own log lines (slog, text) to
// stderr. Canceling ctx (SIGTERM) cancels the solve and yields the Canceled outcome.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) Report {
	if cfg.DaemonTimeout <= 0 {
		cfg.DaemonTimeout = time.Minute
	}
	var rep Report
	in, err := readInputs(cfg)
	red := newRedactor(in.secretValues()...)
	out := red.Writer(stdout)
	errw := red.Writer(stderr)
	defer out.Flush()
	defer errw.Flush()
	log := slog.New(slog.NewTextHandler(errw, nil))

	fail := func(o buildresult.Outcome, msg string) Report {
		rep.Result.Outcome = o
		if rep.Result.Failure == nil {
			rep.Result.Failure = &buildresult.Failure{}
		}
		rep.Result.Failure.Message = red.String(msg)
		log.Error("build failed", "outcome", o, "reason", rep.Result.Failure.Message)
		return rep
	}
	rep.Result.Tags = cfg.Tags
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fail(buildresult.ConfigInvalid, err.Error())
	}

	// Wait for the daemon and fetch the source at the same time: in a pod the sidecar is often
	// still starting while the builder could already be fetching.
	type daemonResult struct {
		c   *client.Client
		err error
		d   time.Duration
	}
	dch := make(chan daemonResult, 1)
	go func() {
		start := time.Now()
		c, err := waitDaemon(ctx, cfg.Addr, cfg.DaemonTimeout, log)
		dch <- daemonResult{c, err, time.Since(start)}
	}()

	srcDir, meta, fetchDur, fetchErr := prepareSource(ctx, cfg, in.token, log)
	if srcDir != "" && cfg.SourceDir == "" {
		defer os.RemoveAll(filepath.Dir(srcDir))
	}
	rep.Result.Timings.Fetch = fetchDur.Milliseconds()
	dr := <-dch
	rep.Result.Timings.Daemon = dr.d.Milliseconds()
	if dr.c != nil {
		defer dr.c.Close()
	}
	switch {
	case ctx.Err() != nil:
		return fail(buildresult.Canceled, "canceled before the build started")
	case dr.err != nil:
		return fail(buildresult.DaemonUnavailable, dr.err.Error())
	case fetchErr != nil:
		return fail(buildresult.SourceFailed, fetchErr.Error())
	}

	opt, err := solveOpt(cfg, in, srcDir, meta)
	if err != nil {
		return fail(buildresult.ConfigInvalid, err.Error())
	}
	log.Info("solving", "tags", strings.Join(cfg.Tags, ","), "cacheFrom", strings.Join(cfg.CacheFrom, ","), "cacheTo", cfg.CacheTo)
	s := solve(ctx, dr.c, opt, out)
	rep.Steps = s.steps
	rep.Result.Steps = countSteps(s.steps)
	rep.Result.Timings.Solve = s.dur.Milliseconds()
	rep.Result.Timings.Push = s.push.Milliseconds()
	rep.Result.Timings.CacheExport = s.cacheExport.Milliseconds()
	if s.cacheExportErr != "" {
		w := "cache export failed: " + red.String(s.cacheExportErr)
		rep.Result.Warnings = append(rep.Result.Warnings, w)
		log.Warn("cache export failed; the image was pushed anyway", "error", red.String(s.cacheExportErr))
	}
	if s.err != nil {
		facts := errorFacts(s.err)
		facts.Canceled = ctx.Err() != nil
		facts.FailedVertex = s.failedVertex
		rep.Result.Failure = &buildresult.Failure{
			Step:     red.String(s.failedVertex),
			Line:     facts.Line,
			ExitCode: facts.ExitCode,
		}
		msg := conciseMessage(s.err.Error())
		if len(s.logTail) > 0 && !facts.Canceled {
			msg += "\nlast output:\n" + strings.Join(s.logTail, "\n")
		}
		return fail(classify(facts), msg)
	}
	rep.Result.Outcome = buildresult.Succeeded
	rep.Result.Digest = s.resp.ExporterResponse["containerimage.digest"]
	log.Info("build succeeded", "digest", rep.Result.Digest,
		"steps", rep.Result.Steps.Total, "cached", rep.Result.Steps.Cached)
	return rep
}

// inputs are the secret-bearing inputs, read once at the start.
type inputs struct {
	token   string
	docker  *configfile.ConfigFile
	secrets []secretsprovider.Source
	values  []string // build secret contents and URL passwords, for redaction only
}

func (in inputs) secretValues() []string {
	vals := append([]string{in.token}, in.values...)
	if in.token != "" {
		vals = append(vals, base64.StdEncoding.EncodeToString([]byte(in.token)))
	}
	if in.docker != nil {
		for _, ac := range in.docker.GetAuthConfigs() {
			vals = append(vals, ac.Password, ac.IdentityToken, ac.RegistryToken)
			if ac.Password != "" {
				vals = append(vals, base64.StdEncoding.EncodeToString([]byte(ac.Username+":"+ac.Password)))
			}
		}
	}
	return vals
}

// readInputs reads the token, the docker config and the build secrets. Unreadable inputs are a
// configuration problem, not a build failure.
func readInputs(cfg Config) (inputs, error) {
	var in inputs
	// Credentials someone put into the clone URL are masked like the token.
	if u, err := url.Parse(cfg.CloneURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			in.values = append(in.values, pw)
		}
	}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return in, configErrorf("reading the clone token: %v", err)
		}
		in.token = strings.TrimSpace(string(b))
	}
	dc, err := loadDockerConfig(cfg.DockerConfigDir)
	if err != nil {
		return in, configErrorf("reading the docker config: %v", err)
	}
	in.docker = dc
	for _, s := range cfg.Secrets {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			return in, configErrorf("reading build secret %q: %v", s.ID, err)
		}
		in.values = append(in.values, string(b))
		in.secrets = append(in.secrets, secretsprovider.Source{ID: s.ID, FilePath: s.Path})
	}
	return in, nil
}

// loadDockerConfig reads DIR/config.json, or DIR/.dockerconfigjson when a Kubernetes
// kubernetes.io/dockerconfigjson Secret is mounted as a whole. An empty dir means anonymous access,
// never the builder user's ~/.docker.
func loadDockerConfig(dir string) (*configfile.ConfigFile, error) {
	if dir == "" {
		return configfile.New(""), nil
	}
	if _, err := os.Stat(filepath.Join(dir, config.ConfigFileName)); errors.Is(err, os.ErrNotExist) {
		alt := filepath.Join(dir, ".dockerconfigjson")
		if f, err := os.Open(alt); err == nil {
			defer f.Close()
			cf := configfile.New(alt)
			if err := cf.LoadFromReader(f); err != nil {
				return nil, fmt.Errorf("parsing %s: %w", alt, err)
			}
			return cf, nil
		}
	}
	return config.Load(dir)
}

// waitDaemon connects and polls ListWorkers until the daemon answers with at least one worker or
// the timeout expires.
func waitDaemon(ctx context.Context, addr string, timeout time.Duration, log *slog.Logger) (*client.Client, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.New(wctx, addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to buildkitd at %s: %w", addr, err)
	}
	var last error
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(wctx, 2*time.Second)
		ws, err := c.ListWorkers(actx)
		acancel()
		if err == nil && len(ws) > 0 {
			log.Info("buildkitd ready", "addr", addr, "attempts", attempt,
				"snapshotter", ws[0].Labels["org.mobyproject.buildkit.worker.snapshotter"])
			return c, nil
		}
		if err == nil {
			err = errors.New("daemon has no workers")
		}
		last = err
		select {
		case <-wctx.Done():
			c.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("buildkitd at %s did not answer within %s: %w", addr, timeout, last)
		case <-time.After(daemonPollInterval):
		}
	}
}

// prepareSource fetches the commit (or takes the local source dir) and returns the repository
// root to build from.
func prepareSource(ctx context.Context, cfg Config, token string, log *slog.Logger) (string, sourceMeta, time.Duration, error) {
	start := time.Now()
	if cfg.SourceDir != "" {
		meta := sourceMeta{Revision: cfg.SHA, URL: publicURL(cfg.CloneURL), Created: sourceDateEpoch()}
		return cfg.SourceDir, meta, 0, nil
	}
	base, err := os.MkdirTemp(cfg.WorkDir, "slipway-src-")
	if err != nil {
		return "", sourceMeta{}, 0, fmt.Errorf("creating the checkout dir: %w", err)
	}
	dir := filepath.Join(base, "src")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", sourceMeta{}, 0, fmt.Errorf("creating the checkout dir: %w", err)
	}
	pub := publicURL(cfg.CloneURL)
	log.Info("fetching", "url", pub, "sha", cfg.SHA)
	created, err := fetch(ctx, fetchSpec{URL: cfg.CloneURL, SHA: cfg.SHA, User: cfg.GitUser, Token: token, Dir: dir, Timeout: fetchTimeout})
	d := time.Since(start)
	if err != nil {
		return dir, sourceMeta{}, d, fmt.Errorf("fetching %s at %s: %w", pub, cfg.SHA, err)
	}
	log.Info("fetched", "sha", cfg.SHA, "duration", d.Round(time.Millisecond))
	return dir, sourceMeta{URL: pub, Revision: cfg.SHA, Created: created}, d, nil
}

// sourceDateEpoch honours SOURCE_DATE_EPOCH for local builds, else uses the current time.
func sourceDateEpoch() time.Time {
	var sec int64
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if _, err := fmt.Sscan(v, &sec); err == nil && sec > 0 {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

func solveOpt(cfg Config, in inputs, root string, meta sourceMeta) (client.SolveOpt, error) {
	ctxRel, _ := cleanRel("context", cfg.contextPath())
	dfDir, _ := cfg.dockerfileDirAndName()
	for what, rel := range map[string]string{"build context": ctxRel, "Dockerfile directory": dfDir} {
		if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil || !fi.IsDir() {
			return client.SolveOpt{}, fmt.Errorf("%s %q is not a directory in the repository", what, rel)
		}
	}
	ctxFS, err := fsutil.NewFS(filepath.Join(root, filepath.FromSlash(ctxRel)))
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("build context %q: %w", ctxRel, err)
	}
	dfFS, err := fsutil.NewFS(filepath.Join(root, filepath.FromSlash(dfDir)))
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("dockerfile dir %q: %w", dfDir, err)
	}
	store, err := secretsprovider.NewStore(in.secrets)
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("build secrets: %w", err)
	}
	var exports []client.ExportEntry
	if !cfg.NoPush {
		exports = []client.ExportEntry{imageExport(cfg, meta)}
	}
	return client.SolveOpt{
		Frontend:      "dockerfile.v0", // built in: no frontend image is pulled
		FrontendAttrs: frontendAttrs(cfg, meta),
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports:       exports,
		CacheImports:  cacheImports(cfg),
		CacheExports:  cacheExports(cfg),
		Session: []session.Attachable{
			// Registry credentials go from the builder through the session, per request; the
			// daemon never stores them.
			authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
				AuthConfigProvider: authprovider.LoadAuthConfig(in.docker),
			}),
			secretsprovider.NewSecretProvider(store),
		},
	}, nil
}

type solveOutcome struct {
	resp           *client.SolveResponse
	err            error
	dur            time.Duration
	steps          []Step
	push           time.Duration
	cacheExport    time.Duration
	cacheExportErr string
	failedVertex   string
	logTail        []string
}

// solve runs the solve, streams plain progress to out and folds the status stream into a tracker.
func solve(ctx context.Context, c *client.Client, opt client.SolveOpt, out io.Writer) solveOutcome {
	start := time.Now()
	ch := make(chan *client.SolveStatus)
	disp := make(chan *client.SolveStatus)
	tr := newTracker()
	var mu sync.Mutex // guards tr: an abandoned solve may still deliver statuses
	teeDone := make(chan struct{})
	go func() {
		defer close(teeDone)
		defer close(disp)
		for s := range ch {
			mu.Lock()
			tr.update(s)
			mu.Unlock()
			disp <- s
		}
	}()
	dispDone := make(chan struct{})
	go func() {
		defer close(dispDone)
		d, err := progressui.NewDisplay(out, progressui.PlainMode)
		if err != nil {
			for range disp { // keep the tee unblocked
			}
			return
		}
		_, _ = d.UpdateFrom(context.Background(), disp)
	}()

	type res struct {
		resp *client.SolveResponse
		err  error
	}
	rch := make(chan res, 1)
	go func() {
		resp, err := c.Solve(ctx, nil, opt, ch) // closes ch
		rch <- res{resp, err}
	}()

	var r res
	select {
	case r = <-rch:
		<-teeDone
		<-dispDone
	case <-ctx.Done():
		select {
		case r = <-rch:
			waitBriefly(teeDone, cancelGrace)
			waitBriefly(dispDone, time.Second)
		case <-time.After(cancelGrace):
			r.err = fmt.Errorf("solve did not stop within %s of cancellation: %w", cancelGrace, ctx.Err())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	so := solveOutcome{
		resp:           r.resp,
		err:            r.err,
		dur:            time.Since(start),
		steps:          tr.steps(),
		push:           tr.span(vertexImageExport),
		cacheExport:    tr.span(vertexCacheExport),
		cacheExportErr: tr.vertexError(vertexCacheExport),
	}
	if r.err != nil {
		so.failedVertex, so.logTail = tr.failed()
	}
	return so
}

func waitBriefly(ch <-chan struct{}, d time.Duration) {
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// WriteResult writes the encoded result to path (if set) and prints it as the last line of
// stdout, where the controller and `kubectl logs` find it.
func WriteResult(r buildresult.Result, path string, stdout io.Writer) error {
	b, err := buildresult.Encode(r)
	if err != nil {
		return err
	}
	var errs []error
	if path != "" {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing the result file: %w", err))
		}
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
		errs = append(errs, fmt.Errorf("printing the result: %w", err))
	}
	return errors.Join(errs...)
}
