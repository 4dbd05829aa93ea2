package gitserver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenAuthAndFetchBySHA(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	ctx := context.Background()
	s, err := Start(t.TempDir(), "tok-123456")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sha1, err := s.NewRepo(ctx, "r", map[string]string{"a.txt": "one\n", "bin/run.sh*": "#!/bin/sh\n"})
	if err != nil {
		t.Fatal(err)
	}
	sha2, err := s.Commit(ctx, "r", map[string]string{"b.txt": "two\n"}, []string{"a.txt"})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(header, sha string) (string, error) {
		dir := t.TempDir()
		cmd := exec.Command("sh", "-c", `git init -q . && git -c http.extraHeader="$H" fetch -q --depth=1 "$U" "$S" && git checkout -q FETCH_HEAD && ls -R`)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "H="+header, "U="+s.RepoURL("r"), "S="+sha, "GIT_TERMINAL_PROMPT=0",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err == nil {
			if fi, err := os.Stat(filepath.Join(dir, "bin", "run.sh")); err != nil || fi.Mode()&0o100 == 0 {
				t.Errorf("bin/run.sh is not executable: %v", err)
			}
		}
		return string(out), err
	}
	if out, err := fetch("Authorization: Bearer tok-123456", sha1); err != nil || !strings.Contains(out, "a.txt") {
		t.Errorf("bearer fetch of the first commit: %v\n%s", err, out)
	}
	// Basic auth with any user name, token as password (eDp0b2stMTIzNDU2 is "x:tok-123456").
	if out, err := fetch("Authorization: Basic eDp0b2stMTIzNDU2", sha2); err != nil || strings.Contains(out, "a.txt") || !strings.Contains(out, "b.txt") {
		t.Errorf("basic fetch of the second commit: %v\n%s", err, out)
	}
	_, deniedBefore := s.Requests()
	if out, err := fetch("Authorization: Bearer wrong", sha1); err == nil {
		t.Errorf("a wrong token was accepted:\n%s", out)
	}
	if _, denied := s.Requests(); denied <= deniedBefore {
		t.Error("the refusal was not counted")
	}
}

func TestStartOnAddress(t *testing.T) {
	s, err := StartOn("127.0.0.1:0", t.TempDir(), "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || strings.HasSuffix(s.URL, ":0") {
		t.Errorf("URL %q, want the bound loopback address and port", s.URL)
	}
}
