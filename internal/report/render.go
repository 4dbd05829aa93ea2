package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// Failure reasons that are the author's to fix; every other reason of a failed Build is
// Slipway's or the cluster's (forge.StateErrored), so that a GitHub status says "error" rather
// than blaming the commit.
var authorReasons = map[string]bool{"BuildFailed": true, "ConfigInvalid": true, "OOMKilled": true}

// StateOf maps a Build to the forge-neutral state to report. deleted means the Build is being
// deleted: a Build deleted before it finished is reported canceled, so no commit is left
// pending forever.
func StateOf(b *v1alpha1.Build, deleted bool) forge.State {
	switch p := b.Status.Phase; {
	case p == v1alpha1.PhaseSucceeded:
		return forge.StateSucceeded
	case p == v1alpha1.PhaseCanceled:
		return forge.StateCanceled
	case p == v1alpha1.PhaseFailed && b.Status.Reason == "DeadlineExceeded":
		return forge.StateTimedOut
	case p == v1alpha1.PhaseFailed && authorReasons[b.Status.Reason]:
		return forge.StateFailed
	case p == v1alpha1.PhaseFailed:
		return forge.StateErrored
	case deleted:
		return forge.StateCanceled
	case p == v1alpha1.PhaseRunning:
		return forge.StateRunning
	}
	return forge.StatePending
}

// Context is what the forge shows as the status or check name.
func Context(b *v1alpha1.Build) string {
	if b.IsTrigger() {
		// Only a trigger whose config is invalid is reported; it has no target yet.
		return "slipway/config"
	}
	name := b.Spec.Target.Name
	if name == "" {
		name = "default"
	}
	return "slipway/" + name
}

// Description is the one line a commit status shows (at most forge.MaxDescription characters).
func Description(b *v1alpha1.Build, s forge.State, deleted bool) string {
	st := &b.Status
	var d string
	switch s {
	case forge.StatePending:
		switch st.Phase {
		case v1alpha1.PhaseQueued:
			d = "Queued: waiting for a build slot"
		case v1alpha1.PhasePending:
			d = "Starting the build pod"
		default:
			d = "Accepted, waiting to start"
		}
	case forge.StateRunning:
		d = "Building"
	case forge.StateSucceeded:
		d = "Built"
		if sd := shortDigest(st.Digest); sd != "" {
			d += " " + sd
		}
		if dur := buildDuration(b); dur > 0 {
			d += " in " + humanDuration(dur)
		}
		if b.Spec.Source.Fork {
			d += " (not pushed: fork)"
		}
	case forge.StateTimedOut:
		d = "Timed out"
		if t := b.Spec.Target.Timeout; t != nil {
			d += " after " + humanDuration(t.Duration)
		}
	case forge.StateCanceled:
		switch {
		case st.Phase == v1alpha1.PhaseCanceled && st.SupersededBy != "":
			d = "Canceled: superseded by a newer build"
		case st.Phase == v1alpha1.PhaseCanceled:
			d = "Canceled: " + orDefault(st.Message, "stopped before it finished")
		case deleted:
			d = "Canceled: the build was deleted before it finished"
		default:
			d = "Canceled"
		}
	case forge.StateFailed, forge.StateErrored:
		d = failureLine(b)
	}
	return forge.TruncateRunes(singleLine(d), forge.MaxDescription)
}

func failureLine(b *v1alpha1.Build) string {
	st := &b.Status
	if f := st.Failure; f != nil && f.Step != "" {
		s := "Failed at " + f.Step
		if f.ExitCode != 0 {
			s += fmt.Sprintf(" (exit %d)", f.ExitCode)
		}
		return s
	}
	reason := orDefault(st.Reason, "Failed")
	if st.Message != "" {
		return reason + ": " + st.Message
	}
	return reason
}

// Title is a check run's one-line title.
func Title(b *v1alpha1.Build, s forge.State) string {
	switch s {
	case forge.StatePending:
		return "Queued"
	case forge.StateRunning:
		return "Building"
	case forge.StateSucceeded:
		if sd := shortDigest(b.Status.Digest); sd != "" {
			return "Built " + sd
		}
		return "Built"
	case forge.StateTimedOut:
		return "Timed out"
	case forge.StateCanceled:
		return "Canceled"
	}
	return "Failed: " + orDefault(b.Status.Reason, "unknown reason")
}

// timingRows orders the Build's timings as the build happened; labels are what a person reads.
var timingRows = []struct{ key, label string }{
	{"queued", "Queue"},
	{"schedule", "Schedule"},
	{"imagePull", "Image pull"},
	{"daemonStart", "Daemon start"},
	{"daemonWait", "Daemon ready"},
	{"fetch", "Fetch"},
	{"solve", "Solve"},
	{"push", "Push"},
	{"cacheExport", "Cache export"},
	{"build", "Build total"},
}

// Summary is a check run's Markdown summary: the image, the timings, the steps, and for a
// failure the failing step and the redacted end of the log. logTail may be nil (the pod is
// gone, or the state is not a failure). The result fits the Checks API's 65,535 characters:
// the log is cut from its start first.
func Summary(b *v1alpha1.Build, s forge.State, deleted bool, logTail []string) string {
	var head strings.Builder
	st := &b.Status
	src := &b.Spec.Source
	fmt.Fprintf(&head, "**%s** · commit `%s`", Description(b, s, deleted), short(src.Commit))
	if ref := displayRef(src); ref != "" {
		fmt.Fprintf(&head, " · %s", ref)
	}
	head.WriteString("\n")

	if st.Digest != "" || len(st.Tags) > 0 {
		head.WriteString("\n### Image\n\n")
		if st.Digest != "" {
			fmt.Fprintf(&head, "- Digest: `%s`\n", md(st.Digest))
		}
		for _, t := range st.Tags {
			fmt.Fprintf(&head, "- `%s`\n", md(t))
		}
		if s == forge.StateSucceeded && src.Fork {
			head.WriteString("- Not pushed: builds of forks get no push credentials\n")
		}
	}
	if len(st.Timings) > 0 {
		head.WriteString("\n### Timings\n\n| Phase | Duration |\n|---|---:|\n")
		seen := map[string]bool{}
		for _, row := range timingRows {
			if d, ok := st.Timings[row.key]; ok {
				seen[row.key] = true
				fmt.Fprintf(&head, "| %s | %s |\n", row.label, humanDuration(d.Duration))
			}
		}
		var rest []string
		for k := range st.Timings {
			if !seen[k] {
				rest = append(rest, k)
			}
		}
		sort.Strings(rest)
		for _, k := range rest {
			fmt.Fprintf(&head, "| %s | %s |\n", md(k), humanDuration(st.Timings[k].Duration))
		}
	}
	if steps := st.Steps; steps != nil && steps.Total > 0 {
		fmt.Fprintf(&head, "\n### Steps\n\n%d of %d steps came from cache.\n", steps.Cached, steps.Total)
	}
	if s == forge.StateFailed || s == forge.StateErrored || s == forge.StateTimedOut {
		head.WriteString("\n### Failure\n\n")
		fmt.Fprintf(&head, "Reason: `%s`\n", md(orDefault(st.Reason, "unknown")))
		if f := st.Failure; f != nil {
			if f.Step != "" {
				fmt.Fprintf(&head, "\nStep: `%s`", md(f.Step))
				if f.ExitCode != 0 {
					fmt.Fprintf(&head, " exited %d", f.ExitCode)
				}
				if f.Line > 0 {
					fmt.Fprintf(&head, " at `%s` line %d", md(dockerfile(b)), f.Line)
				}
				head.WriteString("\n")
			}
		}
		if msg := failureMessage(b); msg != "" {
			fmt.Fprintf(&head, "\n%s\n", quote(msg))
		}
	}
	out := head.String()
	if len(logTail) == 0 {
		return forge.TruncateRunes(out, maxSummary)
	}
	// Fit the log into what is left, dropping its oldest lines first.
	lines := append([]string(nil), logTail...)
	for {
		block := logBlock(lines)
		if len([]rune(out))+len([]rune(block)) <= maxSummary || len(lines) == 0 {
			if len(lines) == 0 {
				return forge.TruncateRunes(out, maxSummary)
			}
			return out + block
		}
		lines = lines[1:]
	}
}

// maxSummary is the Checks API's limit for output.summary.
const maxSummary = 65535

func failureMessage(b *v1alpha1.Build) string {
	if f := b.Status.Failure; f != nil && f.Message != "" {
		return f.Message
	}
	return b.Status.Message
}

func logBlock(lines []string) string {
	body := strings.Join(lines, "\n")
	fence := "```"
	for strings.Contains(body, fence) {
		fence += "`"
	}
	return fmt.Sprintf("\n<details open><summary>Last %d log lines</summary>\n\n%stext\n%s\n%s\n\n</details>\n", len(lines), fence, body, fence)
}

// Annotations point at the failing Dockerfile line when BuildKit reported one.
func Annotations(b *v1alpha1.Build, s forge.State) []forge.Annotation {
	f := b.Status.Failure
	if f == nil || f.Line <= 0 || (s != forge.StateFailed && s != forge.StateErrored) {
		return nil
	}
	msg := orDefault(f.Message, "this step failed")
	if f.ExitCode != 0 {
		msg = fmt.Sprintf("exit code %d: %s", f.ExitCode, msg)
	}
	title := "Build step failed"
	if f.Step != "" {
		title = f.Step
	}
	return []forge.Annotation{{Path: dockerfile(b), Line: int(f.Line), Level: "failure", Title: title, Message: msg}}
}

func dockerfile(b *v1alpha1.Build) string {
	return orDefault(strings.TrimPrefix(b.Spec.Target.Dockerfile, "./"), "Dockerfile")
}

func displayRef(s *v1alpha1.Source) string {
	switch {
	case strings.HasPrefix(s.Ref, "refs/heads/"):
		return "branch `" + md(strings.TrimPrefix(s.Ref, "refs/heads/")) + "`"
	case strings.HasPrefix(s.Ref, "refs/tags/"):
		return "tag `" + md(strings.TrimPrefix(s.Ref, "refs/tags/")) + "`"
	case s.Number > 0:
		return fmt.Sprintf("change #%d", s.Number)
	}
	return ""
}

func buildDuration(b *v1alpha1.Build) time.Duration {
	if d, ok := b.Status.Timings["build"]; ok {
		return d.Duration
	}
	if b.Status.StartTime != nil && b.Status.CompletionTime != nil {
		return b.Status.CompletionTime.Sub(b.Status.StartTime.Time)
	}
	return 0
}

// humanDuration prints 850ms, 12.3s, 4m05s, 1h02m.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) >= 12 {
		return d[:len(d)-len(hex)] + hex[:12]
	}
	return d
}

func short(sha string) string { return sha[:min(7, len(sha))] }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func singleLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// md keeps a value from breaking out of inline code.
func md(s string) string { return strings.ReplaceAll(singleLine(s), "`", "'") }

// quote renders a message as a Markdown block quote, line by line.
func quote(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "> " + l
	}
	return strings.Join(lines, "\n")
}
