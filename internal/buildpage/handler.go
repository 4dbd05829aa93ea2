package buildpage

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/report"
)

// Pattern is the route to register the Handler on (Go 1.22 ServeMux syntax).
const Pattern = "GET /builds/{namespace}/{name}"

// Handler serves build pages.
type Handler struct {
	key    []byte
	reader client.Reader
	logs   report.LogSource
	opts   HandlerOptions
}

// HandlerOptions tune the page.
type HandlerOptions struct {
	// LogLines is how much of the log the page shows (default 200).
	LogLines int
	// Refresh is how often a page of an unfinished Build reloads itself (default 10 s).
	Refresh time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

// NewHandler returns a Handler that reads Builds with reader (the manager's cached client is
// fine) and logs with logs (may be nil).
func NewHandler(key []byte, reader client.Reader, logs report.LogSource, o HandlerOptions) (*Handler, error) {
	if len(key) < MinKeyLength {
		return nil, errors.New("build page signing key is too short")
	}
	if reader == nil {
		return nil, errors.New("build page needs a Kubernetes reader")
	}
	if o.LogLines <= 0 {
		o.LogLines = 200
	}
	if o.Refresh <= 0 {
		o.Refresh = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{key: key, reader: reader, logs: logs, opts: o}, nil
}

// ServeHTTP implements http.Handler for Pattern.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The URL carries the signature: never let it leak to other sites through Referer, and
	// keep the page from being framed or cached by shared caches.
	hd := w.Header()
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, no-store")
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		h.fail(w, http.StatusNotFound, "No such build.")
		return
	}
	exp, err := strconv.ParseInt(r.URL.Query().Get("exp"), 10, 64)
	if err == nil {
		err = Verify(h.key, ns, name, exp, r.URL.Query().Get("sig"), h.opts.Now())
	} else {
		err = ErrBadSignature
	}
	switch {
	case errors.Is(err, ErrExpired):
		h.fail(w, http.StatusGone, "This link has expired. Open the build from a newer status on the commit, or ask an administrator.")
		return
	case err != nil:
		// The same answer as for a missing Build: a wrong signature reveals nothing.
		h.fail(w, http.StatusNotFound, "No such build.")
		return
	}
	var b v1alpha1.Build
	if err := h.reader.Get(r.Context(), client.ObjectKey{Namespace: ns, Name: name}, &b); err != nil {
		if apierrors.IsNotFound(err) {
			h.fail(w, http.StatusNotFound, "This build no longer exists: finished builds are kept for a limited time.")
			return
		}
		h.opts.Log.Error("reading build for its page", "build", ns+"/"+name, "error", err)
		h.fail(w, http.StatusServiceUnavailable, "The build cannot be read right now; try again shortly.")
		return
	}
	page := h.page(r.Context(), &b)
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, page); err != nil {
		h.opts.Log.Error("rendering build page", "build", ns+"/"+name, "error", err)
		h.fail(w, http.StatusInternalServerError, "The page could not be rendered.")
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = errorTemplate.Execute(w, struct {
		Status  int
		Message string
	}{status, msg})
}

// Page is what the template shows; pure data, built by View.
type Page struct {
	Build       *v1alpha1.Build
	Title       string
	Description string
	State       string
	Ref         string
	Timings     []Timing
	Log         []string
	LogNote     string
	Refresh     int
}

// Timing is one row of the timings table.
type Timing struct{ Phase, Duration string }

func (h *Handler) page(ctx context.Context, b *v1alpha1.Build) Page {
	p := View(b)
	if !b.Status.Phase.Terminal() {
		p.Refresh = int(h.opts.Refresh.Seconds())
	}
	switch {
	case h.logs == nil:
	default:
		lines, err := h.logs.Tail(ctx, b, h.opts.LogLines)
		switch {
		case err != nil:
			p.LogNote = "The log cannot be read right now."
		case lines == nil:
			p.LogNote = "The build pod no longer exists, so its log is gone."
		default:
			p.Log = report.Redact(lines)
		}
	}
	return p
}

// View turns a Build into the page's data, without I/O.
func View(b *v1alpha1.Build) Page {
	s := report.StateOf(b, b.DeletionTimestamp != nil)
	p := Page{Build: b, Title: report.Title(b, s), Description: report.Description(b, s, b.DeletionTimestamp != nil), State: string(s)}
	p.Ref = b.Spec.Source.Ref
	keys := make([]string, 0, len(b.Status.Timings))
	for k := range b.Status.Timings {
		keys = append(keys, k)
	}
	order := map[string]int{"queued": 0, "schedule": 1, "imagePull": 2, "daemonStart": 3, "daemonWait": 4, "fetch": 5, "solve": 6, "push": 7, "cacheExport": 8, "build": 9}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i]]
		oj, jok := order[keys[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		p.Timings = append(p.Timings, Timing{Phase: k, Duration: b.Status.Timings[k].Duration.Round(time.Millisecond).String()})
	}
	return p
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}} · {{.Build.Spec.Source.Repository}} · Slipway</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem} code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f6f8fa;padding:1rem;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse} td,th{padding:.2rem .8rem;border-bottom:1px solid #d0d7de;text-align:left}
.state{font-weight:600}.succeeded{color:#1a7f37}.failed,.errored,.timed_out{color:#cf222e}.canceled{color:#6e7781}
</style></head><body>
<h1><span class="state {{.State}}">{{.Title}}</span> · {{.Build.Spec.Source.Repository}}</h1>
<p>{{.Description}}</p>
<table>
<tr><th>Target</th><td><code>{{.Build.Spec.Target.Name}}</code></td></tr>
<tr><th>Commit</th><td><code>{{.Build.Spec.Source.Commit}}</code></td></tr>
<tr><th>Ref</th><td><code>{{.Ref}}</code></td></tr>
<tr><th>Phase</th><td>{{.Build.Status.Phase}}{{with .Build.Status.Reason}} ({{.}}){{end}}</td></tr>
{{with .Build.Status.Message}}<tr><th>Message</th><td>{{.}}</td></tr>{{end}}
{{with .Build.Status.Digest}}<tr><th>Digest</th><td><code>{{.}}</code></td></tr>{{end}}
{{range .Build.Status.Tags}}<tr><th>Image</th><td><code>{{.}}</code></td></tr>{{end}}
{{with .Build.Status.Steps}}<tr><th>Steps</th><td>{{.Cached}} of {{.Total}} from cache</td></tr>{{end}}
</table>
{{with .Build.Status.Failure}}<h2>Failure</h2>
<p>{{with .Step}}Step <code>{{.}}</code>{{end}}{{if .ExitCode}} exited {{.ExitCode}}{{end}}{{if .Line}} at Dockerfile line {{.Line}}{{end}}</p>
{{with .Message}}<pre>{{.}}</pre>{{end}}{{end}}
{{if .Timings}}<h2>Timings</h2><table>{{range .Timings}}<tr><td>{{.Phase}}</td><td>{{.Duration}}</td></tr>{{end}}</table>{{end}}
<h2>Log</h2>
{{if .Log}}<pre>{{range .Log}}{{.}}
{{end}}</pre>{{else}}<p>{{or .LogNote "No log yet."}}</p>{{end}}
</body></html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex, nofollow"><title>Slipway</title></head>
<body style="font:15px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto"><h1>{{.Status}}</h1><p>{{.Message}}</p></body></html>
`))
