// Package intake is Slipway's webhook front door: verify, parse, create a Build, answer 202.
// It makes no forge API calls and waits for nothing but the API server, so a delivery is
// acknowledged in milliseconds and everything slow happens later in the controller.
package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// MaxBodyBytes is GitHub's maximum webhook payload (25 MiB); GitLab's are smaller.
const MaxBodyBytes = 25 << 20

// createTimeout bounds the one API call a delivery makes, well inside GitHub's 10 s budget.
const createTimeout = 5 * time.Second

// Options configure a Handler.
type Options struct {
	// Client creates Builds. Required.
	Client client.Client
	// Namespace is where Builds are created. Required.
	Namespace string
	// Receivers maps a forge to its verifier/parser; a forge without one answers 404.
	Receivers map[v1alpha1.Forge]forge.Receiver
	Log       *slog.Logger
	Metrics   *Metrics
	// Now is the clock, for tests.
	Now func() time.Time
}

// Handler serves POST /hooks/<forge>.
type Handler struct {
	opts Options
}

// NewHandler validates the options.
func NewHandler(o Options) (*Handler, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("intake: a Kubernetes client is required")
	case o.Namespace == "":
		return nil, errors.New("intake: a namespace is required")
	case len(o.Receivers) == 0:
		return nil, errors.New("intake: at least one forge must be configured")
	case o.Metrics == nil:
		return nil, errors.New("intake: metrics are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{opts: o}, nil
}

// Register adds the webhook routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	for f := range h.opts.Receivers {
		f := f
		mux.HandleFunc("POST /hooks/"+string(f), func(w http.ResponseWriter, r *http.Request) {
			h.serve(w, r, f)
		})
	}
}

// BuildRef names a Build in a response.
type BuildRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Duplicate is true when the delivery had been received before and the Build already existed.
	Duplicate bool `json:"duplicate"`
}

// Response is the JSON body of every answer.
type Response struct {
	Builds  []BuildRef `json:"builds,omitempty"`
	Ignored string     `json:"ignored,omitempty"`
	Error   string     `json:"error,omitempty"`
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, f v1alpha1.Forge) {
	start := h.opts.Now()
	log := h.opts.Log.With("forge", string(f))
	code, resp, outcome, d := h.handle(w, r, f)
	if d.ID != "" {
		log = log.With("delivery", d.ID)
	}
	if d.Event != "" {
		log = log.With("event", d.Event, "action", d.Action)
	}
	if d.Source != nil {
		log = log.With("repo", d.Source.Repository, "sha", d.Source.Commit)
	}
	h.opts.Metrics.observe(f, outcome, h.opts.Now().Sub(start))
	attrs := []any{"outcome", outcome, "status", code}
	switch {
	case resp.Error != "":
		attrs = append(attrs, "error", resp.Error)
	case resp.Ignored != "":
		attrs = append(attrs, "reason", resp.Ignored)
	case len(resp.Builds) > 0:
		attrs = append(attrs, "build", resp.Builds[0].Name)
	}
	level := slog.LevelInfo
	if code >= 400 {
		level = slog.LevelWarn
	}
	log.Log(r.Context(), level, "webhook", attrs...)
	writeJSON(w, code, resp)
}

// handle does the work and returns the HTTP status, the body, a metrics outcome, and what is
// known of the delivery for logging.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, f v1alpha1.Forge) (int, Response, string, forge.Delivery) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return http.StatusRequestEntityTooLarge, Response{Error: fmt.Sprintf("body exceeds %d bytes", MaxBodyBytes)}, "too_large", forge.Delivery{}
		}
		return http.StatusBadRequest, Response{Error: "reading body: " + err.Error()}, "invalid", forge.Delivery{}
	}
	d, err := h.opts.Receivers[f].Receive(r.Header, body)
	switch {
	case errors.Is(err, forge.ErrUnauthenticated):
		return http.StatusUnauthorized, Response{Error: err.Error()}, "unauthenticated", d
	case err != nil:
		return http.StatusBadRequest, Response{Error: err.Error()}, "invalid", d
	}
	if d.ID == "" {
		d.ID = BodyDeliveryID(body)
	} else if err := checkDeliveryID(d.ID); err != nil {
		return http.StatusBadRequest, Response{Error: err.Error()}, "invalid", d
	}
	if d.Source == nil {
		return http.StatusOK, Response{Ignored: d.Ignored}, "ignored", d
	}

	b := NewBuild(h.opts.Namespace, d, h.opts.Now())
	ctx, cancel := context.WithTimeout(r.Context(), createTimeout)
	defer cancel()
	ref := BuildRef{Namespace: b.Namespace, Name: b.Name}
	err = h.opts.Client.Create(ctx, b)
	switch {
	case err == nil:
		return http.StatusAccepted, Response{Builds: []BuildRef{ref}}, "created", d
	case apierrors.IsAlreadyExists(err):
		ref.Duplicate = true
		return http.StatusAccepted, Response{Builds: []BuildRef{ref}}, "duplicate", d
	case apierrors.IsInvalid(err):
		// The schema caught something our own validation let through: still the sender's fault.
		return http.StatusBadRequest, Response{Error: "build rejected by the API server: " + err.Error()}, "invalid", d
	default:
		// 503 asks the forge to count this delivery as failed, so it can be redelivered.
		return http.StatusServiceUnavailable, Response{Error: "could not record the build; redeliver later"}, "error", d
	}
}

// checkDeliveryID keeps hostile IDs out of names, labels and logs.
func checkDeliveryID(id string) error {
	if len(id) > 256 {
		return forge.Invalidf("delivery ID longer than 256 bytes")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || r > unicode.MaxASCII {
			return forge.Invalidf("delivery ID has non-printable or non-ASCII characters")
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
