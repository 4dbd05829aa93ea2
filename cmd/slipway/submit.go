package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/submit"
)

// submitFailed carries a finished-but-unsuccessful build out as exit code 1 without the
// generic error prefix drowning the reason already printed.
type submitFailed struct{ phase, reason string }

func (e submitFailed) Error() string { return fmt.Sprintf("build %s: %s", e.phase, e.reason) }

func newSubmitCommand() *cobra.Command {
	var (
		kubeconfig, namespace string
		target                v1alpha1.Target
		buildArgs             []string
		timeout               string
		wait                  bool
	)
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Hand this CI job's commit to Slipway as a Build and follow it (the GitHub Action)",
		Long: `submit creates a Build for the commit of the running GitHub Actions job (GITHUB_REPOSITORY,
GITHUB_SHA, GITHUB_REF, ...) through the Kubernetes API, then waits for it and writes the step
outputs build, phase, reason, digest and image to $GITHUB_OUTPUT. It exits 1 if the build does
not succeed. Retrying the step attaches to the Build it already created.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The Action passes every input, empty ones as "--tag=": drop those.
			target.Tags = slices.DeleteFunc(target.Tags, func(s string) bool { return strings.TrimSpace(s) == "" })
			target.Platforms = slices.DeleteFunc(target.Platforms, func(s string) bool { return strings.TrimSpace(s) == "" })
			for _, a := range buildArgs {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" {
					return fmt.Errorf("--build-arg %q: want KEY=VALUE", a)
				}
				target.BuildArgs = append(target.BuildArgs, v1alpha1.BuildArg{Name: k, Value: v})
			}
			if timeout != "" {
				d, err := time.ParseDuration(timeout)
				if err != nil || d <= 0 {
					return fmt.Errorf("--timeout %q: want a positive duration such as 20m", timeout)
				}
				target.Timeout = &metav1.Duration{Duration: d}
			}
			b, err := submit.FromGitHubActions(os.Getenv, submit.Options{Namespace: namespace, Target: target}, time.Now())
			if err != nil {
				return err
			}
			// The Action passes the kubeconfig's content in the environment (never in argv,
			// which other processes can read).
			var restCfg *rest.Config
			if data := os.Getenv("SLIPWAY_KUBECONFIG_DATA"); data != "" {
				if restCfg, err = clientcmd.RESTConfigFromKubeConfig([]byte(data)); err != nil {
					return fmt.Errorf("SLIPWAY_KUBECONFIG_DATA: %w", err)
				}
			} else if restCfg, err = restConfig(kubeconfig); err != nil {
				return err
			}
			scheme := runtime.NewScheme()
			if err := v1alpha1.AddToScheme(scheme); err != nil {
				return err
			}
			c, err := client.NewWithWatch(restCfg, client.Options{Scheme: scheme})
			if err != nil {
				return fmt.Errorf("creating Kubernetes client: %w", err)
			}
			return runSubmit(cmd.Context(), cmd, c, b, wait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig allowed to create and watch Builds")
	f.StringVar(&namespace, "namespace", "slipway-builds", "Slipway's build namespace")
	f.StringVar(&target.Name, "target", "default", "target name (status context slipway/<target>)")
	f.StringVar(&target.Context, "context", ".", "build context, relative to the repository root")
	f.StringVar(&target.Dockerfile, "file", "Dockerfile", "Dockerfile, relative to the repository root")
	f.StringVar(&target.Stage, "stage", "", "Dockerfile stage to build")
	f.StringVar(&target.Image, "image", "", "image repository (default: Slipway's registry prefix + repository)")
	f.StringSliceVar(&target.Tags, "tag", nil, "tag templates: {sha} {short_sha} {branch} {tag} {pr}")
	f.StringSliceVar(&target.Platforms, "platform", nil, "platforms, e.g. linux/amd64")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "KEY=VALUE (never for secrets)")
	f.StringVar(&timeout, "timeout", "", "build timeout such as 20m (default: Slipway's)")
	f.BoolVar(&wait, "wait", true, "wait for the build to finish")
	return cmd
}

func runSubmit(ctx context.Context, cmd *cobra.Command, c client.WithWatch, b *v1alpha1.Build, wait bool) error {
	out := cmd.OutOrStdout()
	created, err := submit.Create(ctx, c, b)
	if err != nil {
		return err
	}
	verb := "created"
	if !created {
		verb = "attached to"
	}
	fmt.Fprintf(out, "%s build %s/%s for %s@%s\n", verb, b.Namespace, b.Name, b.Spec.Source.Repository, b.Spec.Source.Commit[:12])
	final := b
	if wait {
		final, err = submit.Follow(ctx, c, client.ObjectKeyFromObject(b), func(b *v1alpha1.Build) {
			if b.Status.Phase != "" {
				fmt.Fprintf(out, "%s %s %s\n", b.Status.Phase, b.Status.Reason, b.Status.Message)
			}
		})
		if err != nil {
			return err
		}
	}
	if path := os.Getenv("GITHUB_OUTPUT"); path != "" {
		if err := submit.WriteOutputs(path, submit.Outputs(final)); err != nil {
			return err
		}
	}
	if wait && final.Status.Phase != v1alpha1.PhaseSucceeded {
		return submitFailed{phase: string(final.Status.Phase), reason: final.Status.Reason}
	}
	if final.Status.Digest != "" {
		fmt.Fprintf(out, "image %s\n", submit.Outputs(final)["image"])
	}
	return nil
}
