package builder

import (
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/slipway-dev/slipway/internal/buildresult"
)

// Vertex names BuildKit uses for the export phases (exporter and cache exporter Name()), and the
// prefix of cache-import vertices.
const (
	vertexImageExport       = "exporting to image"
	vertexCacheExport       = "exporting cache to registry"
	vertexCacheImportPrefix = "importing cache manifest from "
)

// harmlessFailure reports vertices whose errors never fail a build: a cache ref that does not
// exist yet (every branch's first build) and a best-effort cache export.
func harmlessFailure(name string) bool {
	return name == vertexCacheExport || strings.HasPrefix(name, vertexCacheImportPrefix)
}

// stepName matches the vertices the Dockerfile frontend makes for instructions:
// "[2/3] COPY ...", "[build 4/5] RUN ...", "[stage-1 1/2] FROM ...". Internal vertices
// ("[internal] load ...", "[auth] ...", "exporting ...") are not steps.
var stepName = regexp.MustCompile(`^\[(?:[^\]]+ )?\d+/\d+\] `)

// isStep reports whether a vertex is a Dockerfile instruction.
func isStep(name string) bool { return stepName.MatchString(name) }

// Step is one Dockerfile instruction as the build saw it.
type Step struct {
	Name   string
	Cached bool
	// Done is false for steps that never completed (failed, canceled, or not needed).
	Done  bool
	Error string
}

type vertexState struct {
	name      string
	started   time.Time
	completed time.Time
	cached    bool
	err       string
	pulled    bool // layers were downloaded or extracted for this vertex
	logTail   []string
	partial   string
}

// tracker folds BuildKit's status stream into steps, phase spans and the failing vertex. It is
// fed from one goroutine and read after the stream ends.
type tracker struct {
	vertices map[digest.Digest]*vertexState
	order    []digest.Digest
}

func newTracker() *tracker { return &tracker{vertices: map[digest.Digest]*vertexState{}} }

const (
	logTailLines   = 8
	logLineMaxSize = 300
)

func (t *tracker) vertex(d digest.Digest) *vertexState {
	v, ok := t.vertices[d]
	if !ok {
		v = &vertexState{}
		t.vertices[d] = v
		t.order = append(t.order, d)
	}
	return v
}

func (t *tracker) update(s *client.SolveStatus) {
	for _, sv := range s.Vertexes {
		v := t.vertex(sv.Digest)
		if sv.Name != "" {
			v.name = sv.Name
		}
		// A vertex can be reported several times (the image exporter's finalize reuses its
		// vertex): keep the earliest start and the latest completion.
		if sv.Started != nil && (v.started.IsZero() || sv.Started.Before(v.started)) {
			v.started = *sv.Started
		}
		if sv.Completed != nil && sv.Completed.After(v.completed) {
			v.completed = *sv.Completed
		}
		if sv.Cached {
			v.cached = true
		}
		if sv.Error != "" {
			v.err = sv.Error
		}
	}
	for _, st := range s.Statuses {
		if isPullStatus(st.ID) {
			t.vertex(st.Vertex).pulled = true
		}
	}
	for _, l := range s.Logs {
		v := t.vertex(l.Vertex)
		text := v.partial + string(l.Data)
		lines := strings.Split(text, "\n")
		v.partial = lines[len(lines)-1]
		if len(v.partial) > logLineMaxSize {
			v.partial = v.partial[:logLineMaxSize]
		}
		for _, line := range lines[:len(lines)-1] {
			line = strings.TrimRight(line, "\r")
			if len(line) > logLineMaxSize {
				line = line[:logLineMaxSize]
			}
			v.logTail = append(v.logTail, line)
			if len(v.logTail) > logTailLines {
				v.logTail = v.logTail[len(v.logTail)-logTailLines:]
			}
		}
	}
}

// steps lists the Dockerfile instructions in the order BuildKit first reported them.
func (t *tracker) steps() []Step {
	var out []Step
	for _, d := range t.order {
		v := t.vertices[d]
		if !isStep(v.name) {
			continue
		}
		done := !v.completed.IsZero() && v.err == ""
		out = append(out, Step{Name: v.name, Cached: stepCached(v.name, v.cached, v.pulled, done), Done: done, Error: v.err})
	}
	return out
}

// fromStep matches a FROM instruction's vertex.
var fromStep = regexp.MustCompile(`^\[(?:[^\]]+ )?\d+/\d+\] FROM `)

// isPullStatus tells the statuses of a layer download ("sha256:...") or unpack ("extracting
// sha256:...") from the always-present "resolve ..." status.
func isPullStatus(id string) bool {
	return strings.HasPrefix(id, "sha256:") || strings.HasPrefix(id, "extracting ")
}

// stepCached decides whether a step cost no work. BuildKit marks a step cached when its result
// came from a cache, but never marks a FROM cached on a daemon that has not pulled the image
// before, even when nothing is pulled: with a registry cache hit the base layers are lazy and
// only the manifest is resolved. So a FROM that completed without downloading or extracting a
// layer counts as cached; one that had to pull does not.
func stepCached(name string, cached, pulled, done bool) bool {
	if cached {
		return true
	}
	return done && !pulled && fromStep.MatchString(name)
}

// countSteps counts the instructions the build needed and how many of them came from the cache.
// Steps BuildKit reported but never started or finished (after a failure) still count in Total.
func countSteps(steps []Step) buildresult.Steps {
	var s buildresult.Steps
	for _, st := range steps {
		s.Total++
		if st.Cached {
			s.Cached++
		}
	}
	return s
}

// span is the time from the first start to the last completion of the vertices named name.
func (t *tracker) span(name string) time.Duration {
	var start, end time.Time
	for _, v := range t.vertices {
		if v.name != name || v.started.IsZero() {
			continue
		}
		if start.IsZero() || v.started.Before(start) {
			start = v.started
		}
		if v.completed.After(end) {
			end = v.completed
		}
	}
	if start.IsZero() || end.Before(start) {
		return 0
	}
	return end.Sub(start)
}

// vertexError returns the error recorded on the vertex named name, if any.
func (t *tracker) vertexError(name string) string {
	for _, v := range t.vertices {
		if v.name == name && v.err != "" {
			return v.err
		}
	}
	return ""
}

// failed picks the vertex that failed the build: the earliest-completing vertex with an error
// that is not merely a consequence of cancellation (when one step fails, BuildKit cancels its
// siblings, which then report "context canceled").
func (t *tracker) failed() (name string, logTail []string) {
	type cand struct {
		v   *vertexState
		idx int
	}
	var cands []cand
	for i, d := range t.order {
		v := t.vertices[d]
		if v.err == "" || harmlessFailure(v.name) {
			continue
		}
		cands = append(cands, cand{v, i})
	}
	if len(cands) == 0 {
		return "", nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		ci, cj := isCancelMessage(cands[i].v.err), isCancelMessage(cands[j].v.err)
		if ci != cj {
			return !ci
		}
		a, b := cands[i].v.completed, cands[j].v.completed
		if !a.Equal(b) && !a.IsZero() && !b.IsZero() {
			return a.Before(b)
		}
		return cands[i].idx < cands[j].idx
	})
	v := cands[0].v
	tail := v.logTail
	if v.partial != "" {
		tail = append(append([]string(nil), tail...), v.partial)
	}
	return v.name, tail
}

func isCancelMessage(s string) bool {
	return strings.Contains(s, "context canceled") || strings.Contains(s, "canceled:")
}
