// Package benchdoc is what the benchmark harnesses share: writing their table into a document
// between markers, so a re-run replaces its own section and leaves the prose around it alone.
package benchdoc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Write replaces the text between "<!-- bench:begin -->" and "<!-- bench:end -->" in path with
// a timestamp and report, or writes the report alone when the file has no markers.
func Write(path, report string) error {
	const begin, end = "<!-- bench:begin -->\n", "<!-- bench:end -->"
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return os.WriteFile(path, []byte(report), 0o644)
	}
	stamp := fmt.Sprintf("Measured %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	return os.WriteFile(path, []byte(s[:i+len(begin)]+stamp+report+s[j:]), 0o644)
}

// Seconds formats a duration the way every table shows it.
func Seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
