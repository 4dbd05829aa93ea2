package builder

import (
	"errors"
	"strings"

	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
	"google.golang.org/grpc/codes"

	"github.com/slipway-dev/slipway/internal/buildresult"
)

// solveFacts is what the builder knows about a failed solve, gathered from the typed error that
// BuildKit returns and from the progress stream. classify turns it into an outcome.
type solveFacts struct {
	Canceled     bool   // the builder's own context was canceled (SIGTERM)
	DaemonLost   bool   // the connection to the daemon broke (gRPC Unavailable)
	HasExitCode  bool   // a RUN process exited non-zero
	ExitCode     int    // that process's exit code
	Line         int    // Dockerfile line BuildKit attributes the error to, 0 if none
	FailedVertex string // name of the vertex that carried the error, "" if none did
	Message      string
}

// configMarkers are frontend error texts that mean the Dockerfile or the build options are wrong,
// as opposed to a step failing. They fail before any step runs, often without a vertex.
var configMarkers = []string{
	"failed to read dockerfile",
	"dockerfile parse error",
	"failed to parse dockerfile",
	"unknown instruction",
	"failed to create llb definition",
	"target stage",
	"could not be found",
	"the dockerfile cannot be empty",
	"file with no instructions",
	"invalid reference format",
	"unknown flag",
	"failed to process",
	"no build stage in current context",
}

// classify decides the outcome of a failed solve. Order matters: cancellation wins over the
// errors it causes, a process exit code means a step failed however the error is worded, and
// the export vertex identifies push failures.
func classify(f solveFacts) buildresult.Outcome {
	msg := strings.ToLower(f.Message)
	switch {
	case f.Canceled:
		return buildresult.Canceled
	case f.HasExitCode:
		return buildresult.BuildFailed
	case f.FailedVertex == vertexImageExport || strings.HasPrefix(f.FailedVertex, "pushing"):
		return buildresult.PushFailed
	case f.FailedVertex == "" && (strings.Contains(msg, "failed to push") || strings.Contains(msg, "unexpected status from put request")):
		return buildresult.PushFailed
	case strings.HasPrefix(f.FailedVertex, "[internal] load build definition"),
		strings.HasPrefix(f.FailedVertex, "[internal] load .dockerignore"):
		return buildresult.ConfigInvalid
	case f.FailedVertex == "" && containsAny(msg, configMarkers):
		return buildresult.ConfigInvalid
	case f.DaemonLost:
		return buildresult.DaemonUnavailable
	default:
		return buildresult.BuildFailed
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// errorFacts extracts the typed details BuildKit's client decodes from the gRPC status: the RUN
// exit code (gateway ExitError) and the Dockerfile source range (errdefs.Source).
func errorFacts(err error) solveFacts {
	var f solveFacts
	if err == nil {
		return f
	}
	f.Message = err.Error()
	var ee *gatewaypb.ExitError
	if errors.As(err, &ee) && ee.ExitCode != 0 {
		f.HasExitCode = true
		f.ExitCode = int(ee.ExitCode)
	}
	for _, src := range errdefs.Sources(err) {
		for _, r := range src.GetRanges() {
			if r.GetStart() != nil && r.GetStart().GetLine() > 0 {
				f.Line = int(r.GetStart().GetLine())
				break
			}
		}
		if f.Line > 0 {
			break
		}
	}
	if grpcerrors.Code(err) == codes.Unavailable {
		f.DaemonLost = true
	}
	return f
}

// conciseMessage shortens BuildKit's error chain for humans: the client prefixes "failed to
// solve: " and the frontend repeats the instruction, which the step name already says.
func conciseMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "failed to solve: ")
	return strings.TrimSpace(msg)
}
