package repoconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testdataDir = "../../testdata/repoconfig"

// TestParseValid parses every example and compares the resolved targets with a golden file.
func TestParseValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdataDir, "valid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := json.MarshalIndent(struct {
				ForkPolicy ForkPolicy `json:"forkPolicy"`
				Targets    []Target   `json:"targets"`
			}{c.ForkPolicy, c.Resolved()}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), bytes.TrimSpace(got)) {
				t.Errorf("resolved targets differ from %s:\n%s", golden, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // the whole first error
	}{
		{"unknown top-level key", "version: 1\ntarget:\n  - name: a\n",
			`.slipway.yaml line 2: unknown field "target"`},
		{"unknown target key", "targets:\n  - name: a\n    dockerfil: x\n",
			`.slipway.yaml line 3: unknown field "dockerfil"`},
		{"unknown when key", "targets:\n  - name: a\n    when:\n      branch: [main]\n",
			`.slipway.yaml line 4: unknown field "branch"`},
		{"wrong type", "targets:\n  - name: a\n    tags: latest\n",
			`.slipway.yaml line 3: cannot unmarshal !!str ` + "`latest`"},
		{"syntax", "targets:\n  - name: a\n    context: x: y\n",
			`.slipway.yaml line 3: mapping values are not allowed in this context`},
		{"tab", "targets:\n  - name: a\n\tcontext: x\n",
			`.slipway.yaml line 2: found a tab character that violates indentation`},
		{"duplicate key", "targets:\n  - name: a\n    name: b\n",
			`.slipway.yaml line 3: mapping key "name" already defined at line 2`},
		{"not a mapping", "- a\n- b\n",
			`.slipway.yaml line 1: the file must be a mapping`},
		{"two documents", "version: 1\n---\nversion: 1\n",
			`.slipway.yaml line 2: the file holds more than one YAML document`},
		{"dockerfile escapes", "targets:\n  - name: a\n    dockerfile: ../../etc/passwd\n",
			`.slipway.yaml line 3: targets[0].dockerfile: "../../etc/passwd" must stay inside the repository (no ..)`},
		{"context escapes in the middle", "targets:\n  - name: a\n    context: src/../../x\n",
			`.slipway.yaml line 3: targets[0].context: "src/../../x" must stay inside the repository (no ..)`},
		{"absolute context", "defaults:\n  context: /srv\n",
			`.slipway.yaml line 2: defaults.context: "/srv" must be relative to the repository root, not absolute`},
		{"path filter escapes", "targets:\n  - name: a\n    when:\n      paths: [\"../x/**\"]\n",
			`.slipway.yaml line 4: targets[0].when.paths[0]: "../x/**" must stay inside the repository (no ..)`},
		{"name not DNS-safe", "targets:\n  - name: My_API\n",
			`.slipway.yaml line 2: targets[0].name: "My_API" must be lowercase letters`},
		{"name too long", "targets:\n  - name: " + strings.Repeat("a", 31) + "\n",
			`.slipway.yaml line 2: targets[0].name: "` + strings.Repeat("a", 31) + `" must be lowercase`},
		{"duplicate names", "targets:\n  - name: a\n  - name: b\n  - name: a\n",
			`.slipway.yaml line 4: targets[2].name: "a" is already the name of targets[0]`},
		{"names required", "targets:\n  - context: a\n  - context: b\n",
			`.slipway.yaml line 2: targets[0]: a name is required when there are several targets`},
		{"unknown placeholder", "targets:\n  - name: a\n    tags: [\"{sha}\", \"{shaa}\"]\n",
			`.slipway.yaml line 3: targets[0].tags[1]: "{shaa}" has unknown placeholder {shaa}`},
		{"bad platform", "defaults:\n  platforms: [amd64]\n",
			`.slipway.yaml line 2: defaults.platforms[0]: "amd64" is not os/arch[/variant]`},
		{"bad build arg", "defaults:\n  buildArgs:\n    1X: y\n",
			`.slipway.yaml line 3: defaults.buildArgs.1X: "1X" is not a valid ARG name`},
		{"image with tag", "targets:\n  - name: a\n    image: team/app:latest\n",
			`.slipway.yaml line 3: targets[0].image: "team/app:latest" must be a repository without tag or digest`},
		{"uppercase image", "targets:\n  - name: a\n    image: Team/App\n",
			`.slipway.yaml line 3: targets[0].image: "Team/App" has "Team"`},
		{"timeout number", "defaults:\n  timeout: 30\n",
			`.slipway.yaml line 2: timeout must be a duration string`},
		{"timeout too long", "defaults:\n  timeout: 48h\n",
			`.slipway.yaml line 2: defaults.timeout: 48h0m0s is outside`},
		{"fork policy", "forkPolicy: always\n",
			`.slipway.yaml line 1: forkPolicy: "always" is not one of build-no-push, skip, build`},
		{"version", "version: 2\n",
			`.slipway.yaml line 1: version: unsupported version 2`},
		{"glob class", "targets:\n  - name: a\n    when:\n      branches: [\"release-[0-9]\"]\n",
			`.slipway.yaml line 4: targets[0].when.branches[0]: pattern "release-[0-9]": [ ] { } are not supported`},
		{"defaults name", "defaults:\n  name: x\n",
			`.slipway.yaml line 2: defaults.name: defaults cannot have a name`},
		{"too large", strings.Repeat("#", MaxFileSize+1),
			`.slipway.yaml: file is 65537 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("first error\n got %q\nwant %q...", got, tc.want)
			}
			if strings.Contains(err.Error(), "repoconfig.") {
				t.Errorf("error leaks Go type names: %v", err)
			}
		})
	}
}

func TestErrorsSummary(t *testing.T) {
	_, err := Parse([]byte("targets:\n  - name: A\n    dockerfile: /x\n"))
	if got, want := err.Error(), `.slipway.yaml line 2: targets[0].name: "A" must be lowercase letters, digits and '-', start and end with a letter or digit, at most 30 characters (and 1 more)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDefaults(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "~\n", "{}\n"} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		got := c.Resolved()
		want := []Target{{Name: "default", Context: ".", Dockerfile: "Dockerfile"}}
		if !reflect.DeepEqual(got, want) || c.ForkPolicy != ForkBuildNoPush {
			t.Errorf("Parse(%q) = %+v %s, want %+v build-no-push", in, got, c.ForkPolicy, want)
		}
	}
	// The Dockerfile defaults to the context's, relative to the repository root.
	c, err := Parse([]byte("targets:\n  - context: ./svc/api/\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Resolved()[0]; got.Context != "svc/api" || got.Dockerfile != "svc/api/Dockerfile" {
		t.Errorf("got context %q dockerfile %q", got.Context, got.Dockerfile)
	}
}

func TestMerge(t *testing.T) {
	c, err := Parse([]byte(`
defaults:
  tags: ["{sha}"]
  buildArgs: {A: "1", B: "2"}
  when: {branches: [main]}
targets:
  - name: x
    buildArgs: {B: "3", C: "4"}
  - name: y
    tags: []
    when: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resolved()
	if got := r[0].BuildArgs; !reflect.DeepEqual(got, map[string]string{"A": "1", "B": "3", "C": "4"}) {
		t.Errorf("merged build args = %v", got)
	}
	if !reflect.DeepEqual(r[0].Tags, []string{"{sha}"}) || r[0].When == nil || len(r[0].When.Branches) != 1 {
		t.Errorf("x did not inherit tags and when: %+v", r[0])
	}
	// An explicit empty list or mapping overrides the default.
	if r[1].Tags == nil || len(r[1].Tags) != 0 || r[1].When == nil || len(r[1].When.Branches) != 0 {
		t.Errorf("y did not override tags and when: %+v", r[1])
	}
}

// TestSchemaInSync keeps slipway.schema.json and the Go types in step: every YAML key Parse
// accepts is in the schema, and the reverse.
func TestSchemaInSync(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal([]byte(Schema), &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	props := func(obj any) []string {
		var out []string
		for k := range obj.(map[string]any)["properties"].(map[string]any) {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	defs := s["$defs"].(map[string]any)
	fields := props(defs["fields"])
	targetProps := append(append([]string{}, fields...), props(s["properties"].(map[string]any)["targets"].(map[string]any)["items"])...)
	sort.Strings(targetProps)
	whenProps := props(defs["fields"].(map[string]any)["properties"].(map[string]any)["when"])
	for _, tc := range []struct {
		typ    reflect.Type
		schema []string
	}{
		{reflect.TypeOf(Config{}), props(s)},
		{reflect.TypeOf(Target{}), targetProps},
		{reflect.TypeOf(When{}), whenProps},
	} {
		var keys []string
		for i := 0; i < tc.typ.NumField(); i++ {
			if tag := tc.typ.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
				keys = append(keys, strings.Split(tag, ",")[0])
			}
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, tc.schema) {
			t.Errorf("%s: Go keys %v, schema %v", tc.typ.Name(), keys, tc.schema)
		}
	}
}

// FuzzParse: Parse never panics, every error is located inside the file, and whatever it
// accepts resolves to targets that stay inside the repository and have valid names.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "valid", "*.yaml"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("targets:\n  - name: a\n    dockerfile: ../x\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("targets: [{name: a, when: {paths: ['**/x', '!y']}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			// YAML breaks lines at \n, \r and \r\n; counting both bounds the line count.
			lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 1
			for _, e := range errs {
				if e.Line < 0 || e.Line > lines+1 {
					t.Fatalf("error line %d outside a %d-line file: %v", e.Line, lines, e)
				}
			}
			return
		}
		for _, tg := range c.Resolved() {
			if !namePattern.MatchString(tg.Name) {
				t.Fatalf("accepted target name %q", tg.Name)
			}
			for _, p := range []string{tg.Context, tg.Dockerfile} {
				if repoPath(p) != "" || p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") {
					t.Fatalf("accepted path %q escaping the repository", p)
				}
			}
			_ = tg.Matches(Event{Kind: RefBranch, Branch: "main", Changed: []string{"a/b", "x"}})
		}
	})
}
