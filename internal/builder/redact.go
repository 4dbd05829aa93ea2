package builder

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"sync"
)

// minSecretLen is the shortest value the redactor masks: masking every "a" or "12" would destroy
// the log without protecting anything.
const minSecretLen = 4

const redacted = "***"

// redactor masks secret values (clone token, registry passwords, build secret contents) in
// everything the builder prints or reports. It is the last line of defence: the design already
// keeps those values away from BuildKit's logs, but a RUN step may still echo a mounted secret.
type redactor struct {
	secrets []string // longest first, so a secret containing another is masked whole
}

func newRedactor(values ...string) *redactor {
	seen := map[string]bool{}
	var s []string
	add := func(v string) {
		if len(v) >= minSecretLen && !seen[v] {
			seen[v] = true
			s = append(s, v)
		}
	}
	for _, v := range values {
		add(v)
		add(strings.TrimSpace(v))
		// A multi-line secret (a key file) may be printed line by line.
		for line := range strings.SplitSeq(v, "\n") {
			add(strings.TrimSpace(line))
		}
	}
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return &redactor{secrets: s}
}

func (r *redactor) String(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// Writer returns a line-buffered writer that masks secrets before writing to w. Masking whole
// lines means a secret split across two Write calls is still found; Flush writes a final partial
// line.
func (r *redactor) Writer(w io.Writer) *redactWriter { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r   *redactor
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

// maxPending bounds the buffered partial line; progress output is line-oriented, so this only
// matters for a step that prints megabytes without a newline.
const maxPending = 64 << 10

func (rw *redactWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.buf = append(rw.buf, p...)
	i := bytes.LastIndexByte(rw.buf, '\n')
	if i < 0 && len(rw.buf) < maxPending {
		return len(p), nil
	}
	cut := i + 1
	if i < 0 {
		cut = len(rw.buf)
	}
	out := rw.r.String(string(rw.buf[:cut]))
	rw.buf = append(rw.buf[:0], rw.buf[cut:]...)
	if _, err := io.WriteString(rw.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes any buffered partial line.
func (rw *redactWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if len(rw.buf) == 0 {
		return nil
	}
	out := rw.r.String(string(rw.buf))
	rw.buf = rw.buf[:0]
	_, err := io.WriteString(rw.w, out)
	return err
}
