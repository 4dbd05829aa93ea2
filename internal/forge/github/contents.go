package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

// maxCompareFiles is how many files GitHub's compare API lists at most; a comparison that
// reaches it may be cut, so the changed files count as unknown.
const maxCompareFiles = 300

// Contents reads repository files and changes through the installation's API: it implements
// repoconfig.ConfigSource and repoconfig.ChangeSource.
type Contents struct {
	app *App
}

// NewContents returns a Contents that authenticates as app's installations.
func NewContents(app *App) (*Contents, error) {
	if app == nil {
		return nil, errors.New("reading repository contents needs a GitHub App")
	}
	return &Contents{app: app}, nil
}

// ReadFile implements repoconfig.ConfigSource with GET /repos/{owner}/{repo}/contents/{path}.
func (c *Contents) ReadFile(ctx context.Context, s *v1alpha1.Source, ref, path string) ([]byte, error) {
	cl, owner, repo, err := c.app.installationFor(s)
	if err != nil {
		return nil, err
	}
	file, dir, resp, err := cl.Repositories.GetContents(ctx, owner, repo, path, &gh.RepositoryContentGetOptions{Ref: ref})
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s of %s at %s: %w", path, s.Repository, ref, repoconfig.ErrNotFound)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("reading %s of %s at %s: %w", path, s.Repository, ref, err), resp, c.app.cfg.Now())
	}
	if file == nil || dir != nil {
		return nil, fmt.Errorf("%s of %s at %s is not a file", path, s.Repository, ref)
	}
	if file.GetSize() > repoconfig.MaxFileSize {
		return nil, fmt.Errorf("%s of %s at %s is %d bytes, more than %d", path, s.Repository, ref, file.GetSize(), repoconfig.MaxFileSize)
	}
	text, err := file.GetContent()
	if err != nil {
		return nil, fmt.Errorf("decoding %s of %s at %s: %w", path, s.Repository, ref, err)
	}
	return []byte(text), nil
}

// ChangedFiles implements repoconfig.ChangeSource with GET /repos/{owner}/{repo}/compare/{base}...{head}.
func (c *Contents) ChangedFiles(ctx context.Context, s *v1alpha1.Source, base, head string) ([]string, error) {
	cl, owner, repo, err := c.app.installationFor(s)
	if err != nil {
		return nil, err
	}
	cmp, resp, err := cl.Repositories.CompareCommits(ctx, owner, repo, base, head, nil)
	if err != nil {
		return nil, classify(fmt.Errorf("comparing %s...%s in %s: %w", base, short(head), s.Repository, err), resp, c.app.cfg.Now())
	}
	if len(cmp.Files) >= maxCompareFiles {
		return nil, nil
	}
	out := make([]string, 0, len(cmp.Files))
	for _, f := range cmp.Files {
		out = append(out, f.GetFilename())
		// A rename changes both places; a filter on the old directory must see it too.
		if prev := f.GetPreviousFilename(); prev != "" {
			out = append(out, prev)
		}
	}
	return out, nil
}
