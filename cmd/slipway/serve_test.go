package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge/github"
	"github.com/slipway-dev/slipway/internal/testbed/apiserver"
	"github.com/slipway-dev/slipway/internal/testbed/syncbuf"
)

var env *apiserver.Env

func TestMain(m *testing.M) {
	os.Exit(apiserver.RunTests(m, func(e *apiserver.Env) { env = e }))
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeEndToEnd runs the real `serve` wiring against the real API server: a signed
// delivery becomes a Build, health and metrics answer, and SIGTERM (context cancel) drains a
// delivery that is still being received instead of dropping it.
func TestServeEndToEnd(t *testing.T) {
	c := serveConfig(t, nil)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, mgr, err := newServer(ctx, c, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	active := make(chan struct{}, 16)
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateActive {
			active <- struct{}{}
		}
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, mgr, ln, log) }()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}

	body, err := os.ReadFile("../../testdata/github/webhooks/push.none.4.json")
	if err != nil {
		t.Fatal(err)
	}
	post := func(delivery string, r io.Reader) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, base+"/hooks/github", r)
		req.Header.Set(github.HeaderEvent, "push")
		req.Header.Set(github.HeaderDelivery, delivery)
		req.Header.Set(github.HeaderSignature256, github.Sign([]byte("s3cret"), body))
		req.ContentLength = int64(len(body))
		return http.DefaultClient.Do(req)
	}
	resp, err := post("serve-1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delivery: %d", resp.StatusCode)
	}
	// The controller (leader-elected, in the same process) turns the Build into a pod.
	eventually(t, "the controller creates the pod", func() bool {
		var pods corev1.PodList
		return env.Client.List(context.Background(), &pods, client.InNamespace(ns.Name)) == nil && len(pods.Items) == 1
	})

	// Start a delivery whose body is still arriving, then stop the server.
	drain(active)
	pr, pw := io.Pipe()
	type result struct {
		code int
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := post("serve-2", pr)
		if err != nil {
			slow <- result{err: err}
			return
		}
		resp.Body.Close()
		slow <- result{code: resp.StatusCode}
	}()
	if _, err := pw.Write(body[:100]); err != nil {
		t.Fatal(err)
	}
	select { // the slow request has reached the server
	case <-active:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow delivery never reached the server")
	}
	cancel()
	eventually(t, "the listener is closed (the open request is not)", func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if _, err := pw.Write(body[100:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if r := <-slow; r.err != nil || r.code != http.StatusAccepted {
		t.Fatalf("in-flight delivery during shutdown: %+v", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}

	var l v1alpha1.BuildList
	if err := env.Client.List(context.Background(), &l, client.InNamespace(ns.Name)); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 2 {
		t.Fatalf("%d Builds, want 2", len(l.Items))
	}
	for _, want := range []string{`"delivery":"serve-1"`, `"outcome":"created"`, `"repo":"Codertocat/Hello-World"`, `"msg":"draining"`, `"to":"Pending"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func drain(c chan struct{}) {
	for len(c) > 0 {
		<-c
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", writeFile(t, dir, "a.yaml", []byte("lisen: :1\n"))}, `unknown field "lisen"`},
		{"no forge", []string{"--listen", "127.0.0.1:0"}, "configure at least one forge"},
		{"flag overrides file", []string{"--config", writeFile(t, dir, "b.yaml", []byte("namespace: ok\ngithub: {webhookSecretFile: /x}\n")), "--namespace", "Bad_NS"}, "namespace:"},
		{"missing secret file", []string{"--controller=false", "--github-webhook-secret-file", filepath.Join(dir, "none")}, "github.webhookSecretFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCommand()
			cmd.SetArgs(append([]string{"serve", "--kubeconfig", "/nonexistent"}, tc.args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
