// Command dev-apiserver runs the same real kube-apiserver and etcd the tests use, with the
// Build CRD installed, until interrupted, and writes an admin kubeconfig. It is the API server
// of the README's quickstart: `make dev-apiserver`, then `slipway serve --kubeconfig …`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/slipway-dev/slipway/internal/testbed/apiserver"
)

func main() {
	kubeconfig := flag.String("write-kubeconfig", filepath.Join(os.TempDir(), "slipway-dev", "kubeconfig"), "where to write the admin kubeconfig")
	flag.Parse()
	if err := run(*kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "dev-apiserver:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := apiserver.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding an admin user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("API server at %s with the Build CRD installed.\nexport KUBECONFIG=%s\nPress Ctrl-C to stop.\n", env.Config.Host, kubeconfig)
	<-ctx.Done()
	return nil
}
