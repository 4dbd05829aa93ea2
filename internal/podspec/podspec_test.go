package podspec

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/testbed/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

func build(mutate func(*v1alpha1.Build)) *v1alpha1.Build {
	b := &v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Name: "github-0123456789abcdef-default", Namespace: "builds", UID: "uid-1"},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{
				Forge: v1alpha1.ForgeGitHub, Host: "github.com", Repository: "Acme/Web-App",
				CloneURL: "https://github.com/Acme/Web-App.git", Commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
				Ref: "refs/heads/feature/Login_v2", Event: v1alpha1.EventPush, DefaultBranch: "main",
			},
			Target: v1alpha1.Target{Name: "default", Context: ".", Dockerfile: "Dockerfile"},
		},
	}
	if mutate != nil {
		mutate(b)
	}
	return b
}

func settings(shape Shape) Settings {
	return Settings{
		Shape: shape, BuilderImage: "registry.example.com/slipway/slipway:v1", BuildKitImage: "registry.example.com/slipway/buildkit:v0.33.1-rootless",
		ImagePullPolicy: corev1.PullIfNotPresent, DefaultTimeout: 20 * time.Minute, RegistryPrefix: "registry.example.com/builds",
		PushSecretName: "registry-push", BuildKitConfigMap: "buildkitd-config",
		BuilderResources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		BuildKitResources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
		},
	}
}

// TestPodGolden pins the whole pod of each shape: every security-relevant field is reviewed in
// the golden file's diff.
func TestPodGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape Shape
		in    func(Refs) Input
	}{
		{"rootless", ShapeRootless, func(r Refs) Input {
			return Input{Build: build(nil), Refs: r, GitTokenSecret: "github-0123456789abcdef-default-git", Push: true}
		}},
		{"userns", ShapeUserNamespace, func(r Refs) Input { return Input{Build: build(nil), Refs: r, Push: true} }},
		{"fork-no-push", ShapeRootless, func(r Refs) Input { return Input{Build: build(nil), Refs: r, Push: false} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refs, err := ImageRefs(build(nil), "registry.example.com/builds")
			if err != nil {
				t.Fatal(err)
			}
			pod := Pod(tc.in(refs), settings(tc.shape))
			got, err := yaml.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, filepath.Join("testdata", tc.name+".golden.yaml"), got, *update)
		})
	}
}

// TestPodInvariants states the security rules directly, so they hold whatever the golden says.
func TestPodInvariants(t *testing.T) {
	for _, shape := range []Shape{ShapeRootless, ShapeUserNamespace} {
		for _, push := range []bool{true, false} {
			refs, _ := ImageRefs(build(nil), "registry.example.com/builds")
			p := Pod(Input{Build: build(nil), Refs: refs, GitTokenSecret: "tok", Push: push}, settings(shape))
			s := p.Spec
			if *s.AutomountServiceAccountToken || s.HostNetwork || s.HostPID || s.HostIPC {
				t.Fatal("pod gets host namespaces or a service account token")
			}
			if len(s.InitContainers) != 1 || s.InitContainers[0].RestartPolicy == nil || *s.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatal("buildkitd is not a native sidecar")
			}
			d := s.InitContainers[0].SecurityContext
			if d.Privileged != nil && *d.Privileged || d.Capabilities != nil && len(d.Capabilities.Add) > 0 || *d.RunAsUser != UID {
				t.Fatal("buildkitd is privileged, adds capabilities, or runs as the wrong user")
			}
			bc := s.Containers[0].SecurityContext
			if *bc.AllowPrivilegeEscalation || !*bc.ReadOnlyRootFilesystem || bc.Capabilities.Drop[0] != "ALL" || !*bc.RunAsNonRoot {
				t.Fatal("builder is not locked down")
			}
			for _, c := range append(s.InitContainers, s.Containers...) {
				for _, m := range c.VolumeMounts {
					if (m.Name == "git-token" || m.Name == "registry-auth") && c.Name != BuilderName {
						t.Fatalf("%s mounts %s", c.Name, m.Name)
					}
				}
			}
			hasAuth := strings.Contains(strings.Join(s.Containers[0].Args, " "), "--docker-config")
			if hasAuth != push {
				t.Fatalf("push=%v but docker config mounted=%v", push, hasAuth)
			}
			if !push && strings.Contains(strings.Join(s.Containers[0].Args, " "), "--tag") {
				t.Fatal("a no-push build pushes tags")
			}
			if shape == ShapeUserNamespace && (s.HostUsers == nil || *s.HostUsers) {
				t.Fatal("userns shape without hostUsers: false")
			}
			if shape == ShapeRootless && !strings.Contains(strings.Join(s.InitContainers[0].Args, " "), "--oci-worker-no-process-sandbox") {
				t.Fatal("rootless shape keeps the process sandbox, which needs an unmasked /proc")
			}
		}
	}
}

func TestImageRefs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.Build)
		want   Refs
		err    string
	}{
		{"branch push, default tags", nil, Refs{
			Image:     "registry.example.com/builds/acme/web-app",
			Tags:      []string{"registry.example.com/builds/acme/web-app:6113728f27ae82c7b1a177c8d03f9e96e0adf246", "registry.example.com/builds/acme/web-app:feature-Login_v2"},
			CacheTo:   "registry.example.com/builds/acme/web-app:cache-feature-Login_v2",
			CacheFrom: []string{"registry.example.com/builds/acme/web-app:cache-feature-Login_v2", "registry.example.com/builds/acme/web-app:cache-main"},
		}, ""},
		{"pull request", func(b *v1alpha1.Build) {
			b.Spec.Source.Event, b.Spec.Source.Ref, b.Spec.Source.Number, b.Spec.Source.BaseRef = v1alpha1.EventPullRequest, "refs/pull/12/head", 12, "release"
		}, Refs{
			Image:     "registry.example.com/builds/acme/web-app",
			Tags:      []string{"registry.example.com/builds/acme/web-app:6113728f27ae82c7b1a177c8d03f9e96e0adf246", "registry.example.com/builds/acme/web-app:pr-12"},
			CacheTo:   "registry.example.com/builds/acme/web-app:cache-pr-12",
			CacheFrom: []string{"registry.example.com/builds/acme/web-app:cache-pr-12", "registry.example.com/builds/acme/web-app:cache-release", "registry.example.com/builds/acme/web-app:cache-main"},
		}, ""},
		{"tag with templates", func(b *v1alpha1.Build) {
			b.Spec.Source.Event, b.Spec.Source.Ref = v1alpha1.EventTag, "refs/tags/v1.2.3"
			b.Spec.Target.Tags = []string{"{tag}", "{short_sha}", "release-{branch}", "{tag}"}
			b.Spec.Target.Image = "ghcr.io/acme/web"
		}, Refs{
			Image:     "ghcr.io/acme/web",
			Tags:      []string{"ghcr.io/acme/web:v1.2.3", "ghcr.io/acme/web:6113728"},
			CacheTo:   "ghcr.io/acme/web:cache-main",
			CacheFrom: []string{"ghcr.io/acme/web:cache-main"},
		}, ""},
		{"unknown placeholder", func(b *v1alpha1.Build) { b.Spec.Target.Tags = []string{"{shaa}"} }, Refs{}, "unknown placeholder {shaa}"},
		{"unclosed", func(b *v1alpha1.Build) { b.Spec.Target.Tags = []string{"{sha"} }, Refs{}, "unclosed"},
		{"no prefix, no image", nil, Refs{}, "no registry prefix"},
		{"uppercase image", func(b *v1alpha1.Build) { b.Spec.Target.Image = "registry.example.com/Acme/Web" }, Refs{}, "not a valid repository path component"},
		{"image without registry", func(b *v1alpha1.Build) { b.Spec.Target.Image = "acme/web" }, Refs{}, "must start with a registry host"},
		{"nothing applies", func(b *v1alpha1.Build) { b.Spec.Target.Tags = []string{"{tag}"} }, Refs{}, "no tag templates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "registry.example.com/builds"
			if tc.name == "no prefix, no image" {
				prefix = ""
			}
			got, err := ImageRefs(build(tc.mutate), prefix)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.Tags, ",") != strings.Join(tc.want.Tags, ",") || got.Image != tc.want.Image ||
				got.CacheTo != tc.want.CacheTo || strings.Join(got.CacheFrom, ",") != strings.Join(tc.want.CacheFrom, ",") {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzExpandTag: whatever the branch name and template, a tag that comes out is valid.
func FuzzExpandTag(f *testing.F) {
	f.Add("{branch}", "refs/heads/feature/x")
	f.Add("v-{short_sha}-{branch}", "refs/heads/..weird@{}")
	f.Fuzz(func(t *testing.T, tmpl, ref string) {
		s := &v1alpha1.Source{Ref: ref, Commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", Event: v1alpha1.EventPush}
		tag, err := ExpandTag(tmpl, s)
		if err == nil && tag != "" && !tagPattern.MatchString(tag) {
			t.Fatalf("invalid tag %q from %q / %q", tag, tmpl, ref)
		}
	})
}
