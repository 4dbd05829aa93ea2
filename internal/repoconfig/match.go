package repoconfig

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// RefKind says what kind of ref a commit arrived on.
type RefKind int

const (
	// RefBranch is a push to a branch.
	RefBranch RefKind = iota + 1
	// RefTag is a pushed tag.
	RefTag
	// RefChange is a pull or merge request; its Branch is the branch it targets.
	RefChange
)

// Event is what matching needs to know about a commit.
type Event struct {
	Kind RefKind
	// Branch is the pushed branch, or the target branch of a change; Tag the pushed tag.
	Branch string
	Tag    string
	// Changed are the files the push or change touched; nil means unknown, and then paths
	// filters match (building too much is better than silently building nothing).
	Changed []string
}

// Resolved returns the Config's targets with the defaults applied, in file order. Without
// targets it is the single default target.
func (c *Config) Resolved() []Target {
	if len(c.Targets) == 0 {
		t := merge(c.Defaults, Target{})
		t.Name = "default"
		return []Target{t}
	}
	out := make([]Target, 0, len(c.Targets))
	for _, t := range c.Targets {
		m := merge(c.Defaults, t)
		if m.Name == "" {
			m.Name = "default"
		}
		out = append(out, m)
	}
	return out
}

// merge applies defaults d under target t: t's set fields win, build args merge key by key,
// and the context and Dockerfile defaults ("." and <context>/Dockerfile) fill what is left.
func merge(d, t Target) Target {
	m := t
	if m.Context == "" {
		m.Context = d.Context
	}
	if m.Dockerfile == "" {
		m.Dockerfile = d.Dockerfile
	}
	if m.Target == "" {
		m.Target = d.Target
	}
	if m.Image == "" {
		m.Image = d.Image
	}
	if m.Tags == nil {
		m.Tags = d.Tags
	}
	if m.Platforms == nil {
		m.Platforms = d.Platforms
	}
	if m.When == nil {
		m.When = d.When
	}
	if m.Timeout.Duration == 0 {
		m.Timeout = d.Timeout
	}
	if len(d.BuildArgs) > 0 {
		args := make(map[string]string, len(d.BuildArgs)+len(t.BuildArgs))
		for k, v := range d.BuildArgs {
			args[k] = v
		}
		for k, v := range t.BuildArgs {
			args[k] = v
		}
		m.BuildArgs = args
	}
	if m.Context == "" {
		m.Context = "."
	}
	m.Context = path.Clean(m.Context)
	if m.Dockerfile == "" {
		m.Dockerfile = path.Join(m.Context, "Dockerfile")
	}
	m.Dockerfile = path.Clean(m.Dockerfile)
	return m
}

// Match returns the targets that ev builds, in order.
func Match(targets []Target, ev Event) []Target {
	var out []Target
	for _, t := range targets {
		if t.Matches(ev) {
			out = append(out, t)
		}
	}
	return out
}

// Matches applies t's filters to ev. Branch and tag filters follow GitHub Actions: with neither
// set everything matches; with only branches, tags do not match, and the reverse; a change
// (pull or merge request) is matched by the branch it targets.
func (t Target) Matches(ev Event) bool {
	w := t.When
	if w == nil {
		return true
	}
	refOK := true
	if len(w.Branches) > 0 || len(w.Tags) > 0 {
		switch ev.Kind {
		case RefBranch, RefChange:
			refOK = len(w.Branches) > 0 && matchList(w.Branches, ev.Branch)
		case RefTag:
			refOK = len(w.Tags) > 0 && matchList(w.Tags, ev.Tag)
		default:
			refOK = false
		}
	}
	if !refOK {
		return false
	}
	if len(w.Paths) == 0 || ev.Changed == nil {
		return true
	}
	paths := compileList(w.Paths)
	for _, f := range ev.Changed {
		if paths.match(f) {
			return true
		}
	}
	return false
}

// NeedsChanges reports whether any target filters by paths, so that the changed files are
// fetched only when they matter (a compare call counts against the API budget).
func NeedsChanges(targets []Target) bool {
	for _, t := range targets {
		if t.When != nil && len(t.When.Paths) > 0 {
			return true
		}
	}
	return false
}

func matchList(patterns []string, s string) bool { return compileList(patterns).match(s) }

// globList is a compiled pattern list.
type globList struct {
	res  []*regexp.Regexp
	negs []bool
}

func compileList(patterns []string) globList {
	var g globList
	for _, p := range patterns {
		re, err := compileGlob(p)
		if err != nil {
			continue // Validate refused it already
		}
		g.res = append(g.res, re)
		g.negs = append(g.negs, strings.HasPrefix(p, "!"))
	}
	return g
}

// match: the last pattern matching s decides (a leading ! excludes). When every pattern is an
// exclusion, s starts included, so "!docs/**" alone means "everything but docs".
func (g globList) match(s string) bool {
	included := true
	for _, neg := range g.negs {
		if !neg {
			included = false
			break
		}
	}
	for i, re := range g.res {
		if re.MatchString(s) {
			included = !g.negs[i]
		}
	}
	return included
}

// compileGlob turns a glob into an anchored regexp: * and ? stay within a path segment, **
// crosses segments ("a/**/b" also matches "a/b"), everything else is literal. A leading ! is
// the caller's. Character classes are not supported: they are rare in refs and paths and easy
// to get wrong.
func compileGlob(p string) (*regexp.Regexp, error) {
	p = strings.TrimPrefix(p, "!")
	switch {
	case p == "":
		return nil, errors.New("empty pattern")
	case len(p) > 512:
		return nil, errors.New("pattern longer than 512 characters")
	case strings.ContainsAny(p, "[]{}"):
		return nil, fmt.Errorf("pattern %q: [ ] { } are not supported; use * ** ?", p)
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 3
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i += 2
		case p[i] == '*':
			b.WriteString("[^/]*")
			i++
		case p[i] == '?':
			b.WriteString("[^/]")
			i++
		default:
			j := i
			for j < len(p) && p[j] != '*' && p[j] != '?' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(p[i:j]))
			i = j
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
