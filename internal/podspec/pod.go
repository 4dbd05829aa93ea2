// Package podspec turns a Build and the cluster's settings into the build pod. It is a pure
// function so that the pod shape, which carries all of Slipway's security decisions, is
// reviewed as golden files rather than discovered at run time.
//
// The pod: rootless buildkitd as a native sidecar (an init container with restartPolicy
// Always, so the pod completes when the builder exits) and the `slipway build` container, which
// share the daemon's socket through an emptyDir. Both run as the same uid, so the socket (mode
// 0660, owned by the daemon's uid) is reachable without extra groups.
package podspec

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Shape is how BuildKit gets its privileges without privileged pods.
type Shape string

const (
	// ShapeUserNamespace: hostUsers false and an unmasked /proc, so BuildKit keeps its process
	// sandbox. Needs containerd 2 and a runc with user-namespace support on the node.
	ShapeUserNamespace Shape = "userns"
	// ShapeRootless: the classic rootless setup for nodes without user-namespaced pods; /proc
	// is masked, so RUN steps share the daemon's PID namespace.
	ShapeRootless Shape = "rootless"
)

// Paths inside the pod; the builder and BuildKit agree on them.
const (
	SocketDir       = "/run/buildkit"
	SocketAddr      = "unix://" + SocketDir + "/buildkitd.sock"
	BuildKitState   = "/home/user/.local/share/buildkit"
	WorkspaceDir    = "/workspace"
	GitTokenDir     = "/var/run/slipway/git"
	RegistryDir     = "/var/run/slipway/registry"
	GitTokenKey     = "token"
	BuilderName     = "build"
	BuildKitName    = "buildkitd"
	TerminationPath = "/dev/termination-log"
)

// BuildKitConfigDir is where rootless buildkitd reads buildkitd.toml ($XDG_CONFIG_HOME/buildkit,
// with HOME=/home/user in the BuildKit image); Settings.BuildKitConfigMap is mounted here.
const BuildKitConfigDir = "/home/user/.config/buildkit"

// UID is the user both containers run as; /etc/subuid in the BuildKit image is written for it.
const UID = 1000

// Settings are the cluster-wide knobs, from Slipway's configuration.
type Settings struct {
	Shape             Shape
	BuilderImage      string
	BuildKitImage     string
	ImagePullPolicy   corev1.PullPolicy
	BuilderResources  corev1.ResourceRequirements
	BuildKitResources corev1.ResourceRequirements
	NodeSelector      map[string]string
	Tolerations       []corev1.Toleration
	PriorityClassName string
	// DefaultTimeout bounds a build whose target sets none. It runs from the pod's start, not
	// from when the Build was queued.
	DefaultTimeout time.Duration
	// RegistryPrefix is prepended to repository paths for targets without an absolute image.
	RegistryPrefix string
	// InsecureRegistries may be reached over plain HTTP (test clusters only).
	InsecureRegistries []string
	// PushSecretName names a Secret of type kubernetes.io/dockerconfigjson with push
	// credentials, mounted into the builder only. Empty: push without credentials.
	PushSecretName string
	// BuildKitConfigMap names a ConfigMap in the build namespace that is mounted read-only into
	// the buildkitd sidecar at BuildKitConfigDir: its buildkitd.toml key is the daemon's
	// configuration, other keys are files it may refer to, e.g. a private registry's CA
	// ([registry."host:port"] ca = ["/home/user/.config/buildkit/ca.crt"]). Empty: no mount.
	BuildKitConfigMap string
}

// Validate reports settings that cannot produce a working pod.
func (s Settings) Validate() error {
	switch {
	case s.Shape != ShapeUserNamespace && s.Shape != ShapeRootless:
		return fmt.Errorf("shape %q: must be %q or %q", s.Shape, ShapeUserNamespace, ShapeRootless)
	case s.BuilderImage == "":
		return errors.New("builderImage: required")
	case s.BuildKitImage == "":
		return errors.New("buildkitImage: required")
	case s.DefaultTimeout <= 0:
		return errors.New("defaultTimeout: must be positive")
	}
	return nil
}

// Input is what a single pod needs beyond the Build itself.
type Input struct {
	Build *v1alpha1.Build
	Refs  Refs
	// GitTokenSecret names the per-build Secret with the clone token; empty for public repos.
	GitTokenSecret string
	// Push is false for builds that must not push (fork pull requests).
	Push bool
}

// Pod returns the build pod for in.Build. The pod is named after the Build and owned by it.
func Pod(in Input, s Settings) *corev1.Pod {
	b := in.Build
	timeout := s.DefaultTimeout
	if b.Spec.Target.Timeout != nil && b.Spec.Target.Timeout.Duration > 0 {
		timeout = b.Spec.Target.Timeout.Duration
	}
	deadline := int64(timeout.Seconds())
	uid := int64(UID)
	yes, no := true, false
	always := corev1.ContainerRestartPolicyAlways

	volumes := []corev1.Volume{
		emptyDir("buildkit-run", ""),
		// BuildKit's state must not sit on the container's overlay rootfs (overlay on overlay
		// fails rootless); an emptyDir per pod also means no sub-uid-owned leftovers.
		emptyDir("buildkit-state", ""),
		emptyDir("workspace", ""),
		emptyDir("tmp", ""),
	}
	builderMounts := []corev1.VolumeMount{
		{Name: "buildkit-run", MountPath: SocketDir},
		{Name: "workspace", MountPath: WorkspaceDir},
		{Name: "tmp", MountPath: "/tmp"},
	}
	// Secret files are 0440: the kubelet gives them the pod's fsGroup, the builder's group.
	if in.GitTokenSecret != "" {
		volumes = append(volumes, corev1.Volume{Name: "git-token", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: in.GitTokenSecret, DefaultMode: ptr(int32(0o440))},
		}})
		builderMounts = append(builderMounts, corev1.VolumeMount{Name: "git-token", MountPath: GitTokenDir, ReadOnly: true})
	}
	if in.Push && s.PushSecretName != "" {
		volumes = append(volumes, corev1.Volume{Name: "registry-auth", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{
				SecretName:  s.PushSecretName,
				DefaultMode: ptr(int32(0o440)),
				Items:       []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
			},
		}})
		builderMounts = append(builderMounts, corev1.VolumeMount{Name: "registry-auth", MountPath: RegistryDir, ReadOnly: true})
	}

	daemonMounts := []corev1.VolumeMount{
		{Name: "buildkit-run", MountPath: SocketDir},
		{Name: "buildkit-state", MountPath: BuildKitState},
	}
	if s.BuildKitConfigMap != "" {
		volumes = append(volumes, corev1.Volume{Name: "buildkit-config", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: s.BuildKitConfigMap}},
		}})
		daemonMounts = append(daemonMounts, corev1.VolumeMount{Name: "buildkit-config", MountPath: BuildKitConfigDir, ReadOnly: true})
	}

	daemonArgs := []string{"--addr", SocketAddr, "--oci-worker-snapshotter=overlayfs", "--containerd-worker=false"}
	daemonSC := &corev1.SecurityContext{
		RunAsUser:  &uid,
		RunAsGroup: &uid,
		// The runtime's default seccomp profile blocks the user namespaces rootlesskit makes,
		// and AppArmor's default profile blocks its mounts. No capabilities are added, and the
		// container is not privileged: newuidmap's file capabilities do the mapping.
		SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
	}
	var hostUsers *bool
	switch s.Shape {
	case ShapeUserNamespace:
		hostUsers = &no
		unmasked := corev1.UnmaskedProcMount
		daemonSC.ProcMount = &unmasked
	default:
		daemonArgs = append(daemonArgs, "--oci-worker-no-process-sandbox")
	}

	buildArgs := []string{"build",
		"--clone-url", b.Spec.Source.CloneURL,
		"--sha", b.Spec.Source.Commit,
		"--context", b.Spec.Target.Context,
		"--file", b.Spec.Target.Dockerfile,
		"--workdir", WorkspaceDir,
		"--buildkit-addr", SocketAddr,
		"--result-file", TerminationPath,
	}
	if b.Spec.Target.Stage != "" {
		buildArgs = append(buildArgs, "--target", b.Spec.Target.Stage)
	}
	for _, a := range b.Spec.Target.BuildArgs {
		buildArgs = append(buildArgs, "--build-arg", a.Name+"="+a.Value)
	}
	for _, p := range b.Spec.Target.Platforms {
		buildArgs = append(buildArgs, "--platform", p)
	}
	if !in.Push {
		buildArgs = append(buildArgs, "--no-push")
	}
	if in.Push {
		for _, t := range in.Refs.Tags {
			buildArgs = append(buildArgs, "--tag", t)
		}
		if in.Refs.CacheTo != "" {
			buildArgs = append(buildArgs, "--cache-to", in.Refs.CacheTo)
		}
	}
	for _, c := range in.Refs.CacheFrom {
		buildArgs = append(buildArgs, "--cache-from", c)
	}
	for _, r := range s.InsecureRegistries {
		buildArgs = append(buildArgs, "--insecure-registry", r)
	}
	if in.GitTokenSecret != "" {
		buildArgs = append(buildArgs, "--token-file", GitTokenDir+"/"+GitTokenKey)
	}
	if in.Push && s.PushSecretName != "" {
		buildArgs = append(buildArgs, "--docker-config", RegistryDir)
	}

	labels := map[string]string{
		LabelBuild:                b.Name,
		v1alpha1.LabelForge:       string(b.Spec.Source.Forge),
		v1alpha1.LabelTarget:      b.Spec.Target.Name,
		v1alpha1.LabelCommitShort: b.Spec.Source.Commit[:7],
		"app.kubernetes.io/name":  "slipway-build",
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      b.Name,
			Namespace: b.Namespace,
			Labels:    labels,
			Annotations: map[string]string{
				AnnotationCommit: b.Spec.Source.Commit,
				AnnotationRepo:   b.Spec.Source.Repository,
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b,
				schema.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version, Kind: "Build"})},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         &deadline,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			HostUsers:                     hostUsers,
			NodeSelector:                  s.NodeSelector,
			Tolerations:                   s.Tolerations,
			PriorityClassName:             s.PriorityClassName,
			TerminationGracePeriodSeconds: ptr(int64(30)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes,
				RunAsUser:    &uid,
				RunAsGroup:   &uid,
				FSGroup:      &uid,
			},
			InitContainers: []corev1.Container{{
				Name:            BuildKitName,
				Image:           s.BuildKitImage,
				ImagePullPolicy: s.ImagePullPolicy,
				RestartPolicy:   &always,
				Args:            daemonArgs,
				Resources:       s.BuildKitResources,
				SecurityContext: daemonSC,
				VolumeMounts:    daemonMounts,
				StartupProbe: &corev1.Probe{
					ProbeHandler:     execProbe("test", "-S", SocketDir+"/buildkitd.sock"),
					PeriodSeconds:    1,
					FailureThreshold: 120,
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:   execProbe("buildctl", "--addr", SocketAddr, "debug", "workers"),
					PeriodSeconds:  5,
					TimeoutSeconds: 3,
				},
			}},
			Containers: []corev1.Container{{
				Name:                     BuilderName,
				Image:                    s.BuilderImage,
				ImagePullPolicy:          s.ImagePullPolicy,
				Args:                     buildArgs,
				Resources:                s.BuilderResources,
				TerminationMessagePath:   TerminationPath,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				VolumeMounts:             builderMounts,
				Env:                      []corev1.EnvVar{{Name: "HOME", Value: "/tmp"}, {Name: "SLIPWAY_BUILD_NAME", Value: b.Name}},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot:             &yes,
					AllowPrivilegeEscalation: &no,
					ReadOnlyRootFilesystem:   &yes,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
			Volumes: volumes,
		},
	}
}

// Labels and annotations on build pods.
const (
	LabelBuild       = "slipway.dev/build"
	AnnotationCommit = "slipway.dev/commit"
	AnnotationRepo   = "slipway.dev/repository"
)

func emptyDir(name string, medium corev1.StorageMedium) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
}

func execProbe(cmd ...string) corev1.ProbeHandler {
	return corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}
}

func ptr[T any](v T) *T { return &v }
