// Package gitserver is a real git smart-HTTP server for tests, on loopback unless told otherwise:
// `git http-backend` behind a small handler that demands a token, like a forge's short-lived clone
// token.
//
// The token is accepted as HTTP basic auth (any user name, token as password, which is how git
// sends `https://x-access-token:TOKEN@host/...` and an `http.extraHeader` Authorization header) or
// as a bearer token. Repositories are created by the test with NewRepo and Commit.
package gitserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Server serves the bare repositories under its root directory.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234; repositories are at URL/NAME.git.
	URL string

	root     string
	token    string
	check    atomic.Pointer[func(token, repo string) bool]
	srv      *http.Server
	done     chan struct{}
	requests atomic.Int64
	denied   atomic.Int64
}

// Start serves git repositories from root (created if missing) on a free loopback port. Every
// request must carry token. Stop the server with Close.
func Start(root, token string) (*Server, error) {
	return StartOn("127.0.0.1:0", root, token)
}

// StartOn is Start on the address addr (host:port, port 0 for a free one). End-to-end tests
// bind the test cluster's bridge gateway (e.g. 10.244.0.1:0), which build pods reach as their
// default gateway; never bind a wildcard or an outside interface.
func StartOn(addr, root, token string) (*Server, error) {
	if token == "" {
		return nil, errors.New("starting git server: empty token")
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("starting git server: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("starting git server: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting git server: %w", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), root: root, token: token, done: make(chan struct{})}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			// The builder fetches one commit by SHA; allow wants for any reachable object, as
			// GitHub and GitLab do.
			"GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=uploadpack.allowReachableSHA1InWant", "GIT_CONFIG_VALUE_0=true",
			"GIT_CONFIG_KEY_1=uploadpack.allowFilter", "GIT_CONFIG_VALUE_1=true",
		},
	}
	s.srv = &http.Server{Handler: s.auth(backend), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Requests reports how many requests arrived and how many were refused for a bad token.
func (s *Server) Requests() (total, denied int64) { return s.requests.Load(), s.denied.Load() }

// RepoURL is the clone URL of the repository name.
func (s *Server) RepoURL(name string) string { return s.URL + "/" + name + ".git" }

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if !s.authorized(r) {
			s.denied.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="slipway-test-git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	var got string
	switch {
	case strings.HasPrefix(h, "Bearer "):
		got = strings.TrimPrefix(h, "Bearer ")
	case strings.HasPrefix(h, "Basic "):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil {
			return false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return false
		}
		got = pass
	default:
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1 {
		return true
	}
	if check := s.check.Load(); check != nil {
		repo, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), ".git/")
		return (*check)(got, repo)
	}
	return false
}

// SetTokenCheck also accepts tokens for which check(token, repo) is true, repo being the
// repository's path without ".git": e.g. tokens a fake forge minted for that repository.
func (s *Server) SetTokenCheck(check func(token, repo string) bool) { s.check.Store(&check) }

// NewRepo creates the bare repository name with one commit holding files (path → content; a path
// ending in "*" is written executable without the star) on branch main, and returns that
// commit's SHA.
func (s *Server) NewRepo(ctx context.Context, name string, files map[string]string) (string, error) {
	bare := filepath.Join(s.root, name+".git")
	if _, err := os.Stat(bare); err == nil {
		return "", fmt.Errorf("creating repository %s: already exists", name)
	}
	if _, err := git(ctx, "", "init", "-q", "--bare", "-b", "main", bare); err != nil {
		return "", fmt.Errorf("creating repository %s: %w", name, err)
	}
	return s.Commit(ctx, name, files, nil)
}

// Commit adds a commit on main to repository name that writes files and deletes the paths in
// remove, and returns its SHA.
func (s *Server) Commit(ctx context.Context, name string, files map[string]string, remove []string) (string, error) {
	bare := filepath.Join(s.root, name+".git")
	work, err := os.MkdirTemp("", "gitserver-work-")
	if err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	defer os.RemoveAll(work)
	if _, err := git(ctx, work, "clone", "-q", bare, "."); err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	if _, err := git(ctx, work, "checkout", "-q", "-B", "main"); err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		mode := os.FileMode(0o644)
		dst := p
		if strings.HasSuffix(p, "*") {
			dst, mode = strings.TrimSuffix(p, "*"), 0o755
		}
		full := filepath.Join(work, filepath.FromSlash(dst))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", fmt.Errorf("committing to %s: %w", name, err)
		}
		if err := os.WriteFile(full, []byte(files[p]), mode); err != nil {
			return "", fmt.Errorf("committing to %s: %w", name, err)
		}
		if err := os.Chmod(full, mode); err != nil {
			return "", fmt.Errorf("committing to %s: %w", name, err)
		}
	}
	for _, p := range remove {
		if _, err := git(ctx, work, "rm", "-q", "-r", "--", p); err != nil {
			return "", fmt.Errorf("committing to %s: %w", name, err)
		}
	}
	if _, err := git(ctx, work, "add", "-A"); err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	if _, err := git(ctx, work, "commit", "-q", "--allow-empty", "-m", "test commit"); err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	if _, err := git(ctx, work, "push", "-q", "origin", "main"); err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	sha, err := git(ctx, work, "rev-parse", "HEAD")
	if err != nil {
		return "", fmt.Errorf("committing to %s: %w", name, err)
	}
	return strings.TrimSpace(sha), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Slipway Test", "GIT_AUTHOR_EMAIL=test@slipway.invalid",
		"GIT_COMMITTER_NAME=Slipway Test", "GIT_COMMITTER_EMAIL=test@slipway.invalid",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
