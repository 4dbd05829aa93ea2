// Package chart tests the Helm chart with the real helm binary: lint, golden renders, the
// values schema, and that the config the chart renders is one `slipway serve` accepts.
package chart

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/testbed/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

const chartDir = "../../charts/slipway"

func helm(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../hack/tool.sh", "helm").Output()
	if err != nil {
		t.Fatalf("building helm with hack/tool.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String() + errb.String(), err
}

func TestLint(t *testing.T) {
	bin := helm(t)
	for _, values := range []string{"", "testdata/full.values.yaml"} {
		args := []string{"lint", "--strict", chartDir}
		if values != "" {
			args = append(args, "-f", values)
		}
		if out, err := run(t, bin, args...); err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
	}
}

// TestTemplateGolden renders the chart and compares with reviewed golden files.
func TestTemplateGolden(t *testing.T) {
	bin := helm(t)
	for _, tc := range []struct{ name, values string }{{"default", ""}, {"full", "testdata/full.values.yaml"}} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "slipway", chartDir, "--namespace", "slipway-system"}
			if tc.values != "" {
				args = append(args, "-f", tc.values)
			}
			out, err := run(t, bin, args...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			golden.Compare(t, filepath.Join("testdata", tc.name+".golden.yaml"), []byte(out), *update)
			checkRender(t, out)
		})
	}
}

// checkRender asserts what must hold in any render: the config is valid for the binary, every
// file it names is a key of a Secret mounted read-only, and Slipway's own pod meets the
// restricted Pod Security Standard. It returns the config.
func checkRender(t *testing.T, out string) config.Serve {
	t.Helper()
	var sawConfig, sawDeploy bool
	var c config.Serve
	var pod corev1.PodSpec
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("render is not YAML: %v\n%s", err, doc)
		}
		switch meta.Kind {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			c, err = config.Load(path)
			if err != nil {
				t.Fatalf("slipway serve would reject the chart's config: %v\n%s", err, cm.Data["config.yaml"])
			}
			if c.GitHub.WebhookSecretFile != "" || c.GitLab.WebhookSecretFile != "" {
				if err := c.Validate(); err != nil {
					t.Fatalf("the chart's config does not validate: %v", err)
				}
			}
			sawConfig = true
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			ps := d.Spec.Template.Spec
			pod = ps
			if ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Fatal("slipway pod is not restricted")
			}
			sc := ps.Containers[0].SecurityContext
			if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" {
				t.Fatal("slipway container is not restricted")
			}
			sawDeploy = true
		}
	}
	if !sawConfig || !sawDeploy {
		t.Fatal("render lacks the ConfigMap or the Deployment")
	}
	for key, file := range map[string]string{
		"buildPage.signingKeyFile": c.BuildPage.SigningKeyFile,
		"github.webhookSecretFile": c.GitHub.WebhookSecretFile,
		"github.privateKeyFile":    c.GitHub.PrivateKeyFile,
		"gitlab.webhookSecretFile": c.GitLab.WebhookSecretFile,
		"gitlab.signingSecretFile": c.GitLab.SigningSecretFile,
		"gitlab.tokenFile":         c.GitLab.TokenFile,
	} {
		if file != "" && !mountsSecretFile(pod, file) {
			t.Errorf("%s: %s is not a Secret key mounted read-only into the slipway container", key, file)
		}
	}
	return c
}

// mountsSecretFile says whether file is a Secret item mounted read-only in the first container.
func mountsSecretFile(ps corev1.PodSpec, file string) bool {
	dir, base := filepath.Split(file)
	for _, m := range ps.Containers[0].VolumeMounts {
		if filepath.Clean(m.MountPath) != filepath.Clean(dir) || !m.ReadOnly {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path == base {
					return true
				}
			}
		}
	}
	return false
}

// TestExternalURLFromIngress: without externalURL, statuses link to the Ingress host.
func TestExternalURLFromIngress(t *testing.T) {
	bin := helm(t)
	out, err := run(t, bin, "template", "slipway", chartDir, "--set", "github.enabled=true",
		"--set", "ingress.enabled=true", "--set", "buildPage.signingKey.name=slipway-build-page")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	c := checkRender(t, out)
	if c.ExternalURL != "https://slipway.example.com" || c.BuildPage.SigningKeyFile == "" {
		t.Errorf("externalURL %q, signingKeyFile %q: want the Ingress URL and a key", c.ExternalURL, c.BuildPage.SigningKeyFile)
	}
	if c.GitHub.AppID != 0 || c.GitHub.PrivateKeyFile != "" || c.GitHub.Reporting != "checks" {
		t.Errorf("github without an App ID: got appID %d, privateKeyFile %q, reporting %q", c.GitHub.AppID, c.GitHub.PrivateKeyFile, c.GitHub.Reporting)
	}
}

// TestTemplateFails: a known URL without a key to sign its links fails at install time, naming
// the value to set.
func TestTemplateFails(t *testing.T) {
	bin := helm(t)
	for _, sets := range [][]string{
		{"github.enabled=true", "ingress.enabled=true"},
		{"github.enabled=true", "externalURL=https://slipway.example.com"},
	} {
		args := []string{"template", "slipway", chartDir}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		out, err := run(t, bin, args...)
		if err == nil {
			t.Errorf("%v was accepted:\n%.300s", sets, out)
		} else if !strings.Contains(out, "buildPage.signingKey.name is required") {
			t.Errorf("%v failed without naming buildPage.signingKey.name:\n%s", sets, out)
		}
	}
}

// TestSchemaRejects: typos and wrong types fail at install time, not at run time.
func TestSchemaRejects(t *testing.T) {
	bin := helm(t)
	for _, set := range []string{
		"build.shap=userns", "replicas=two", "build.shape=privileged", "build.defaultTimeout=soon", "unknownKey=1",
		"github.reporting=check", "github.app.id=abc", "github.app.id=-1", "github.app.privateKeyFile=/key",
		"buildPage.linkTTL=30d", "externalURL=slipway.example.com", "gitlab.url=", "build.allowedRegistries[0]=a b",
	} {
		if out, err := run(t, bin, "template", "slipway", chartDir, "--set", set); err == nil {
			t.Errorf("--set %s was accepted:\n%.300s", set, out)
		}
	}
}
