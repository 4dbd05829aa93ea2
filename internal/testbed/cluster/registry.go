package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Media types of single-platform image manifests (the images hack/ builds are OCI ones).
const (
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// splitRef splits "registry/name:tag" or "registry/name@sha256:..." of the cluster registry into
// name and reference.
func (c *Cluster) splitRef(ref string) (name, reference string, err error) {
	rest, ok := strings.CutPrefix(ref, c.Registry+"/")
	if !ok {
		return "", "", fmt.Errorf("image %q is not in the cluster registry %s", ref, c.Registry)
	}
	if n, d, ok := strings.Cut(rest, "@"); ok {
		return n, d, nil
	}
	if i := strings.LastIndex(rest, ":"); i > 0 {
		return rest[:i], rest[i+1:], nil
	}
	return rest, "latest", nil
}

// ManifestDigest returns the digest the registry serves for an image reference in it (by tag or
// digest), as the kubelet would resolve it.
func (c *Cluster) ManifestDigest(ctx context.Context, ref string) (string, error) {
	name, reference, err := c.splitRef(ref)
	if err != nil {
		return "", err
	}
	hc, err := c.RegistryHTTPClient()
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.registryURL("/v2/%s/manifests/%s", name, reference), nil)
	if err != nil {
		return "", fmt.Errorf("building manifest request: %w", err)
	}
	req.Header.Set("Accept", mediaTypeOCIManifest+", "+mediaTypeDockerManifest)
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("HEAD manifest %s: %w", ref, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD manifest %s: %s", ref, resp.Status)
	}
	d := resp.Header.Get("Docker-Content-Digest")
	if d == "" {
		return "", fmt.Errorf("HEAD manifest %s: no Docker-Content-Digest header", ref)
	}
	return d, nil
}

// PushVariant copies the image src (in the cluster registry) to repo:tag with its config changed
// to carry labels, and returns the new image by digest. The layers are shared (cross-repository
// mount), but the manifest digest is one no node has seen, so a pod using it proves that the
// kubelet really pulls from the registry.
func (c *Cluster) PushVariant(ctx context.Context, src, repo, tag string, labels map[string]string) (string, error) {
	name, reference, err := c.splitRef(src)
	if err != nil {
		return "", err
	}
	hc, err := c.RegistryHTTPClient()
	if err != nil {
		return "", err
	}
	rawManifest, mediaType, err := c.get(ctx, hc, c.registryURL("/v2/%s/manifests/%s", name, reference),
		mediaTypeOCIManifest+", "+mediaTypeDockerManifest)
	if err != nil {
		return "", err
	}
	var m manifest
	if err := json.Unmarshal(rawManifest, &m); err != nil {
		return "", fmt.Errorf("decoding manifest of %s: %w", src, err)
	}
	if mediaType != mediaTypeOCIManifest && mediaType != mediaTypeDockerManifest {
		return "", fmt.Errorf("%s is a %s, want a single-platform image manifest", src, mediaType)
	}
	rawConfig, _, err := c.get(ctx, hc, c.registryURL("/v2/%s/blobs/%s", name, m.Config.Digest), "")
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return "", fmt.Errorf("decoding image config of %s: %w", src, err)
	}
	inner, _ := cfg["config"].(map[string]any)
	if inner == nil {
		inner = map[string]any{}
		cfg["config"] = inner
	}
	merged, _ := inner["Labels"].(map[string]any)
	if merged == nil {
		merged = map[string]any{}
	}
	for k, v := range labels {
		merged[k] = v
	}
	inner["Labels"] = merged
	newConfig, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding image config: %w", err)
	}

	for _, l := range m.Layers {
		if err := c.mountBlob(ctx, hc, name, repo, l.Digest); err != nil {
			return "", err
		}
	}
	m.Config.Digest = digestOf(newConfig)
	m.Config.Size = int64(len(newConfig))
	if err := c.uploadBlob(ctx, hc, repo, newConfig); err != nil {
		return "", err
	}
	m.MediaType = mediaType
	return c.putManifest(ctx, hc, repo, tag, m)
}

// File is a regular file in an image built by PushImage.
type File struct {
	// Path is the absolute path in the image, e.g. "/probe".
	Path string
	// Mode holds the permission bits, e.g. 0o755.
	Mode int64
	// Content is the file's content.
	Content []byte
}

// PushImage pushes a one-layer linux/amd64 image holding files (and their parent directories,
// owned by root) to repo:tag, and returns it by digest. Tests use it to ship small static programs
// into pods without any image tooling.
func (c *Cluster) PushImage(ctx context.Context, repo, tag string, files []File, entrypoint []string, user string) (string, error) {
	hc, err := c.RegistryHTTPClient()
	if err != nil {
		return "", err
	}
	var layer bytes.Buffer
	sum := sha256.New()
	gz := gzip.NewWriter(&layer)
	tw := tar.NewWriter(io.MultiWriter(gz, sum))
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return "", fmt.Errorf("image file path %q is not absolute", f.Path)
		}
		var parents []string
		for d := path.Dir(f.Path); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return "", fmt.Errorf("writing layer: %w", err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Content)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("writing layer: %w", err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return "", fmt.Errorf("writing layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("writing layer: %w", err)
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("compressing layer: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint, "User": user, "Env": []string{"PATH=/usr/local/bin:/usr/bin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return "", fmt.Errorf("encoding image config: %w", err)
	}
	for _, blob := range [][]byte{layer.Bytes(), config} {
		if err := c.uploadBlob(ctx, hc, repo, blob); err != nil {
			return "", err
		}
	}
	return c.putManifest(ctx, hc, repo, tag, manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeOCIManifest,
		Config:        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digestOf(config), Size: int64(len(config))},
		Layers:        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: digestOf(layer.Bytes()), Size: int64(layer.Len())}},
	})
}

// putManifest uploads m as repo:tag and returns the image by digest.
func (c *Cluster) putManifest(ctx context.Context, hc *http.Client, repo, tag string, m manifest) (string, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding manifest: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.registryURL("/v2/%s/manifests/%s", repo, tag), bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("building manifest upload: %w", err)
	}
	req.Header.Set("Content-Type", m.MediaType)
	if err := expect(hc.Do(req))(http.StatusCreated); err != nil {
		return "", fmt.Errorf("pushing manifest %s/%s:%s: %w", c.Registry, repo, tag, err)
	}
	return fmt.Sprintf("%s/%s@%s", c.Registry, repo, digestOf(raw)), nil
}

func (c *Cluster) registryURL(format string, args ...any) string {
	return "https://" + c.Registry + fmt.Sprintf(format, args...)
}

// get fetches a URL and returns its body and content type.
func (c *Cluster) get(ctx context.Context, hc *http.Client, u, accept string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", fmt.Errorf("building request: %w", err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// mountBlob makes blob dgst of repository from available in repository to, without copying it
// through the client (registry cross-repository mount); it falls back to a copy.
func (c *Cluster) mountBlob(ctx context.Context, hc *http.Client, from, to, dgst string) error {
	u := c.registryURL("/v2/%s/blobs/uploads/?mount=%s&from=%s", to, url.QueryEscape(dgst), url.QueryEscape(from))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("building blob mount: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("mounting blob %s into %s: %w", dgst, to, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return nil
	}
	blob, _, err := c.get(ctx, hc, c.registryURL("/v2/%s/blobs/%s", from, dgst), "")
	if err != nil {
		return err
	}
	return c.uploadBlob(ctx, hc, to, blob)
}

// uploadBlob uploads content to repository repo in one piece (POST, then PUT with the digest).
func (c *Cluster) uploadBlob(ctx context.Context, hc *http.Client, repo string, content []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.registryURL("/v2/%s/blobs/uploads/", repo), nil)
	if err != nil {
		return fmt.Errorf("building blob upload: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("starting blob upload to %s: %w", repo, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting blob upload to %s: %s", repo, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("blob upload to %s: %w", repo, err)
	}
	q := loc.Query()
	q.Set("digest", digestOf(content))
	loc.RawQuery = q.Encode()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(content))
	if err != nil {
		return fmt.Errorf("building blob upload: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if err := expect(hc.Do(req))(http.StatusCreated); err != nil {
		return fmt.Errorf("uploading blob to %s: %w", repo, err)
	}
	return nil
}

// expect turns an HTTP round trip into an error unless it returned the wanted status.
func expect(resp *http.Response, err error) func(want int) error {
	return func(want int) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
