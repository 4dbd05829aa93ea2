// Package registry is a minimal OCI distribution client for tests: it reads back what a build
// pushed (manifest, config, layers) so tests can check the image itself, not just the builder's
// report. It speaks plain HTTP or HTTPS with basic auth, which is what the test bed's
// docker-registry instances use.
package registry

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client reads from one registry.
type Client struct {
	Base     string // e.g. http://127.0.0.1:5000
	HTTP     *http.Client
	User     string
	Password string
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

// Manifest is an OCI image manifest or index (the fields tests use).
type Manifest struct {
	MediaType   string            `json:"mediaType"`
	Config      Descriptor        `json:"config"`
	Layers      []Descriptor      `json:"layers"`
	Manifests   []Descriptor      `json:"manifests"`
	Annotations map[string]string `json:"annotations"`
}

// Config is the image config (the fields tests use) plus the raw JSON.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Env        []string          `json:"Env"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy string `json:"created_by"`
	} `json:"history"`
	Raw []byte `json:"-"`
}

const accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

func (c *Client) get(ctx context.Context, path, acceptHdr string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return nil, nil, err
	}
	if acceptHdr != "" {
		req.Header.Set("Accept", acceptHdr)
	}
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, resp.Header, nil
}

// Manifest fetches repo:ref (tag or digest). For an index it follows the linux/amd64 entry (or
// the only entry) and returns that image manifest and its digest.
func (c *Client) Manifest(ctx context.Context, repo, ref string) (Manifest, string, error) {
	b, h, err := c.get(ctx, "/v2/"+repo+"/manifests/"+ref, accept)
	if err != nil {
		return Manifest{}, "", err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, "", fmt.Errorf("decoding manifest: %w", err)
	}
	dgst := h.Get("Docker-Content-Digest")
	if len(m.Manifests) > 0 {
		pick := m.Manifests[0]
		for _, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
				pick = d
				break
			}
		}
		return c.Manifest(ctx, repo, pick.Digest)
	}
	return m, dgst, nil
}

// Digest returns the digest the registry reports for repo:ref (index or manifest, unresolved).
func (c *Client) Digest(ctx context.Context, repo, ref string) (string, error) {
	b, h, err := c.get(ctx, "/v2/"+repo+"/manifests/"+ref, accept)
	if err != nil {
		return "", err
	}
	if d := h.Get("Docker-Content-Digest"); d != "" {
		return d, nil
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Blob fetches a blob and verifies its digest.
func (c *Client) Blob(ctx context.Context, repo, digest string) ([]byte, error) {
	b, _, err := c.get(ctx, "/v2/"+repo+"/blobs/"+digest, "")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return nil, fmt.Errorf("blob %s has digest %s", digest, got)
	}
	return b, nil
}

// Config fetches and decodes the image config of m.
func (c *Client) Config(ctx context.Context, repo string, m Manifest) (Config, error) {
	b, err := c.Blob(ctx, repo, m.Config.Digest)
	if err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Config{}, fmt.Errorf("decoding image config: %w", err)
	}
	cfg.Raw = b
	return cfg, nil
}

// File is one entry of a layer.
type File struct {
	Name     string
	Mode     int64
	UID, GID int
	Linkname string
	Content  []byte // regular files up to 64 MiB
}

// LayerFiles fetches a layer (gzip or uncompressed tar) and lists its entries.
func (c *Client) LayerFiles(ctx context.Context, repo string, layer Descriptor) ([]File, error) {
	b, err := c.Blob(ctx, repo, layer.Digest)
	if err != nil {
		return nil, err
	}
	var r io.Reader = strings.NewReader(string(b))
	if strings.Contains(layer.MediaType, "gzip") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	var files []File
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
		}
		f := File{Name: h.Name, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Linkname: h.Linkname}
		if h.Typeflag == tar.TypeReg {
			f.Content, err = io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return nil, err
			}
		}
		files = append(files, f)
	}
}
