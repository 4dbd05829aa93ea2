package builder

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"

	"github.com/slipway-dev/slipway/internal/buildresult"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func validConfig() Config {
	return Config{
		Addr:     DefaultAddr,
		CloneURL: "https://github.com/o/r.git",
		SHA:      sha,
		Tags:     []string{"reg.example.com/o/r:" + sha},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"source dir instead of clone", func(c *Config) { c.CloneURL, c.SHA, c.SourceDir = "", "", "/src" }, ""},
		{"no source", func(c *Config) { c.CloneURL = "" }, "neither a clone URL"},
		{"both sources", func(c *Config) { c.SourceDir = "/src" }, "not both"},
		{"short sha", func(c *Config) { c.SHA = "abc123" }, "not a full"},
		{"upper-case sha", func(c *Config) { c.SHA = strings.ToUpper(sha) }, "not a full"},
		{"sha256 repo", func(c *Config) { c.SHA = strings.Repeat("a", 64) }, ""},
		{"no tags", func(c *Config) { c.Tags = nil }, "no image tag"},
		{"no push, no tags", func(c *Config) { c.Tags, c.NoPush = nil, true }, ""},
		{"no push with tags", func(c *Config) { c.NoPush = true }, "no tags and no cache export"},
		{"no push with cache export", func(c *Config) { c.Tags, c.NoPush, c.CacheTo = nil, true, "reg.example.com/o/r:cache" }, "no tags and no cache export"},
		{"tag with scheme", func(c *Config) { c.Tags = []string{"https://reg/x:y"} }, "scheme"},
		{"tag with comma", func(c *Config) { c.Tags = []string{"reg/x:y,reg/z:w"} }, "commas"},
		{"context escapes", func(c *Config) { c.Context = "../other" }, "leaves the repository"},
		{"absolute dockerfile", func(c *Config) { c.Dockerfile = "/etc/passwd" }, "relative"},
		{"dockerfile escapes", func(c *Config) { c.Dockerfile = "a/../../Dockerfile" }, "leaves"},
		{"bad build arg", func(c *Config) { c.BuildArgs = []string{"NOVALUE"} }, "KEY=VALUE"},
		{"empty build arg value ok", func(c *Config) { c.BuildArgs = []string{"K="} }, ""},
		{"duplicate secret", func(c *Config) { c.Secrets = []Secret{{"a", "/x"}, {"a", "/y"}} }, "twice"},
		{"mixed insecure tags", func(c *Config) {
			c.Tags = []string{"127.0.0.1:5000/a:b", "reg.example.com/a:b"}
			c.InsecureRegistries = []string{"127.0.0.1:5000"}
		}, "mix insecure"},
		{"bad cache ref", func(c *Config) { c.CacheFrom = []string{"a b"} }, "cache ref"},
		{"no addr", func(c *Config) { c.Addr = "" }, "address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *ConfigError: %T", err)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		in      string
		want    Secret
		wantErr bool
	}{
		{"id=npm,src=/run/s/npm", Secret{"npm", "/run/s/npm"}, false},
		{"id=npm,source=/x,type=file", Secret{"npm", "/x"}, false},
		{"npm=/x", Secret{"npm", "/x"}, false},
		{"id=npm", Secret{}, true},
		{"id=npm,src=/x,type=env", Secret{}, true},
		{"id=npm,src=/x,bogus=1", Secret{}, true},
		{"npm", Secret{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSecret(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSecret(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestRefHost(t *testing.T) {
	for ref, want := range map[string]string{
		"127.0.0.1:5000/a/b:c":     "127.0.0.1:5000",
		"localhost/a":              "localhost",
		"reg.example.com/a@sha256": "reg.example.com",
		"library/alpine:3":         "docker.io",
		"alpine":                   "docker.io",
	} {
		if got := refHost(ref); got != want {
			t.Errorf("refHost(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestPublicURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://x-access-token:ghs_SECRET@github.com/o/r.git?token=ghs_SECRET#frag": "https://github.com/o/r.git",
		"http://127.0.0.1:8080/r.git": "http://127.0.0.1:8080/r.git",
		"::not a url":                 "",
	} {
		if got := publicURL(in); got != want {
			t.Errorf("publicURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSolveOptionMapping(t *testing.T) {
	c := validConfig()
	c.Context = "svc"
	c.Dockerfile = "build/Dockerfile.prod"
	c.Target = "runtime"
	c.BuildArgs = []string{"VERSION=1.2", "EMPTY=", "WITH_EQ=a=b"}
	c.Platforms = []string{"linux/amd64", "linux/arm64"}
	c.Tags = []string{"127.0.0.1:5000/o/r:sha", "127.0.0.1:5000/o/r:main"}
	c.InsecureRegistries = []string{"127.0.0.1:5000"}
	c.CacheFrom = []string{"127.0.0.1:5000/cache/r:feature", "reg.example.com/cache/r:main", "127.0.0.1:5000/cache/r:feature", ""}
	c.CacheTo = "127.0.0.1:5000/cache/r:feature"
	m := sourceMeta{URL: "https://github.com/o/r.git", Revision: sha, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}

	dir, name := c.dockerfileDirAndName()
	if dir != "build" || name != "Dockerfile.prod" {
		t.Errorf("dockerfile dir/name = %q, %q", dir, name)
	}
	wantAttrs := map[string]string{
		"filename":                    "Dockerfile.prod",
		"target":                      "runtime",
		"build-arg:VERSION":           "1.2",
		"build-arg:EMPTY":             "",
		"build-arg:WITH_EQ":           "a=b",
		"platform":                    "linux/amd64,linux/arm64",
		"label:" + annotationSource:   "https://github.com/o/r.git",
		"label:" + annotationRevision: sha,
		"label:" + annotationCreated:  "2026-01-02T02:04:05Z",
	}
	if got := frontendAttrs(c, m); !maps.Equal(got, wantAttrs) {
		t.Errorf("frontendAttrs:\n got %v\nwant %v", got, wantAttrs)
	}
	exp := imageExport(c, m)
	wantExp := map[string]string{
		"name":                             "127.0.0.1:5000/o/r:sha,127.0.0.1:5000/o/r:main",
		"push":                             "true",
		"oci-mediatypes":                   "true",
		"registry.insecure":                "true",
		"annotation." + annotationSource:   "https://github.com/o/r.git",
		"annotation." + annotationRevision: sha,
		"annotation." + annotationCreated:  "2026-01-02T02:04:05Z",
	}
	if exp.Type != client.ExporterImage || !maps.Equal(exp.Attrs, wantExp) {
		t.Errorf("imageExport:\n got %v\nwant %v", exp.Attrs, wantExp)
	}
	imports := cacheImports(c)
	wantImports := []client.CacheOptionsEntry{
		{Type: "registry", Attrs: map[string]string{"ref": "127.0.0.1:5000/cache/r:feature", "registry.insecure": "true"}},
		{Type: "registry", Attrs: map[string]string{"ref": "reg.example.com/cache/r:main"}},
	}
	if !reflect.DeepEqual(imports, wantImports) {
		t.Errorf("cacheImports = %v", imports)
	}
	exports := cacheExports(c)
	if len(exports) != 1 || exports[0].Attrs["mode"] != "max" || exports[0].Attrs["ignore-error"] != "true" ||
		exports[0].Attrs["ref"] != c.CacheTo || exports[0].Attrs["registry.insecure"] != "true" {
		t.Errorf("cacheExports = %v", exports)
	}
	c.CacheTo = ""
	if cacheExports(c) != nil {
		t.Error("cache export without a ref")
	}
	// Secure registries get no insecure flag.
	c = validConfig()
	if _, ok := imageExport(c, sourceMeta{}).Attrs["registry.insecure"]; ok {
		t.Error("secure tag marked insecure")
	}
	// No metadata, no labels.
	for k := range frontendAttrs(c, sourceMeta{}) {
		if strings.HasPrefix(k, "label:") {
			t.Errorf("unexpected %s", k)
		}
	}
}

func TestIsStepAndStepCached(t *testing.T) {
	tests := []struct {
		name                 string
		step                 bool
		cached, pulled, done bool
		wantCached           bool
	}{
		{"[1/3] FROM docker.io/library/busybox", true, false, false, true, true},
		{"[build 1/5] FROM 127.0.0.1:5000/base@sha256:abc", true, false, true, true, false},
		{"[build 1/5] FROM 127.0.0.1:5000/base@sha256:abc", true, false, false, false, false},
		{"[stage-1 3/4] COPY --from=build /out/ /app/", true, true, false, true, true},
		{"[stage-1 3/4] COPY --from=build /out/ /app/", true, false, false, true, false},
		{"[2/2] RUN make", true, false, false, true, false},
		{"[internal] load build definition from Dockerfile", false, false, false, true, false},
		{"[internal] load metadata for 127.0.0.1:5000/base:latest", false, false, false, true, false},
		{"[auth] sharing credentials for 127.0.0.1:5000", false, false, false, true, false},
		{"exporting to image", false, false, false, true, false},
		{"importing cache manifest from x", false, false, false, true, false},
	}
	for _, tt := range tests {
		if got := isStep(tt.name); got != tt.step {
			t.Errorf("isStep(%q) = %v", tt.name, got)
		}
		if tt.step {
			if got := stepCached(tt.name, tt.cached, tt.pulled, tt.done); got != tt.wantCached {
				t.Errorf("stepCached(%q, cached=%v, pulled=%v, done=%v) = %v", tt.name, tt.cached, tt.pulled, tt.done, got)
			}
		}
	}
}

func ts(sec float64) *time.Time {
	t := time.Unix(1_700_000_000, 0).Add(time.Duration(sec * float64(time.Second)))
	return &t
}

func TestTracker(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	tr := newTracker()
	tr.update(&client.SolveStatus{Vertexes: []*client.Vertex{
		{Digest: d("def"), Name: "[internal] load build definition from Dockerfile", Started: ts(0), Completed: ts(0.1)},
		// A branch's first build: its cache ref does not exist yet. The error comes first, but
		// it is not the build's failure.
		{Digest: d("imp"), Name: "importing cache manifest from reg/app:cache-main", Started: ts(0), Completed: ts(0.05), Error: "not found"},
		{Digest: d("from"), Name: "[1/3] FROM base"},
		{Digest: d("run1"), Name: "[2/3] RUN make"},
		{Digest: d("run2"), Name: "[3/3] RUN make test"},
	}})
	tr.update(&client.SolveStatus{
		Vertexes: []*client.Vertex{
			{Digest: d("from"), Name: "[1/3] FROM base", Started: ts(0.1), Completed: ts(0.2)},
			{Digest: d("run1"), Name: "[2/3] RUN make", Started: ts(0.2), Completed: ts(0.3), Cached: true},
			{Digest: d("run2"), Name: "[3/3] RUN make test", Started: ts(0.3)},
		},
		Statuses: []*client.VertexStatus{{ID: "resolve base", Vertex: d("from")}},
		Logs: []*client.VertexLog{
			{Vertex: d("run2"), Data: []byte("line 1\nline")},
			{Vertex: d("run2"), Data: []byte(" 2\r\n")},
		},
	})
	for i := 3; i <= 12; i++ {
		tr.update(&client.SolveStatus{Logs: []*client.VertexLog{{Vertex: d("run2"), Data: fmt.Appendf(nil, "line %d\n", i)}}})
	}
	tr.update(&client.SolveStatus{Logs: []*client.VertexLog{{Vertex: d("run2"), Data: []byte("partial")}}})
	tr.update(&client.SolveStatus{Vertexes: []*client.Vertex{
		{Digest: d("run2"), Name: "[3/3] RUN make test", Started: ts(0.3), Completed: ts(1.3), Error: "process did not complete successfully: exit code: 2"},
		{Digest: d("sib"), Name: "[internal] load build context", Started: ts(0.1), Completed: ts(1.2), Error: "context canceled"},
		{Digest: d("exp"), Name: vertexImageExport, Started: ts(2), Completed: ts(2.5)},
		{Digest: d("exp"), Name: vertexImageExport, Started: ts(2.6), Completed: ts(3)},
		{Digest: d("cache"), Name: vertexCacheExport, Started: ts(2.2), Completed: ts(2.4), Error: "401 Unauthorized"},
	}})

	steps := tr.steps()
	wantNames := []string{"[1/3] FROM base", "[2/3] RUN make", "[3/3] RUN make test"}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("steps = %v", names)
	}
	if got := countSteps(steps); got != (buildresult.Steps{Total: 3, Cached: 2}) {
		t.Errorf("counts = %+v (FROM without a pull counts as cached)", got)
	}
	if steps[2].Done || steps[2].Error == "" {
		t.Errorf("failed step = %+v", steps[2])
	}
	name, tail := tr.failed()
	if name != "[3/3] RUN make test" {
		t.Errorf("failed vertex = %q (a canceled sibling must not win)", name)
	}
	if len(tail) != logTailLines+1 || tail[len(tail)-1] != "partial" || tail[len(tail)-2] != "line 12" {
		t.Errorf("log tail = %q", tail)
	}
	if got := tr.span(vertexImageExport); got != time.Second {
		t.Errorf("push span = %s, want 1s across both reports", got)
	}
	if got := tr.span(vertexCacheExport); got != 200*time.Millisecond {
		t.Errorf("cache export span = %s", got)
	}
	if tr.vertexError(vertexCacheExport) != "401 Unauthorized" || tr.vertexError("nothing") != "" {
		t.Error("vertexError")
	}
	if newTracker().span("x") != 0 {
		t.Error("span of nothing")
	}
	if n, _ := newTracker().failed(); n != "" {
		t.Error("failed of nothing")
	}
}

func TestClassify(t *testing.T) {
	// Messages are the ones BuildKit v0.33.1 produced on the test bed.
	tests := []struct {
		name  string
		facts solveFacts
		want  buildresult.Outcome
	}{
		{"failing RUN", solveFacts{HasExitCode: true, ExitCode: 3, FailedVertex: "[3/4] RUN exit 3",
			Message: `process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`}, buildresult.BuildFailed},
		{"cancel wins", solveFacts{Canceled: true, HasExitCode: true, FailedVertex: "[2/2] RUN sleep 100"}, buildresult.Canceled},
		{"push 401", solveFacts{FailedVertex: vertexImageExport,
			Message: "failed to push 127.0.0.1:1/x:y: unexpected status from HEAD request to https://127.0.0.1:1/v2/x/blobs/sha256:b7: 401 Unauthorized"}, buildresult.PushFailed},
		{"push error without vertex", solveFacts{Message: "failed to solve: failed to push r/x:y: connection refused"}, buildresult.PushFailed},
		{"missing Dockerfile", solveFacts{FailedVertex: "[internal] load build definition from Dockerfile",
			Message: "failed to read dockerfile: open Dockerfile: no such file or directory"}, buildresult.ConfigInvalid},
		{"missing Dockerfile without vertex", solveFacts{Message: "failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory"}, buildresult.ConfigInvalid},
		{"parse error", solveFacts{Line: 3, Message: "dockerfile parse error on line 3: unknown instruction: RUNN"}, buildresult.ConfigInvalid},
		{"unknown target", solveFacts{Message: `failed to solve: target stage "nope" could not be found`}, buildresult.ConfigInvalid},
		{"base image missing", solveFacts{FailedVertex: "[internal] load metadata for 127.0.0.1:1/base:nope",
			Message: "127.0.0.1:1/base:nope: not found"}, buildresult.BuildFailed},
		{"COPY of missing file", solveFacts{FailedVertex: "[2/2] COPY nothere /x", Line: 2,
			Message: `failed to calculate checksum of ref: "/nothere": not found`}, buildresult.BuildFailed},
		{"daemon died", solveFacts{DaemonLost: true, Message: "rpc error: code = Unavailable desc = error reading from server: EOF"}, buildresult.DaemonUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.facts); got != tt.want {
				t.Errorf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestErrorFacts(t *testing.T) {
	base := &gatewaypb.ExitError{ExitCode: 7, Err: errors.New("process did not complete successfully: exit code: 7")}
	src := &errdefs.Source{Info: &pb.SourceInfo{Filename: "Dockerfile"}, Ranges: []*pb.Range{{Start: &pb.Position{Line: 12}, End: &pb.Position{Line: 12}}}}
	err := fmt.Errorf("failed to solve: %w", errdefs.WithSource(base, src))
	f := errorFacts(err)
	if !f.HasExitCode || f.ExitCode != 7 || f.Line != 12 || f.DaemonLost {
		t.Errorf("facts = %+v", f)
	}
	if f := errorFacts(errors.New("plain")); f.HasExitCode || f.Line != 0 || f.Message != "plain" {
		t.Errorf("facts = %+v", f)
	}
	if conciseMessage("failed to solve: x: y ") != "x: y" {
		t.Error("conciseMessage")
	}
}

func TestRedactor(t *testing.T) {
	r := newRedactor("tok3n-secret", "", "abc", "multi\nline-secret-two\n", "tok3n-secret-longer")
	in := "a tok3n-secret-longer and tok3n-secret, abc stays, line-secret-two"
	want := "a *** and ***, abc stays, ***"
	if got := r.String(in); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	// A secret split across writes is still masked, because lines are masked whole.
	var buf bytes.Buffer
	w := r.Writer(&buf)
	for _, part := range []string{"#5 0.1 tok3", "n-sec", "ret\n#5 DONE\n", "tail tok3n-secret"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(buf.String(), "tail") {
		t.Error("partial line written before Flush")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "#5 0.1 ***\n#5 DONE\ntail ***" {
		t.Errorf("writer output = %q", got)
	}
	// Very long lines without a newline are flushed in bounded chunks.
	buf.Reset()
	w.Write(bytes.Repeat([]byte("x"), maxPending+10))
	if buf.Len() == 0 {
		t.Error("a huge partial line was never written")
	}
}

func TestGitEnvKeepsTokenOutOfArgv(t *testing.T) {
	env := gitEnv(nil, "", "ghs_abc")
	want := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:ghs_abc"))
	var keyIdx string
	for _, e := range env {
		if e == "GIT_CONFIG_KEY_3=http.extraHeader" {
			keyIdx = "3"
		}
	}
	if keyIdx == "" || !slices.Contains(env, "GIT_CONFIG_VALUE_3="+want) || !slices.Contains(env, "GIT_CONFIG_COUNT=4") {
		t.Errorf("env = %v", env)
	}
	if !slices.Contains(env, "GIT_TERMINAL_PROMPT=0") || !slices.Contains(env, "GIT_CONFIG_NOSYSTEM=1") {
		t.Error("git may prompt or read system config")
	}
	if slices.ContainsFunc(gitEnv(nil, "u", ""), func(s string) bool { return strings.Contains(s, "extraHeader") }) {
		t.Error("header without a token")
	}
}

func TestExplainFetchError(t *testing.T) {
	auth := errors.New("git fetch: exit status 128: fatal: could not read Username for 'http://h': terminal prompts disabled")
	if got := explainFetchError(auth, true).Error(); !strings.HasPrefix(got, "the git host rejected the clone token") {
		t.Errorf("got %q", got)
	}
	if got := explainFetchError(auth, false).Error(); !strings.Contains(got, "no token was given") {
		t.Errorf("got %q", got)
	}
	gone := errors.New("git fetch: exit status 128: fatal: remote error: upload-pack: not our ref 0123")
	if got := explainFetchError(gone, true).Error(); !strings.Contains(got, "not on the git host") {
		t.Errorf("got %q", got)
	}
	other := errors.New("git fetch: timeout")
	if explainFetchError(other, true) != other {
		t.Error("unrelated errors must pass through")
	}
}
