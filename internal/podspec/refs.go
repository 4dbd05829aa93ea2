package podspec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

var (
	tagPattern       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	repoComponent    = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	registryHost     = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
	tagUnsafe        = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
	leadingTagUnsafe = regexp.MustCompile(`^[.-]+`)
)

// Refs are the registry references one Build pushes to and caches in.
type Refs struct {
	// Image is the repository, e.g. registry.example.com/builds/acme/app.
	Image string
	// Tags are full references, Image:tag.
	Tags []string
	// CacheFrom are cache references to import, most specific first.
	CacheFrom []string
	// CacheTo is where this build exports its cache.
	CacheTo string
}

// ImageRefs derives the image, tags and cache references of a Build. Pure, so the rules can
// be read and tested as a table.
func ImageRefs(b *v1alpha1.Build, registryPrefix string) (Refs, error) {
	image := b.Spec.Target.Image
	if image == "" {
		if registryPrefix == "" {
			return Refs{}, fmt.Errorf("target %q names no image and no registry prefix is configured", b.Spec.Target.Name)
		}
		image = strings.TrimSuffix(registryPrefix, "/") + "/" + strings.ToLower(b.Spec.Source.Repository)
		if b.Spec.Target.Name != "" && b.Spec.Target.Name != "default" {
			image += "/" + b.Spec.Target.Name
		}
	}
	if err := ValidateRepository(image); err != nil {
		return Refs{}, err
	}
	templates := b.Spec.Target.Tags
	if len(templates) == 0 {
		// The commit, plus the branch, tag or pull request it arrived on: one pinned and one
		// moving reference.
		templates = []string{"{sha}", "{branch}", "{tag}", "{pr}"}
	}
	r := Refs{Image: image}
	seen := map[string]bool{}
	for _, tmpl := range templates {
		tag, err := ExpandTag(tmpl, &b.Spec.Source)
		if err != nil {
			return Refs{}, err
		}
		if tag == "" || seen[tag] {
			continue // e.g. {tag} on a branch push
		}
		seen[tag] = true
		r.Tags = append(r.Tags, image+":"+tag)
	}
	if len(r.Tags) == 0 {
		return Refs{}, fmt.Errorf("no tag templates of target %q apply to this %s", b.Spec.Target.Name, b.Spec.Source.Event)
	}
	// Cache: this line of work first, then the base of a PR, then the default branch.
	own := cacheTag(&b.Spec.Source)
	r.CacheTo = image + ":" + own
	for _, t := range []string{own, sanitizeTag("cache-" + b.Spec.Source.BaseRef), sanitizeTag("cache-" + b.Spec.Source.DefaultBranch)} {
		if t != "" && t != "cache-" && !seen["c:"+t] {
			seen["c:"+t] = true
			r.CacheFrom = append(r.CacheFrom, image+":"+t)
		}
	}
	return r, nil
}

func cacheTag(s *v1alpha1.Source) string {
	switch s.Event {
	case v1alpha1.EventPullRequest, v1alpha1.EventMergeRequest:
		return "cache-pr-" + strconv.FormatInt(s.Number, 10)
	}
	if name, ok := strings.CutPrefix(s.Ref, "refs/heads/"); ok {
		return sanitizeTag("cache-" + name)
	}
	// Tags and anything else share the default branch's cache rather than each making its own.
	return sanitizeTag("cache-" + s.DefaultBranch)
}

// ExpandTag fills a tag template. Unknown placeholders are errors (a typo must not push
// "{shaa}"); placeholders that do not apply to the event expand to "" and the tag is skipped.
func ExpandTag(tmpl string, s *v1alpha1.Source) (string, error) {
	branch, _ := strings.CutPrefix(s.Ref, "refs/heads/")
	if !strings.HasPrefix(s.Ref, "refs/heads/") {
		branch = ""
	}
	tag, _ := strings.CutPrefix(s.Ref, "refs/tags/")
	if !strings.HasPrefix(s.Ref, "refs/tags/") {
		tag = ""
	}
	pr := ""
	if s.Event == v1alpha1.EventPullRequest || s.Event == v1alpha1.EventMergeRequest {
		pr = "pr-" + strconv.FormatInt(s.Number, 10)
	}
	values := map[string]string{
		"sha": s.Commit, "short_sha": s.Commit[:min(7, len(s.Commit))],
		"branch": branch, "tag": tag, "pr": pr,
	}
	var out strings.Builder
	for rest := tmpl; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			out.WriteString(rest)
			break
		}
		out.WriteString(rest[:i])
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("tag template %q: unclosed {", tmpl)
		}
		v, ok := values[rest[i+1:i+j]]
		if !ok {
			return "", fmt.Errorf("tag template %q: unknown placeholder {%s}", tmpl, rest[i+1:i+j])
		}
		if v == "" {
			return "", nil
		}
		out.WriteString(v)
		rest = rest[i+j+1:]
	}
	t := sanitizeTag(out.String())
	if !tagPattern.MatchString(t) {
		return "", fmt.Errorf("tag template %q gives %q, which is not a valid tag", tmpl, t)
	}
	return t, nil
}

// sanitizeTag turns a branch name into a valid tag: characters outside [A-Za-z0-9_.-] become
// "-", leading "." and "-" go, and the result is cut to 128 characters.
func sanitizeTag(s string) string {
	s = tagUnsafe.ReplaceAllString(s, "-")
	s = leadingTagUnsafe.ReplaceAllString(s, "")
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// ValidateRepository checks an image repository reference without tag or digest.
func ValidateRepository(ref string) error {
	if len(ref) > 255 {
		return fmt.Errorf("image %q is longer than 255 characters", ref)
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 || !registryHost.MatchString(parts[0]) || !strings.ContainsAny(parts[0], ".:") && parts[0] != "localhost" {
		return fmt.Errorf("image %q must start with a registry host (e.g. registry.example.com/...)", ref)
	}
	for _, p := range parts[1:] {
		if !repoComponent.MatchString(p) {
			return fmt.Errorf("image %q: %q is not a valid repository path component", ref, p)
		}
	}
	return nil
}
