package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestReadEnvFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	if err := os.WriteFile(good, []byte("# comment\nKUBECONFIG=/x/admin.kubeconfig\n\nSLIPWAY_REGISTRY=10.244.0.1:15443\nEMPTY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := readEnvFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"KUBECONFIG": "/x/admin.kubeconfig", "SLIPWAY_REGISTRY": "10.244.0.1:15443", "EMPTY": ""}
	if len(env) != len(want) {
		t.Fatalf("got %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("KUBECONFIG=/x\nnot a line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnvFile(bad); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("bad line: err %v, want one naming line 2", err)
	}
}

func TestLoadMissingEnvFile(t *testing.T) {
	_, err := Load(t.Context(), filepath.Join(t.TempDir(), "none.env"))
	if err == nil || !strings.Contains(err.Error(), "hack/cluster/up.sh") {
		t.Errorf("err %v, want a hint to run hack/cluster/up.sh", err)
	}
}

func TestSplitRef(t *testing.T) {
	c := &Cluster{Registry: "10.244.0.1:15443"}
	for _, tc := range []struct{ ref, name, reference string }{
		{"10.244.0.1:15443/slipway/testbox:1", "slipway/testbox", "1"},
		{"10.244.0.1:15443/slipway/testbox@sha256:abc", "slipway/testbox", "sha256:abc"},
		{"10.244.0.1:15443/a/b", "a/b", "latest"},
	} {
		name, reference, err := c.splitRef(tc.ref)
		if err != nil || name != tc.name || reference != tc.reference {
			t.Errorf("splitRef(%q) = %q, %q, %v; want %q, %q", tc.ref, name, reference, err, tc.name, tc.reference)
		}
	}
	if _, _, err := c.splitRef("docker.io/library/busybox:1"); err == nil {
		t.Error("a reference outside the cluster registry was accepted")
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		if _, err := tb.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tb.String(); got != "defgh" {
		t.Errorf("tail %q, want %q", got, "defgh")
	}
}

// fakeRegistry is the part of the registry API that PushImage and PushVariant use.
type fakeRegistry struct {
	mu        sync.Mutex
	blobs     map[string][]byte
	manifests map[string][]byte // "repo:ref" -> manifest
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/blobs/uploads/"):
		if d := r.URL.Query().Get("mount"); d != "" {
			if _, ok := f.blobs[d]; ok {
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		w.Header().Set("Location", "/v2/"+p+"upload-1?_state=x")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut && strings.Contains(p, "/blobs/uploads/"):
		b, _ := io.ReadAll(r.Body)
		d := r.URL.Query().Get("digest")
		if digestOf(b) != d || r.URL.Query().Get("_state") != "x" {
			http.Error(w, "bad digest or lost query", http.StatusBadRequest)
			return
		}
		f.blobs[d] = b
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && strings.Contains(p, "/manifests/"):
		b, _ := io.ReadAll(r.Body)
		repo, ref, _ := strings.Cut(p, "/manifests/")
		f.manifests[repo+":"+ref] = b
		f.manifests[repo+":"+digestOf(b)] = b
		w.WriteHeader(http.StatusCreated)
	case strings.Contains(p, "/manifests/"):
		repo, ref, _ := strings.Cut(p, "/manifests/")
		b, ok := f.manifests[repo+":"+ref]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", mediaTypeOCIManifest)
		w.Header().Set("Docker-Content-Digest", digestOf(b))
		_, _ = w.Write(b)
	case strings.Contains(p, "/blobs/"):
		_, d, _ := strings.Cut(p, "/blobs/")
		b, ok := f.blobs[d]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

func TestPushImageAndVariant(t *testing.T) {
	reg := &fakeRegistry{blobs: map[string][]byte{}, manifests: map[string][]byte{}}
	srv := httptest.NewTLSServer(reg)
	defer srv.Close()
	c := &Cluster{
		Registry:   strings.TrimPrefix(srv.URL, "https://"),
		RegistryCA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
	}
	ctx := t.Context()
	img, err := c.PushImage(ctx, "e2e/probe", "v1", []File{{Path: "/usr/bin/probe", Mode: 0o755, Content: []byte("#!probe")}}, []string{"/usr/bin/probe"}, "1000")
	if err != nil {
		t.Fatalf("PushImage: %v", err)
	}
	d, err := c.ManifestDigest(ctx, c.Registry+"/e2e/probe:v1")
	if err != nil || !strings.HasSuffix(img, "@"+d) {
		t.Fatalf("ManifestDigest = %q, %v; want the digest of %s", d, err, img)
	}
	var m manifest
	if err := json.Unmarshal(reg.manifests["e2e/probe:v1"], &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(m.Layers))
	}
	gz, err := gzip.NewReader(bytes.NewReader(reg.blobs[m.Layers[0].Digest]))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "usr/,usr/bin/,usr/bin/probe" {
		t.Errorf("layer entries %s, want usr/,usr/bin/,usr/bin/probe", got)
	}

	variant, err := c.PushVariant(ctx, img, "e2e/variant", "n1", map[string]string{"nonce": "n1"})
	if err != nil {
		t.Fatalf("PushVariant: %v", err)
	}
	if variant == img || !strings.HasPrefix(variant, c.Registry+"/e2e/variant@sha256:") {
		t.Errorf("variant %s, want a new digest in e2e/variant", variant)
	}
	var vm manifest
	if err := json.Unmarshal(reg.manifests["e2e/variant:n1"], &vm); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Config struct {
			User   string
			Labels map[string]string
		} `json:"config"`
	}
	if err := json.Unmarshal(reg.blobs[vm.Config.Digest], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Labels["nonce"] != "n1" || cfg.Config.User != "1000" || vm.Layers[0].Digest != m.Layers[0].Digest {
		t.Errorf("variant config %+v, layers %v: want the label added, user and layers kept", cfg.Config, vm.Layers)
	}
}

func TestSlipwayImagesFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "images.env")
	lines := "SLIPWAY_IMAGE=r/slipway@sha256:1\nSLIPWAY_BUILDER_IMAGE=r/builder@sha256:2\nSLIPWAY_BUILDKIT_IMAGE=r/bk@sha256:3\nSLIPWAY_BINARY=/x/slipway\n"
	if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ImagesVar, f)
	im, err := (&Cluster{}).SlipwayImages(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if im != (Images{Server: "r/slipway@sha256:1", Builder: "r/builder@sha256:2", BuildKit: "r/bk@sha256:3", Binary: "/x/slipway"}) {
		t.Errorf("got %+v", im)
	}
	if err := os.WriteFile(f, []byte("SLIPWAY_IMAGE=r/slipway@sha256:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Cluster{}).SlipwayImages(t.Context(), Options{}); err == nil {
		t.Error("incomplete images file: no error")
	}
}

func TestBuildKitConfigMap(t *testing.T) {
	c := &Cluster{Registry: "10.244.0.1:15443", RegistryCA: []byte("-----BEGIN CERTIFICATE-----\n")}
	cm := c.BuildKitConfigMap("bk", "/home/user/.config/buildkit")
	want := "[registry.\"10.244.0.1:15443\"]\n  ca = [\"/home/user/.config/buildkit/registry-ca.crt\"]\n"
	if !strings.Contains(cm.Data["buildkitd.toml"], want) {
		t.Errorf("buildkitd.toml %q, want it to contain %q", cm.Data["buildkitd.toml"], want)
	}
	if cm.Data["registry-ca.crt"] != string(c.RegistryCA) {
		t.Error("CA missing from the ConfigMap")
	}
}
