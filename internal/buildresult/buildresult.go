// Package buildresult is the contract between `slipway build` (the builder container) and the
// controller that reads the build pod's termination message.
//
// It is deliberately free of dependencies (standard library only) so that the controller can decode
// a result without linking the BuildKit client.
//
// Wire format: one compact JSON object, at most MaxEncodedSize bytes, written to the result file
// (in a pod, /dev/termination-log, which the kubelet cuts at 4096 bytes) and printed as the last line
// of stdout. Durations are integer milliseconds: they are compact, exact enough for build timings, and
// easy to read from any language (Go duration strings would need a parser on the other side).
//
//	{"outcome":"BuildFailed","tags":["reg/app:sha"],
//	 "timings":{"daemon":310,"fetch":120,"solve":5400},
//	 "steps":{"total":7,"cached":3},
//	 "failure":{"step":"[build 4/5] RUN make","line":9,"exitCode":2,"message":"..."}}
package buildresult

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxEncodedSize bounds Encode's output. The kubelet keeps at most 4096 bytes of a termination
// message; staying below that with room for a trailing newline means the controller never sees a
// cut-off object.
const MaxEncodedSize = 4000

// Outcome says how a build ended. The failure values are the Build's failure reasons in the design
// (Failed.reason), so the controller can copy them without a mapping table.
type Outcome string

// Outcomes. Every outcome has exactly one exit code (see ExitCode).
const (
	Succeeded         Outcome = "Succeeded"
	DaemonUnavailable Outcome = "DaemonUnavailable"
	SourceFailed      Outcome = "SourceFailed"
	ConfigInvalid     Outcome = "ConfigInvalid"
	BuildFailed       Outcome = "BuildFailed"
	PushFailed        Outcome = "PushFailed"
	Canceled          Outcome = "Canceled"
	// InternalError is a bug or an unexpected local failure in the builder itself (for example the
	// result file cannot be written). It has the generic exit code 1.
	InternalError Outcome = "InternalError"
)

// Process exit codes of `slipway build`. They are a contract: the controller falls back to them when
// the termination message is missing or unreadable. 1 stays the generic failure and 2 is left to flag
// parsing conventions, so the specific codes start at 10.
const (
	ExitSucceeded         = 0
	ExitInternalError     = 1
	ExitDaemonUnavailable = 10
	ExitSourceFailed      = 11
	ExitConfigInvalid     = 12
	ExitBuildFailed       = 13
	ExitPushFailed        = 14
	ExitCanceled          = 15
)

var exitCodes = map[Outcome]int{
	Succeeded:         ExitSucceeded,
	InternalError:     ExitInternalError,
	DaemonUnavailable: ExitDaemonUnavailable,
	SourceFailed:      ExitSourceFailed,
	ConfigInvalid:     ExitConfigInvalid,
	BuildFailed:       ExitBuildFailed,
	PushFailed:        ExitPushFailed,
	Canceled:          ExitCanceled,
}

// Known reports whether o is one of the outcomes above. Decode keeps unknown outcomes (a newer
// builder may add one) so callers decide how to treat them.
func (o Outcome) Known() bool {
	_, ok := exitCodes[o]
	return ok
}

// ExitCode is the process exit code for o; unknown outcomes map to the generic 1.
func (o Outcome) ExitCode() int {
	if c, ok := exitCodes[o]; ok {
		return c
	}
	return ExitInternalError
}

// OutcomeForExitCode maps a process exit code back to an outcome, for when only the exit code
// survived (the pod was OOM-killed before writing, or the message was lost). ok is false for codes
// the builder never uses on purpose.
func OutcomeForExitCode(code int) (o Outcome, ok bool) {
	for o, c := range exitCodes {
		if c == code {
			return o, true
		}
	}
	return "", false
}

// Result is what the builder reports. Zero values are omitted on the wire.
type Result struct {
	Outcome Outcome  `json:"outcome"`
	Digest  string   `json:"digest,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Timings Timings  `json:"timings"`
	Steps   Steps    `json:"steps"`
	Failure *Failure `json:"failure,omitempty"`
	// Warnings are short, non-fatal notes (e.g. "cache export failed"). They are the first thing
	// dropped when the result is too large.
	Warnings []string `json:"warnings,omitempty"`
}

// Timings are wall-clock durations in milliseconds of the builder's phases. Push and CacheExport
// run in parallel inside BuildKit, so the phases may overlap; Solve excludes neither.
type Timings struct {
	Daemon      int64 `json:"daemon,omitempty"`
	Fetch       int64 `json:"fetch,omitempty"`
	Solve       int64 `json:"solve,omitempty"`
	Push        int64 `json:"push,omitempty"`
	CacheExport int64 `json:"cacheExport,omitempty"`
}

// Steps counts Dockerfile instructions (BuildKit vertices named like "[stage 2/5] RUN ..."), not
// BuildKit's internal vertices.
type Steps struct {
	Total  int `json:"total"`
	Cached int `json:"cached"`
}

// Failure describes why a build did not succeed.
type Failure struct {
	// Step is the name of the failing step as BuildKit shows it, e.g. "[build 3/4] RUN make".
	Step string `json:"step,omitempty"`
	// Line is the 1-based Dockerfile line that BuildKit attributes the error to, 0 if unknown.
	Line int `json:"line,omitempty"`
	// ExitCode is the failing RUN process's exit code (not the builder's), 0 if none.
	ExitCode int `json:"exitCode,omitempty"`
	// Message is a human-readable, secret-free explanation; it is truncated to fit the size limit.
	Message string `json:"message,omitempty"`
}

// Encode returns the compact JSON form of r, never longer than MaxEncodedSize bytes and without a
// trailing newline. To fit, it drops warnings, then shortens the failure message, the step name and
// the tag list, in that order; the outcome, digest, timings and counts always survive.
func Encode(r Result) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding build result: %w", err)
	}
	if len(b) <= MaxEncodedSize {
		return b, nil
	}
	r.Warnings = nil
	if r.Failure != nil {
		f := *r.Failure
		r.Failure = &f
	}
	r.Tags = append([]string(nil), r.Tags...)
	for range 64 { // each round shrinks something; the bound only guards against a logic error
		b, err = json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encoding build result: %w", err)
		}
		excess := len(b) - MaxEncodedSize
		if excess <= 0 {
			return b, nil
		}
		switch {
		case r.Failure != nil && r.Failure.Message != "":
			r.Failure.Message = shorten(r.Failure.Message, excess)
		case r.Failure != nil && r.Failure.Step != "":
			r.Failure.Step = shorten(r.Failure.Step, excess)
		case len(r.Tags) > 0:
			// Drop tags from the end until their wire size (quotes and comma included) covers the
			// excess; the first tags are the ones the build was asked for first.
			for freed := 0; freed < excess && len(r.Tags) > 0; r.Tags = r.Tags[:len(r.Tags)-1] {
				freed += len(r.Tags[len(r.Tags)-1]) + 3
			}
		default:
			// Only an absurd digest or outcome can get here: keep the part the controller needs.
			r = Result{Outcome: r.Outcome, Timings: r.Timings, Steps: r.Steps}
			if len(r.Outcome) > 64 {
				r.Outcome = InternalError
			}
		}
	}
	return nil, errors.New("encoding build result: could not fit the size limit")
}

const ellipsis = "…"

// shorten drops at least excess encoded bytes from the end of s (more, because JSON escaping can
// make a character longer on the wire than in s), on a rune boundary, and marks the cut.
func shorten(s string, excess int) string {
	// Every byte of s costs at least one byte on the wire, so cutting excess+len(ellipsis) bytes
	// frees at least excess wire bytes after the ellipsis is added. The caller re-checks anyway.
	keep := len(s) - excess - len(ellipsis)
	if keep <= 0 {
		return ""
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + ellipsis
}

// Decode reads a result from a termination message or a log tail. It tolerates surrounding
// garbage: with several lines (terminationMessagePolicy FallbackToLogsOnError gives the log tail)
// it uses the last line that is a JSON object with an outcome. It never panics; it returns an error
// when no such object is found.
func Decode(data []byte) (Result, error) {
	lines := bytes.Split(data, []byte("\n"))
	var lastErr error
	for i := len(lines) - 1; i >= 0; i-- {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r Result
		if err := json.Unmarshal(line, &r); err != nil {
			lastErr = err
			continue
		}
		if r.Outcome == "" {
			lastErr = errors.New("object has no outcome")
			continue
		}
		return r, nil
	}
	if lastErr != nil {
		return Result{}, fmt.Errorf("decoding build result: %w", lastErr)
	}
	return Result{}, errors.New("decoding build result: no JSON object found")
}

// Summary is a one-line human description, e.g. for a Build condition message.
func (r Result) Summary() string {
	var b strings.Builder
	b.WriteString(string(r.Outcome))
	if r.Failure != nil {
		if r.Failure.Step != "" {
			fmt.Fprintf(&b, " at %s", r.Failure.Step)
		}
		if r.Failure.Line > 0 {
			fmt.Fprintf(&b, " (Dockerfile line %d)", r.Failure.Line)
		}
		if r.Failure.ExitCode != 0 {
			fmt.Fprintf(&b, ", exit code %d", r.Failure.ExitCode)
		}
		if r.Failure.Message != "" {
			fmt.Fprintf(&b, ": %s", r.Failure.Message)
		}
	}
	return b.String()
}
