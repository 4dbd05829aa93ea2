package repoconfig

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	stagePattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	argPattern      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
	imageComponent  = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	registryHost    = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
	tagLiteral      = regexp.MustCompile(`^[A-Za-z0-9_.-]*$`)
)

// Placeholders a tag template may use; they are expanded by the controller (podspec.ExpandTag).
var placeholders = []string{"sha", "short_sha", "branch", "tag", "pr"}

// Validate checks a decoded Config and returns every problem, each with its field path. Parse
// adds the lines.
func Validate(c *Config) Errors {
	var errs Errors
	add := func(p, format string, args ...any) {
		errs = append(errs, &Error{Path: p, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Version != 0 && c.Version != 1 {
		add("version", "unsupported version %d (only 1)", c.Version)
	}
	switch c.ForkPolicy {
	case "", ForkBuildNoPush, ForkSkip, ForkBuild:
	default:
		add("forkPolicy", "%q is not one of build-no-push, skip, build", c.ForkPolicy)
	}
	if c.Defaults.Name != "" {
		add("defaults.name", "defaults cannot have a name")
	}
	validateTarget(&c.Defaults, "defaults", add)
	if len(c.Targets) > MaxTargets {
		add("targets", "%d targets, at most %d allowed", len(c.Targets), MaxTargets)
	}
	seen := map[string]int{}
	for i := range c.Targets {
		t := &c.Targets[i]
		p := fmt.Sprintf("targets[%d]", i)
		switch {
		case t.Name == "" && len(c.Targets) > 1:
			add(p, "a name is required when there are several targets")
		case t.Name != "" && (len(t.Name) > 30 || !namePattern.MatchString(t.Name)):
			add(p+".name", "%q must be lowercase letters, digits and '-', start and end with a letter or digit, at most 30 characters", t.Name)
		}
		if t.Name != "" {
			if j, dup := seen[t.Name]; dup {
				add(p+".name", "%q is already the name of targets[%d]", t.Name, j)
			}
			seen[t.Name] = i
		}
		validateTarget(t, p, add)
	}
	return errs
}

func validateTarget(t *Target, p string, add func(p, format string, args ...any)) {
	if t.Context != "" {
		if msg := repoPath(t.Context); msg != "" {
			add(p+".context", "%q %s", t.Context, msg)
		}
	}
	if t.Dockerfile != "" {
		if msg := repoPath(t.Dockerfile); msg != "" {
			add(p+".dockerfile", "%q %s", t.Dockerfile, msg)
		} else if path.Clean(t.Dockerfile) == "." {
			add(p+".dockerfile", "must name a file")
		}
	}
	if t.Target != "" && (len(t.Target) > 128 || !stagePattern.MatchString(t.Target)) {
		add(p+".target", "%q is not a Dockerfile stage name", t.Target)
	}
	if t.Image != "" {
		if msg := imageSyntax(t.Image); msg != "" {
			add(p+".image", "%q %s", t.Image, msg)
		}
	}
	if len(t.Tags) > MaxTags {
		add(p+".tags", "%d tags, at most %d allowed", len(t.Tags), MaxTags)
	}
	for i, tmpl := range t.Tags {
		if msg := tagTemplate(tmpl); msg != "" {
			add(fmt.Sprintf("%s.tags[%d]", p, i), "%q %s", tmpl, msg)
		}
	}
	if len(t.BuildArgs) > MaxBuildArgs {
		add(p+".buildArgs", "%d build args, at most %d allowed", len(t.BuildArgs), MaxBuildArgs)
	}
	names := make([]string, 0, len(t.BuildArgs))
	for k := range t.BuildArgs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if len(k) > 128 || !argPattern.MatchString(k) {
			add(p+".buildArgs."+k, "%q is not a valid ARG name", k)
		}
		if len(t.BuildArgs[k]) > 4096 {
			add(p+".buildArgs."+k, "value is longer than 4096 bytes")
		}
	}
	if len(t.Platforms) > MaxPlatforms {
		add(p+".platforms", "%d platforms, at most %d allowed", len(t.Platforms), MaxPlatforms)
	}
	for i, pl := range t.Platforms {
		if !platformPattern.MatchString(pl) {
			add(fmt.Sprintf("%s.platforms[%d]", p, i), "%q is not os/arch[/variant], e.g. linux/amd64", pl)
		}
	}
	if t.When != nil {
		for _, f := range []struct {
			name     string
			patterns []string
			isPath   bool
		}{{"branches", t.When.Branches, false}, {"tags", t.When.Tags, false}, {"paths", t.When.Paths, true}} {
			if len(f.patterns) > MaxPatterns {
				add(p+".when."+f.name, "%d patterns, at most %d allowed", len(f.patterns), MaxPatterns)
			}
			for i, pat := range f.patterns {
				if _, err := compileGlob(pat); err != nil {
					add(fmt.Sprintf("%s.when.%s[%d]", p, f.name, i), "%v", err)
					continue
				}
				if f.isPath {
					if msg := repoPath(strings.TrimPrefix(pat, "!")); msg != "" {
						add(fmt.Sprintf("%s.when.%s[%d]", p, f.name, i), "%q %s", pat, msg)
					}
				}
			}
		}
	}
	if t.Timeout.Duration < 0 || t.Timeout.Duration > MaxTimeout {
		add(p+".timeout", "%s is outside (0, %s]", t.Timeout.Duration, MaxTimeout)
	}
}

// repoPath says what is wrong with a path that must stay inside the repository: absolute
// paths, "..", backslashes (Windows separators that a Linux builder reads as names) and control
// characters are refused. The empty string means it is fine.
func repoPath(p string) string {
	switch {
	case len(p) > 1024:
		return "is longer than 1024 characters"
	case strings.HasPrefix(p, "/"):
		return "must be relative to the repository root, not absolute"
	case strings.ContainsAny(p, "\\\x00"):
		return "must use / as separator and no NUL"
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "must stay inside the repository (no ..)"
		}
	}
	return ""
}

// imageSyntax checks an image repository as written in the file: relative (team/app) or
// absolute (registry.example.com/team/app). Whether an absolute one is allowed is decided by
// the installation at Resolve time.
func imageSyntax(img string) string {
	if len(img) > 255 {
		return "is longer than 255 characters"
	}
	if strings.Contains(img, "@") {
		return "must be a repository without tag or digest"
	}
	parts := strings.Split(img, "/")
	first := 0
	if isRegistryHost(parts[0]) {
		if len(parts) < 2 {
			return "names a registry but no repository"
		}
		if !registryHost.MatchString(parts[0]) {
			return "has an invalid registry host"
		}
		first = 1
	}
	for _, c := range parts[first:] {
		if strings.Contains(c, ":") {
			return "must be a repository without tag or digest"
		}
		if !imageComponent.MatchString(c) {
			return fmt.Sprintf("has %q, which is not a lowercase repository path component", c)
		}
	}
	return ""
}

// isRegistryHost tells a registry host from a repository path component the way Docker does:
// it has a dot or a port, or is localhost.
func isRegistryHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// tagTemplate checks a tag template; "" means fine.
func tagTemplate(tmpl string) string {
	if tmpl == "" {
		return "is empty"
	}
	if len(tmpl) > 128 {
		return "is longer than 128 characters"
	}
	rest := tmpl
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if !tagLiteral.MatchString(rest) {
				return "may only contain letters, digits, '_', '.', '-' and placeholders"
			}
			return ""
		}
		if !tagLiteral.MatchString(rest[:i]) {
			return "may only contain letters, digits, '_', '.', '-' and placeholders"
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "has an unclosed {"
		}
		name := rest[i+1 : i+j]
		known := false
		for _, p := range placeholders {
			known = known || p == name
		}
		if !known {
			return fmt.Sprintf("has unknown placeholder {%s} (known: {%s})", name, strings.Join(placeholders, "}, {"))
		}
		rest = rest[i+j+1:]
	}
	return ""
}
