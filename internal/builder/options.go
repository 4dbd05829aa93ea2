package builder

import (
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
)

// OCI annotation keys the builder sets on every image, as config labels and manifest annotations.
const (
	annotationSource   = "org.opencontainers.image.source"
	annotationRevision = "org.opencontainers.image.revision"
	annotationCreated  = "org.opencontainers.image.created"
)

// sourceMeta describes the fetched commit for labels and annotations.
type sourceMeta struct {
	URL      string    // credential-free repository URL
	Revision string    // commit SHA
	Created  time.Time // commit time: rebuilding a commit gives the same image config
}

// publicURL strips user info, query and fragment from a clone URL so that a token embedded in it
// can never reach a label, a log line or the result.
func publicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

func (m sourceMeta) annotations() map[string]string {
	a := map[string]string{}
	if m.URL != "" {
		a[annotationSource] = m.URL
	}
	if m.Revision != "" {
		a[annotationRevision] = m.Revision
	}
	if !m.Created.IsZero() {
		a[annotationCreated] = m.Created.UTC().Format(time.RFC3339)
	}
	return a
}

// dockerfileDirAndName splits the Dockerfile path (relative to the repository root) into the dir
// sent as the "dockerfile" local mount and the file name the frontend reads.
func (c Config) dockerfileDirAndName() (string, string) {
	p, _ := cleanRel("dockerfile", c.dockerfilePath())
	return path.Dir(p), path.Base(p)
}

// frontendAttrs are the dockerfile.v0 frontend options. Build args travel here in clear text and
// land in the image history, which is why secrets never do.
func frontendAttrs(c Config, m sourceMeta) map[string]string {
	_, name := c.dockerfileDirAndName()
	attrs := map[string]string{"filename": name}
	if c.Target != "" {
		attrs["target"] = c.Target
	}
	for _, a := range c.BuildArgs {
		k, v, _ := strings.Cut(a, "=")
		attrs["build-arg:"+k] = v
	}
	if len(c.Platforms) > 0 {
		attrs["platform"] = strings.Join(c.Platforms, ",")
	}
	for k, v := range m.annotations() {
		attrs["label:"+k] = v
	}
	return attrs
}

// imageExport pushes the image to every tag.
func imageExport(c Config, m sourceMeta) client.ExportEntry {
	attrs := map[string]string{
		"name":           strings.Join(c.Tags, ","),
		"push":           "true",
		"oci-mediatypes": "true",
	}
	for k, v := range m.annotations() {
		attrs["annotation."+k] = v
	}
	if ins, _ := c.insecureTags(); ins {
		attrs["registry.insecure"] = "true"
	}
	return client.ExportEntry{Type: client.ExporterImage, Attrs: attrs}
}

// cacheImports lists the registry caches in the caller's order of preference; BuildKit tries them
// all and a missing ref (a branch's first build) is only a warning.
func cacheImports(c Config) []client.CacheOptionsEntry {
	var out []client.CacheOptionsEntry
	seen := map[string]bool{}
	for _, ref := range c.CacheFrom {
		if ref == "" || seen[ref] {
			continue
		}
		seen[ref] = true
		attrs := map[string]string{"ref": ref}
		if c.insecure(ref) {
			attrs["registry.insecure"] = "true"
		}
		out = append(out, client.CacheOptionsEntry{Type: "registry", Attrs: attrs})
	}
	return out
}

// cacheExports exports this branch's cache with mode=max, so that a change in a late stage still
// reuses the earlier stages (inline/min cache would re-run them). ignore-error makes the export
// best-effort inside BuildKit: a failure is reported on its progress vertex but does not fail a
// build whose image was pushed.
func cacheExports(c Config) []client.CacheOptionsEntry {
	if c.CacheTo == "" {
		return nil
	}
	attrs := map[string]string{
		"ref":            c.CacheTo,
		"mode":           "max",
		"ignore-error":   "true",
		"oci-mediatypes": "true",
		"image-manifest": "true",
	}
	if c.insecure(c.CacheTo) {
		attrs["registry.insecure"] = "true"
	}
	return []client.CacheOptionsEntry{{Type: "registry", Attrs: attrs}}
}
