package repoconfig

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"main", "main", true},
		{"main", "mainline", false},
		{"release/*", "release/1.0", true},
		{"release/*", "release/1.0/hotfix", false},
		{"release/**", "release/1.0/hotfix", true},
		{"**", "a/b/c", true},
		{"**/*.go", "main.go", true},
		{"**/*.go", "cmd/slipway/main.go", true},
		{"docs/**", "docs/a.md", true},
		{"docs/**", "docs", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"v?.*", "v1.2", true},
		{"v?.*", "v10.2", false},
		{"*.md", "docs/a.md", false},
		{"go.mod", "go.mod", true},
		{"go.mod", "goxmod", false}, // dots are literal
		{"a+b", "a+b", true},
	} {
		re, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := re.MatchString(tc.s); got != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestMatchList(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		s        string
		want     bool
	}{
		{[]string{"**", "!**/*.md"}, "README.md", false},
		{[]string{"**", "!**/*.md"}, "main.go", true},
		{[]string{"!docs/**"}, "main.go", true}, // only exclusions: the rest is included
		{[]string{"!docs/**"}, "docs/x", false},
		{[]string{"!**/*.md", "docs/**"}, "docs/a.md", true}, // the last match decides
		{[]string{"main", "release/*"}, "feature/x", false},
	} {
		if got := matchList(tc.patterns, tc.s); got != tc.want {
			t.Errorf("%v ~ %q = %v, want %v", tc.patterns, tc.s, got, tc.want)
		}
	}
}

func TestMatches(t *testing.T) {
	branchesOnly := &When{Branches: []string{"main"}}
	tagsOnly := &When{Tags: []string{"v*"}}
	both := &When{Branches: []string{"main"}, Tags: []string{"v*"}}
	paths := &When{Paths: []string{"api/**"}}
	for _, tc := range []struct {
		name string
		when *When
		ev   Event
		want bool
	}{
		{"no filter, branch", nil, Event{Kind: RefBranch, Branch: "x"}, true},
		{"no filter, tag", nil, Event{Kind: RefTag, Tag: "v1"}, true},
		{"branches: matching push", branchesOnly, Event{Kind: RefBranch, Branch: "main"}, true},
		{"branches: other push", branchesOnly, Event{Kind: RefBranch, Branch: "dev"}, false},
		{"branches: a tag does not build", branchesOnly, Event{Kind: RefTag, Tag: "v1"}, false},
		{"branches: change into main", branchesOnly, Event{Kind: RefChange, Branch: "main"}, true},
		{"branches: change into dev", branchesOnly, Event{Kind: RefChange, Branch: "dev"}, false},
		{"tags: matching tag", tagsOnly, Event{Kind: RefTag, Tag: "v1.0"}, true},
		{"tags: other tag", tagsOnly, Event{Kind: RefTag, Tag: "nightly"}, false},
		{"tags: a branch does not build", tagsOnly, Event{Kind: RefBranch, Branch: "main"}, false},
		{"both: branch", both, Event{Kind: RefBranch, Branch: "main"}, true},
		{"both: tag", both, Event{Kind: RefTag, Tag: "v2"}, true},
		{"paths: touched", paths, Event{Kind: RefBranch, Branch: "x", Changed: []string{"README.md", "api/main.go"}}, true},
		{"paths: not touched", paths, Event{Kind: RefBranch, Branch: "x", Changed: []string{"web/x"}}, false},
		{"paths: nothing changed", paths, Event{Kind: RefBranch, Branch: "x", Changed: []string{}}, false},
		{"paths: unknown changes build", paths, Event{Kind: RefBranch, Branch: "x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Target{When: tc.when}).Matches(tc.ev); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEventOf(t *testing.T) {
	for _, tc := range []struct {
		src  v1alpha1.Source
		want Event
	}{
		{v1alpha1.Source{Event: v1alpha1.EventPush, Ref: "refs/heads/feature/x"}, Event{Kind: RefBranch, Branch: "feature/x"}},
		{v1alpha1.Source{Event: v1alpha1.EventTag, Ref: "refs/tags/v1"}, Event{Kind: RefTag, Tag: "v1"}},
		{v1alpha1.Source{Event: v1alpha1.EventPullRequest, Ref: "refs/pull/3/head", BaseRef: "main"}, Event{Kind: RefChange, Branch: "main"}},
		{v1alpha1.Source{Event: v1alpha1.EventRerun, Ref: "refs/pull/3/head", BaseRef: "dev"}, Event{Kind: RefChange, Branch: "dev"}},
		{v1alpha1.Source{Event: v1alpha1.EventRerun, Ref: "refs/tags/v2"}, Event{Kind: RefTag, Tag: "v2"}},
	} {
		if got := EventOf(&tc.src); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("EventOf(%s %s) = %+v, want %+v", tc.src.Event, tc.src.Ref, got, tc.want)
		}
	}
}

// files is a ConfigSource and ChangeSource from maps, recording what was asked.
type files struct {
	content map[string]string // "ref:path"
	changed []string
	err     error
	reads   []string
	compare []string
}

func (f *files) ReadFile(_ context.Context, _ *v1alpha1.Source, ref, path string) ([]byte, error) {
	f.reads = append(f.reads, ref+":"+path)
	if f.err != nil {
		return nil, f.err
	}
	c, ok := f.content[ref+":"+path]
	if !ok {
		return nil, ErrNotFound
	}
	return []byte(c), nil
}

func (f *files) ChangedFiles(_ context.Context, _ *v1alpha1.Source, base, head string) ([]string, error) {
	f.compare = append(f.compare, base+"..."+head)
	return f.changed, nil
}

const sha = "0123456789abcdef0123456789abcdef01234567"

func build(mutate func(*v1alpha1.Build)) *v1alpha1.Build {
	b := &v1alpha1.Build{Spec: v1alpha1.BuildSpec{Source: v1alpha1.Source{
		Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: "acme/app", Commit: sha,
		Ref: "refs/heads/main", Event: v1alpha1.EventPush, DefaultBranch: "main",
	}}}
	if mutate != nil {
		mutate(b)
	}
	return b
}

func TestResolve(t *testing.T) {
	opts := Options{RegistryPrefix: "registry.test/builds", AllowedRegistries: []string{"ghcr.io/acme"}}
	monorepo := `
forkPolicy: build-no-push
targets:
  - name: api
    context: api
    image: acme/api
    tags: ["{sha}"]
    buildArgs: {B: "2", A: "1"}
    timeout: 10m
    when: {paths: ["api/**"]}
  - name: web
    context: web
    image: ghcr.io/acme/web
`
	pr := func(fork bool) func(*v1alpha1.Build) {
		return func(b *v1alpha1.Build) {
			s := &b.Spec.Source
			s.Event, s.Ref, s.Number, s.BaseRef, s.Fork = v1alpha1.EventPullRequest, "refs/pull/4/head", 4, "main", fork
		}
	}
	t.Run("absent file: one default target", func(t *testing.T) {
		f := &files{}
		res, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		if err != nil {
			t.Fatal(err)
		}
		want := []v1alpha1.Target{{Name: "default", Context: ".", Dockerfile: "Dockerfile"}}
		if !reflect.DeepEqual(res.Targets, want) || !res.Push || res.Found || res.Ref != sha {
			t.Errorf("got %+v", res)
		}
		if !reflect.DeepEqual(f.reads, []string{sha + ":.slipway.yaml"}) {
			t.Errorf("reads = %v", f.reads)
		}
	})
	t.Run("monorepo push touching api", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": monorepo}, changed: []string{"api/x.go"}}
		b := build(func(b *v1alpha1.Build) {
			b.Annotations = map[string]string{AnnotationBefore: strings.Repeat("a", 40)}
		})
		res, err := Resolver{Files: f, Changes: f, Options: opts}.Resolve(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Targets) != 2 || res.Targets[0].Image != "registry.test/builds/acme/api" || res.Targets[1].Image != "ghcr.io/acme/web" {
			t.Fatalf("targets = %+v", res.Targets)
		}
		api := res.Targets[0]
		if api.Dockerfile != "api/Dockerfile" || api.Timeout.Duration.String() != "10m0s" ||
			!reflect.DeepEqual(api.BuildArgs, []v1alpha1.BuildArg{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}) {
			t.Errorf("api = %+v", api)
		}
		if !reflect.DeepEqual(f.compare, []string{strings.Repeat("a", 40) + "..." + sha}) {
			t.Errorf("compare = %v", f.compare)
		}
	})
	t.Run("monorepo push not touching api", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": monorepo}, changed: []string{"web/x"}}
		b := build(func(b *v1alpha1.Build) {
			b.Annotations = map[string]string{AnnotationBefore: strings.Repeat("a", 40)}
		})
		res, err := Resolver{Files: f, Changes: f, Options: opts}.Resolve(context.Background(), b)
		if err != nil || len(res.Targets) != 1 || res.Targets[0].Name != "web" {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
	t.Run("no before: paths filters match, no compare call", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": monorepo}}
		res, err := Resolver{Files: f, Changes: f, Options: opts}.Resolve(context.Background(), build(nil))
		if err != nil || len(res.Targets) != 2 || len(f.compare) != 0 {
			t.Fatalf("got %+v, %v, compare %v", res, err, f.compare)
		}
	})
	t.Run("fork reads the base branch and does not push", func(t *testing.T) {
		f := &files{content: map[string]string{
			"main:.slipway.yaml":   monorepo,
			sha + ":.slipway.yaml": "forkPolicy: build\ntargets: [{name: evil, image: ghcr.io/acme/evil}]\n",
		}, changed: []string{"api/x"}}
		res, err := Resolver{Files: f, Changes: f, Options: opts}.Resolve(context.Background(), build(pr(true)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Push || res.Ref != "main" || len(res.Targets) != 2 || res.Targets[0].Name != "api" {
			t.Errorf("got %+v", res)
		}
		if !reflect.DeepEqual(f.reads, []string{"main:.slipway.yaml"}) || !reflect.DeepEqual(f.compare, []string{"main..." + sha}) {
			t.Errorf("reads %v compare %v", f.reads, f.compare)
		}
	})
	t.Run("fork skip", func(t *testing.T) {
		f := &files{content: map[string]string{"main:.slipway.yaml": "forkPolicy: skip\n"}}
		res, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(pr(true)))
		if err != nil || len(res.Targets) != 0 || !strings.Contains(res.Skipped, "forkPolicy: skip") {
			t.Errorf("got %+v, %v", res, err)
		}
	})
	t.Run("fork build pushes", func(t *testing.T) {
		f := &files{content: map[string]string{"main:.slipway.yaml": "forkPolicy: build\n"}}
		res, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(pr(true)))
		if err != nil || !res.Push || len(res.Targets) != 1 {
			t.Errorf("got %+v, %v", res, err)
		}
	})
	t.Run("same-repository change pushes and reads the commit", func(t *testing.T) {
		f := &files{}
		res, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(pr(false)))
		if err != nil || !res.Push || res.Ref != sha {
			t.Errorf("got %+v, %v", res, err)
		}
	})
	t.Run("invalid file names the line", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": "targets:\n  - name: a\n    dockerfile: ../x\n"}}
		_, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		var errs Errors
		if !errors.As(err, &errs) || errs[0].Line != 3 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("absolute image outside the allowed registries", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": "targets:\n  - name: a\n  - name: b\n    image: docker.io/evil/x\n"}}
		_, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		var errs Errors
		if !errors.As(err, &errs) || errs[0].Line != 4 || !strings.Contains(err.Error(), "targets[1].image") || !strings.Contains(err.Error(), "outside the allowed registries") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("image from defaults is located in defaults", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": "defaults:\n  image: quay.io/x/y\n"}}
		_, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		if err == nil || !strings.HasPrefix(err.Error(), ".slipway.yaml line 2: defaults.image") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("read failure is not a config error", func(t *testing.T) {
		f := &files{err: errors.New("503")}
		_, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		var errs Errors
		if err == nil || errors.As(err, &errs) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no target matches", func(t *testing.T) {
		f := &files{content: map[string]string{sha + ":.slipway.yaml": "defaults:\n  when: {branches: [release]}\n"}}
		res, err := Resolver{Files: f, Options: opts}.Resolve(context.Background(), build(nil))
		if err != nil || len(res.Targets) != 0 || res.Skipped == "" {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

func TestMux(t *testing.T) {
	gh := &files{content: map[string]string{sha + ":.slipway.yaml": "targets: [{name: x}]\n"}}
	m := Mux{{v1alpha1.ForgeGitHub, "github.com"}: gh}
	res, err := Resolver{Files: m, Changes: m}.Resolve(context.Background(), build(nil))
	if err != nil || len(res.Targets) != 1 || res.Targets[0].Name != "x" {
		t.Fatalf("got %+v, %v", res, err)
	}
	// A host without API credentials (webhooks only) builds the default target.
	res, err = Resolver{Files: m, Changes: m, Options: Options{RegistryPrefix: "r.example"}}.Resolve(context.Background(), build(func(b *v1alpha1.Build) { b.Spec.Source.Host = "ghe.example.com" }))
	if err != nil || res.Found || len(res.Targets) != 1 || res.Targets[0].Name != "default" {
		t.Errorf("unknown host: %+v, %v", res, err)
	}
}
