// Command slipway is the single binary of Slipway: `serve` runs webhook intake (and later the
// controller and reporter), `build` runs inside a build pod next to rootless BuildKit.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/version"
)

func main() {
	// SIGTERM is how Kubernetes stops both the server (drain) and the builder (cancel), so every
	// subcommand sees it as context cancellation.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipway:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "slipway",
		Short:         "Build container images in your own Kubernetes cluster when code is pushed",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// One file per subcommand: serve.go, build.go, submit.go.
	root.AddCommand(newVersionCommand(), newServeCommand(), newBuildCommand(), newSubmitCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.Version)
			return err
		},
	}
}

// exitCoder lets a subcommand choose its process exit code (the builder's codes are a contract
// with the controller).
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
