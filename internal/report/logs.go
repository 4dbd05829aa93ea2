package report

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// LogSource returns the last lines of a Build's log. The reporter puts them (redacted) in a
// failed check run's summary; the build page shows them while the pod exists.
type LogSource interface {
	// Tail returns at most n lines, oldest first, or nil when the log is gone.
	Tail(ctx context.Context, b *v1alpha1.Build, n int) ([]string, error)
}

// MaxLogLineLength cuts single log lines: a minified file echoed by a RUN step must not fill
// the summary.
const MaxLogLineLength = 1000

// PodLogs reads the builder container's log from the Kubernetes API.
type PodLogs struct {
	Client kubernetes.Interface
	// Container is the builder container's name (podspec.BuilderName).
	Container string
}

// Tail implements LogSource. A pod that no longer exists has no log: nil, no error.
func (p PodLogs) Tail(ctx context.Context, b *v1alpha1.Build, n int) ([]string, error) {
	if b.Status.PodName == "" || n <= 0 {
		return nil, nil
	}
	lines := int64(n)
	limit := int64(n * (MaxLogLineLength + 1) * 2)
	req := p.Client.CoreV1().Pods(b.Namespace).GetLogs(b.Status.PodName, &corev1.PodLogOptions{
		Container: p.Container, TailLines: &lines, LimitBytes: &limit,
	})
	rc, err := req.Stream(ctx)
	if apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) {
		return nil, nil // gone, or the container never started
	}
	if err != nil {
		return nil, fmt.Errorf("reading the log of pod %s/%s: %w", b.Namespace, b.Status.PodName, err)
	}
	defer rc.Close()
	out, err := readLines(rc, n)
	if err != nil {
		return nil, fmt.Errorf("reading the log of pod %s/%s: %w", b.Namespace, b.Status.PodName, err)
	}
	return out, nil
}

// readLines keeps the last n lines of r, each cut to MaxLogLineLength.
func readLines(r io.Reader, n int) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
		if len(out) > n {
			out = out[1:]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return nil, err
	}
	return out, nil
}

// secretPatterns match credentials that may appear in a build log however careful the builder
// is (it masks the values it knows; a RUN step can print others). Each keeps its first group
// and masks the rest.
var secretPatterns = []*regexp.Regexp{
	// GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_, and fine-grained github_pat_.
	regexp.MustCompile(`()\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`),
	// GitLab tokens.
	regexp.MustCompile(`()\b(?:glpat|gldt|glrt|glcbt|glptt|glft|glimt|glagent|gloas)-[A-Za-z0-9_\-]{16,}`),
	// Credentials in URLs: scheme://user:password@host.
	regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(@)`),
	// Authorization headers.
	regexp.MustCompile(`(?i)(authorization:\s*(?:bearer|basic|token)\s+)\S+`),
	// key=value and key: value with a secret-sounding key.
	regexp.MustCompile(`(?i)((?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)["']?\s*[=:]\s*["']?)[^\s"',;@]{4,}`),
	// AWS access key IDs.
	regexp.MustCompile(`()\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`),
	// PEM private keys (a line at a time: the header line marks the block).
	regexp.MustCompile(`(-----BEGIN [A-Z ]*PRIVATE KEY-----).*`),
}

// Redact masks credentials in log lines. It is a second line of defence: the builder already
// masks the values it was given; this catches well-known token shapes it could not know.
func Redact(lines []string) []string {
	out := make([]string, len(lines))
	inKey := false
	for i, l := range lines {
		if len(l) > MaxLogLineLength {
			l = l[:MaxLogLineLength] + "…"
		}
		switch {
		case strings.Contains(l, "-----END") && strings.Contains(l, "PRIVATE KEY-----"):
			inKey = false
			out[i] = "***"
			continue
		case inKey:
			out[i] = "***"
			continue
		case strings.Contains(l, "-----BEGIN") && strings.Contains(l, "PRIVATE KEY-----"):
			inKey = true
		}
		for _, re := range secretPatterns {
			l = re.ReplaceAllString(l, "${1}***${2}")
		}
		out[i] = l
	}
	return out
}
