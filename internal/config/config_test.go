package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAndValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"minimal github", "github:\n  webhookSecretFile: /s\ncontroller: {enabled: false}\n", ""},
		{"controller needs images", "github: {webhookSecretFile: /s}\n", "controller.builderImage"},
		{"controller", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: r.io/s:1, buildkitImage: r.io/b:1, shape: userns, defaultTimeout: 10m, maxRunning: 4}\n", ""},
		{"pools", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, pools: [{name: new, shape: userns, nodeSelector: {pool: new}, repos: [\"acme/*\"]}]}\n", ""},
		{"pool bad shape", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, pools: [{name: new, shape: root}]}\n", "controller.pools[0].shape"},
		{"pool bad glob", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, pools: [{name: new, shape: userns, repos: [\"[\"]}]}\n", "controller.pools[0].repos"},
		{"controller bad shape", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, shape: privileged}\n", "controller.shape"},
		{"controller bad duration", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, defaultTimeout: soon}\n", "time"},
		{"controller bad pull policy", "github: {webhookSecretFile: /s}\ncontroller: {builderImage: a, buildkitImage: b, imagePullPolicy: Sometimes}\n", "controller.imagePullPolicy"},
		{"everything", "listen: 127.0.0.1:9000\nnamespace: builds\nkubeconfig: /k\ngithub: {webhookSecretFile: /a}\ngitlab: {webhookSecretFile: /b, signingSecretFile: /c}\ncontroller: {enabled: false}\n", ""},
		{"unknown top-level key", "listn: :8080\ngithub: {webhookSecretFile: /s}\n", `unknown field "listn"`},
		{"unknown nested key", "github: {webhookSecret: x}\n", `unknown field "webhookSecret"`},
		{"wrong type", "listen: [1]\ngithub: {webhookSecretFile: /s}\n", "listen"},
		{"no forge", "listen: :8080\n", "configure at least one forge"},
		{"bad namespace", "namespace: Not_A_Namespace\ngithub: {webhookSecretFile: /s}\n", "namespace:"},
		{"bad listen", "listen: nowhere\ngithub: {webhookSecretFile: /s}\n", "listen:"},
		{"signing without token", "gitlab: {signingSecretFile: /c}\n", "gitlab.signingSecretFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, "c.yaml", tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReadSecret(t *testing.T) {
	if s, err := ReadSecret("k", write(t, "s", "hunter2\r\n")); err != nil || string(s) != "hunter2" {
		t.Fatalf("ReadSecret = %q, %v", s, err)
	}
	if s, err := ReadSecret("k", write(t, "s", "  spaced  \n")); err != nil || string(s) != "  spaced  " {
		t.Fatalf("inner whitespace must be kept: %q, %v", s, err)
	}
	if _, err := ReadSecret("github.webhookSecretFile", write(t, "s", "\n")); err == nil || !strings.Contains(err.Error(), "github.webhookSecretFile") {
		t.Fatalf("empty secret: %v", err)
	}
	if _, err := ReadSecret("k", "/nonexistent"); err == nil {
		t.Fatal("missing file accepted")
	}
}
