package buildkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var bed Lazy

func TestMain(m *testing.M) { os.Exit(bed.Run(m)) }

// TestSocketRule checks the documented rule for a client running as another user: it needs the
// daemon user's group (the socket is 0660 daemon-uid:daemon-gid); being another uid is not enough.
func TestSocketRule(t *testing.T) {
	b := bed.Get(t)
	buildctl := b.Buildctl
	if _, err := os.Stat(buildctl); err != nil {
		t.Fatalf("buildctl: %v", err)
	}
	run := func(groups string) (string, error) {
		args := []string{"--reuid=65534", "--regid=65534"}
		if groups == "" {
			args = append(args, "--clear-groups")
		} else {
			args = append(args, "--groups="+groups)
		}
		args = append(args, buildctl, "--addr", b.Addr, "debug", "workers")
		out, err := exec.Command("setpriv", args...).CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("a client outside the group reached the daemon: %v\n%s", err, out)
	}
	out, err = run(fmt.Sprint(b.SocketGID))
	if err != nil {
		t.Errorf("a client with the daemon's group could not reach it: %v\n%s", err, out)
	}
}

// TestFreshDaemonLifecycle starts and stops an extra daemon and checks that its sub-uid-owned
// state is gone afterwards and that nothing it started survives.
func TestFreshDaemonLifecycle(t *testing.T) {
	b := bed.Get(t)
	ctx := context.Background()
	d, err := b.StartDaemon(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(d.StateDir())
	pid, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(d.Addr, "unix://")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %o, want 660", fi.Mode().Perm())
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("daemon dir still there after stop --purge: %v", err)
	}
	var p int
	fmt.Sscan(string(pid), &p)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("rootlesskit pid %d still running", p)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The main daemon is unaffected.
	buildctl := b.Buildctl
	if out, err := exec.Command(buildctl, "--addr", b.Addr, "debug", "workers").CombinedOutput(); err != nil {
		t.Errorf("main daemon: %v\n%s", err, out)
	}
}
