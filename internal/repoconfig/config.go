// Package repoconfig is the schema of a repository's own build configuration, .slipway.yaml:
// strict parsing with errors that name the line, validation, defaults, and which targets a
// commit builds. Everything here except Resolve is a pure function of its input, so the rules
// are tables in tests; Resolve reads the file through a ConfigSource the forge packages
// implement.
package repoconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileName is where the configuration lives, at the repository root.
const FileName = ".slipway.yaml"

// MaxFileSize bounds the file: it is read by the controller on every push, and a config larger
// than this is a mistake or an attack.
const MaxFileSize = 64 << 10

// Limits of the schema (they match the Build CRD's).
const (
	MaxTargets   = 16
	MaxTags      = 32
	MaxBuildArgs = 64
	MaxPlatforms = 8
	MaxPatterns  = 64
	MaxTimeout   = 24 * time.Hour
)

// ForkPolicy says what happens to pull or merge requests from forks.
type ForkPolicy string

const (
	// ForkBuildNoPush builds fork changes without push credentials (the default): the author
	// sees whether it builds, and nothing they wrote reaches the registry.
	ForkBuildNoPush ForkPolicy = "build-no-push"
	// ForkSkip does not build fork changes at all.
	ForkSkip ForkPolicy = "skip"
	// ForkBuild builds and pushes fork changes like any other: only for repositories whose
	// forks are trusted (e.g. an organisation's internal forks).
	ForkBuild ForkPolicy = "build"
)

// Config is a parsed .slipway.yaml.
type Config struct {
	// Version is the schema version; 0 and 1 both mean 1.
	Version    int        `yaml:"version" json:"version,omitempty"`
	ForkPolicy ForkPolicy `yaml:"forkPolicy" json:"forkPolicy,omitempty"`
	// Defaults apply to every target; a target's own fields win, and build args merge.
	Defaults Target   `yaml:"defaults" json:"defaults,omitempty"`
	Targets  []Target `yaml:"targets" json:"targets,omitempty"`

	// doc is the parsed document, to locate errors found after Parse (e.g. an image outside
	// the allowed registries).
	doc *yaml.Node
}

// locatedError places a problem with field of the i-th resolved target: in the target if it
// sets the field, else in defaults.
func (c *Config) locatedError(i int, field string, err error) Errors {
	p := "defaults." + field
	if i < len(c.Targets) {
		t := c.Targets[i]
		if field != "image" || t.Image != "" {
			p = fmt.Sprintf("targets[%d].%s", i, field)
		}
	}
	e := &Error{Path: p, Msg: err.Error()}
	if c.doc != nil {
		e.Line, e.Column = locate(c.doc, p)
	}
	return Errors{e}
}

// Target is one image built from the commit.
type Target struct {
	// Name is DNS-safe; it names the status context slipway/<name>. Optional with one target.
	Name string `yaml:"name" json:"name,omitempty"`
	// Context is the build context directory, relative to the repository root ("." default).
	Context string `yaml:"context" json:"context,omitempty"`
	// Dockerfile is relative to the repository root; default <context>/Dockerfile.
	Dockerfile string `yaml:"dockerfile" json:"dockerfile,omitempty"`
	// Target is the Dockerfile stage to build; empty means the last one.
	Target string `yaml:"target" json:"target,omitempty"`
	// Image is the repository to push to: relative to the configured registry prefix, or
	// absolute when the installation allows that registry.
	Image string `yaml:"image" json:"image,omitempty"`
	// Tags are tag templates: {sha}, {short_sha}, {branch}, {tag}, {pr}.
	Tags      []string          `yaml:"tags" json:"tags,omitempty"`
	BuildArgs map[string]string `yaml:"buildArgs" json:"buildArgs,omitempty"`
	Platforms []string          `yaml:"platforms" json:"platforms,omitempty"`
	// When filters which commits build this target.
	When *When `yaml:"when" json:"when,omitempty"`
	// Timeout bounds the build from its start.
	Timeout Duration `yaml:"timeout" json:"timeout,omitzero"`
}

// When filters by ref and by changed files. Each list holds globs (* within a path segment,
// ** across segments, ? one character, a leading ! excludes); the last pattern that matches
// decides. An empty list does not filter.
type When struct {
	// Branches match the pushed branch, or the target branch of a pull or merge request.
	Branches []string `yaml:"branches" json:"branches,omitempty"`
	// Tags match pushed tags. When only branches are given, tags do not build, and the
	// reverse.
	Tags []string `yaml:"tags" json:"tags,omitempty"`
	// Paths match the files the push or the pull request changed.
	Paths []string `yaml:"paths" json:"paths,omitempty"`
}

// Duration is a Go duration string in YAML ("30m", "1h30m").
type Duration struct{ time.Duration }

// UnmarshalYAML accepts only strings: a bare number has no unit and is a mistake.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("line %d: timeout must be a duration string such as \"30m\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: timeout %q is not a duration such as \"30m\"", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration string, for the JSON form of a Config.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.Duration == 0 {
		return []byte(`""`), nil
	}
	return []byte(strconv.Quote(d.String())), nil
}

// IsZero lets omitempty-style encoders skip an unset duration.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Error is one problem in the file, located.
type Error struct {
	// Line and Column are 1-based; 0 when the problem has no single place (e.g. too large).
	Line, Column int
	// Path is the field, e.g. targets[1].dockerfile.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(FileName)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all problems found, in file order. Error() leads with the first, which is what fits
// in a commit status.
type Errors []*Error

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return FileName + ": invalid"
	case 1:
		return es[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", es[0].Error(), len(es)-1)
}

// Default is the configuration of a repository without .slipway.yaml: one target named
// "default", the Dockerfile at the root, the image named after the repository.
func Default() *Config {
	return &Config{Version: 1, ForkPolicy: ForkBuildNoPush}
}

// Parse reads and validates a .slipway.yaml. Unknown keys, wrong types, duplicate keys and
// invalid values are errors (an Errors) naming the line: a typo must not silently turn a filter
// off or push to an unexpected place.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{Msg: fmt.Sprintf("file is %d bytes, more than the %d allowed", len(data), MaxFileSize)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(err)
	}
	if root.Kind == 0 || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		return Default(), nil // an empty file means the defaults
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode {
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return Default(), nil
	}
	if doc.Kind != yaml.MappingNode {
		return nil, Errors{{Line: doc.Line, Column: doc.Column, Msg: "the file must be a mapping (keys such as targets:, defaults:)"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, yamlErrors(err)
	}
	// A second document would be silently ignored by a less strict reader; refuse it.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Line: extra.Line, Msg: "the file holds more than one YAML document"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlErrors(err)
	}
	if c.ForkPolicy == "" {
		c.ForkPolicy = ForkBuildNoPush
	}
	if c.Version == 0 {
		c.Version = 1
	}
	if errs := Validate(&c); len(errs) > 0 {
		for _, e := range errs {
			e.Line, e.Column = locate(doc, e.Path)
		}
		return nil, errs
	}
	c.doc = doc
	return &c, nil
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	goType       = regexp.MustCompile(` into [\w.\[\]*]+`)
)

// yamlErrors turns yaml.v3's errors ("line 3: field foo not found in type repoconfig.Target")
// into located Errors without Go type names.
func yamlErrors(err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Errors
	for _, m := range msgs {
		e := &Error{Msg: m}
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			e.Line, _ = strconv.Atoi(g[1])
			e.Msg = g[2]
		}
		if g := unknownField.FindStringSubmatch(e.Msg); g != nil {
			e.Msg = fmt.Sprintf("unknown field %q", g[1])
		}
		e.Msg = goType.ReplaceAllString(e.Msg, "")
		e.Msg = strings.TrimPrefix(e.Msg, "yaml: ")
		out = append(out, e)
	}
	return out
}

// locate finds the line of a validation path ("targets[1].when.paths[0]") in the document; a
// path that is not in the file (a missing required field) points at its nearest parent.
func locate(n *yaml.Node, path string) (line, col int) {
	line, col = n.Line, n.Column
	for _, part := range splitPath(path) {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, col = n.Content[i].Line, n.Content[i].Column
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line, col = next.Line, next.Column
			}
		}
		if next == nil {
			return line, col
		}
		n = next
		if n.Kind == yaml.ScalarNode {
			line, col = n.Line, n.Column
		}
	}
	return line, col
}

// splitPath turns "targets[1].when.paths[0]" into [targets 1 when paths 0].
func splitPath(p string) []string {
	var out []string
	for _, seg := range strings.Split(p, ".") {
		for seg != "" {
			i := strings.IndexByte(seg, '[')
			if i < 0 {
				out = append(out, seg)
				break
			}
			if i > 0 {
				out = append(out, seg[:i])
			}
			j := strings.IndexByte(seg[i:], ']')
			if j < 0 {
				out = append(out, seg[i+1:])
				break
			}
			out = append(out, seg[i+1:i+j])
			seg = seg[i+j+1:]
		}
	}
	return out
}
