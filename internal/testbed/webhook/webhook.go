// Package webhook makes deliveries for tests and `make demo` from the official examples
// vendored in testdata/, rewritten to a repository the caller controls, so that every test
// feeds Slipway the shape of payload the forges really send.
package webhook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Example loads testdata/<forge>/webhooks/<file> as a JSON object.
func Example(forge, file string) (map[string]any, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("locating the webhook examples")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "..", "testdata", forge, "webhooks", file)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Repo is the GitHub repository and App installation an example is rewritten to.
type Repo struct {
	FullName, HTMLURL, CloneURL string
	Installation                int64
}

// GitHub loads a GitHub example, points its repository and installation at r (default branch
// main), applies edits in order and returns the body to sign and send.
func GitHub(file string, r Repo, edits ...func(map[string]any)) ([]byte, error) {
	m, err := Example("github", file)
	if err != nil {
		return nil, err
	}
	repo, ok := m["repository"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s has no repository", file)
	}
	repo["full_name"], repo["html_url"], repo["clone_url"], repo["default_branch"] = r.FullName, r.HTMLURL, r.CloneURL, "main"
	m["installation"] = map[string]any{"id": r.Installation}
	for _, edit := range edits {
		edit(m)
	}
	return json.Marshal(m)
}

// Push makes a push example a push of sha to branch main, from an unknown previous commit.
func Push(sha string) func(map[string]any) {
	return func(m map[string]any) {
		m["ref"], m["after"], m["before"], m["deleted"] = "refs/heads/main", sha, "0000000000000000000000000000000000000000", false
	}
}
