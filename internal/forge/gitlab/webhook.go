// Package gitlab is Slipway's GitLab forge: webhook verification and parsing here, commit
// statuses beside it. go-gitlab stays inside this package.
package gitlab

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gl "github.com/xanzy/go-gitlab"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// Header names GitLab sends. The webhook-* ones follow the Standard Webhooks specification and
// are present only when the hook has a signing token; webhook-id equals Idempotency-Key, which
// GitLab keeps across retries of the same delivery.
const (
	HeaderEvent          = "X-Gitlab-Event"
	HeaderToken          = "X-Gitlab-Token"
	HeaderEventUUID      = "X-Gitlab-Event-UUID"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderWebhookID      = "webhook-id"
	HeaderTimestamp      = "webhook-timestamp"
	HeaderSignature      = "webhook-signature"
)

// MaxClockSkew bounds how old (or how far in the future) a signed delivery may be, which is what
// makes a captured delivery useless for replay.
const MaxClockSkew = 5 * time.Minute

// Receiver verifies X-Gitlab-Token and, when configured, the signing token, and turns Push,
// Tag Push and Merge Request hooks into build requests.
type Receiver struct {
	token      []byte
	signingKey []byte
	now        func() time.Time
}

// NewReceiver returns a Receiver. The secret token is required. The signing token is optional;
// when given, every delivery must also carry a valid signature. A signing token written as
// Standard Webhooks' "whsec_<base64>" is decoded; anything else is used as the key verbatim.
func NewReceiver(token, signingToken []byte, now func() time.Time) (*Receiver, error) {
	if len(token) == 0 {
		return nil, errors.New("gitlab webhook secret token is empty")
	}
	if now == nil {
		now = time.Now
	}
	key := signingToken
	if rest, ok := strings.CutPrefix(string(signingToken), "whsec_"); ok {
		dec, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("decoding gitlab signing token: %w", err)
		}
		key = dec
	}
	return &Receiver{token: token, signingKey: key, now: now}, nil
}

// Receive implements forge.Receiver.
func (r *Receiver) Receive(h http.Header, body []byte) (forge.Delivery, error) {
	if got := h.Get(HeaderToken); got == "" {
		return forge.Delivery{}, fmt.Errorf("%w: missing %s header", forge.ErrUnauthenticated, HeaderToken)
	} else if subtle.ConstantTimeCompare([]byte(got), r.token) != 1 {
		return forge.Delivery{}, fmt.Errorf("%w: %s does not match", forge.ErrUnauthenticated, HeaderToken)
	}
	if len(r.signingKey) > 0 {
		if err := VerifySignature(r.signingKey, h, body, r.now()); err != nil {
			return forge.Delivery{}, err
		}
	}
	event := h.Get(HeaderEvent)
	if event == "" {
		return forge.Delivery{}, forge.Invalidf("missing %s header", HeaderEvent)
	}
	d, err := Parse(event, body)
	if err != nil {
		return forge.Delivery{}, err
	}
	d.ID = DeliveryID(h)
	return d, nil
}

// DeliveryID picks the most stable delivery identifier GitLab sent.
func DeliveryID(h http.Header) string {
	for _, k := range []string{HeaderWebhookID, HeaderIdempotencyKey, HeaderEventUUID} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// VerifySignature checks a Standard Webhooks signature: base64(HMAC-SHA256(key,
// "<webhook-id>.<webhook-timestamp>.<body>")) in webhook-signature, which may list several
// space-separated "v1,<sig>" entries (GitLab sends one; rotation may add more).
func VerifySignature(key []byte, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get(HeaderWebhookID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: signing token configured but %s, %s or %s missing",
			forge.ErrUnauthenticated, HeaderWebhookID, HeaderTimestamp, HeaderSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", forge.ErrUnauthenticated, HeaderTimestamp, forge.Truncate(ts))
	}
	if skew := now.Sub(time.Unix(sec, 0)); skew > MaxClockSkew || skew < -MaxClockSkew {
		return fmt.Errorf("%w: %s is %s off", forge.ErrUnauthenticated, HeaderTimestamp, skew.Round(time.Second))
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if ok && v == "v1" && subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: webhook signature does not match", forge.ErrUnauthenticated)
}

// Sign returns the base64 signature (without "v1,") for a delivery; tests and hack/ tools use it.
func Sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Parse normalises one verified hook. It is a pure function of its inputs.
func Parse(event string, body []byte) (forge.Delivery, error) {
	d := forge.Delivery{Event: event}
	switch gl.EventType(event) {
	case gl.EventTypePush, gl.EventTypeTagPush, gl.EventTypeMergeRequest:
	default:
		d.Ignored = fmt.Sprintf("event %q does not trigger builds", forge.Truncate(event))
		return d, nil
	}
	payload, err := gl.ParseWebhook(gl.EventType(event), body)
	if err != nil {
		return forge.Delivery{}, forge.Invalidf("%s payload: %v", event, err)
	}
	// GitLab names the kind in the body too. A mismatch means the header was changed or the
	// body is not what it claims, and fields would be read from the wrong places.
	if kind, want := objectKind(payload); kind != want {
		return forge.Delivery{}, forge.Invalidf("%s with object_kind %q, want %q", event, forge.Truncate(kind), want)
	}
	switch e := payload.(type) {
	case *gl.PushEvent:
		d.Sender = e.UserUsername
		if forge.IsSHA(e.Before) {
			d.Before = e.Before
		}
		p := e.Project
		return pushLike(d, v1alpha1.EventPush, "refs/heads/", e.Ref, e.After, e.CheckoutSHA,
			project{p.ID, p.PathWithNamespace, p.GitHTTPURL, p.WebURL, p.DefaultBranch}, e.ProjectID)
	case *gl.TagEvent:
		d.Sender = e.UserUsername
		p := e.Project
		return pushLike(d, v1alpha1.EventTag, "refs/tags/", e.Ref, e.After, e.CheckoutSHA,
			project{p.ID, p.PathWithNamespace, p.GitHTTPURL, p.WebURL, p.DefaultBranch}, e.ProjectID)
	case *gl.MergeEvent:
		return mergeRequest(d, e)
	}
	return forge.Delivery{}, forge.Invalidf("unexpected payload type %T for event %q", payload, event)
}

// objectKind returns the payload's object_kind and the one its hook type must carry.
func objectKind(payload any) (got, want string) {
	switch e := payload.(type) {
	case *gl.PushEvent:
		return e.ObjectKind, "push"
	case *gl.TagEvent:
		return e.ObjectKind, "tag_push"
	case *gl.MergeEvent:
		return e.ObjectKind, "merge_request"
	}
	return "", ""
}

// project is the part of a GitLab project that every hook carries.
type project struct {
	id                     int
	path, cloneURL, webURL string
	defaultBranch          string
}

func pushLike(d forge.Delivery, ev v1alpha1.Event, prefix, ref, after, checkout string, p project, projectID int) (forge.Delivery, error) {
	if after == forge.ZeroSHA || checkout == "" && after == "" {
		d.Ignored = fmt.Sprintf("%s was deleted", forge.Truncate(ref))
		return d, nil
	}
	if !strings.HasPrefix(ref, prefix) {
		return forge.Delivery{}, forge.Invalidf("%s ref %q does not start with %s", d.Event, forge.Truncate(ref), prefix)
	}
	if projectID == 0 {
		projectID = p.id
	}
	s, err := source(p, projectID)
	if err != nil {
		return forge.Delivery{}, err
	}
	// checkout_sha is the commit; for an annotated tag "after" is the tag object, not a commit.
	s.Commit, s.Ref, s.Event = checkout, ref, ev
	if s.Commit == "" {
		s.Commit = after
	}
	d.Source = s
	return d, forge.ValidateSource(s)
}

func mergeRequest(d forge.Delivery, e *gl.MergeEvent) (forge.Delivery, error) {
	a := e.ObjectAttributes
	d.Action = a.Action
	if e.User != nil {
		d.Sender = e.User.Username
	}
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
		// oldrev is present only when the update pushed new commits.
	case a.Action == "update":
		d.Ignored = "merge request update without new commits"
		return d, nil
	default:
		d.Ignored = fmt.Sprintf("merge request action %q does not trigger builds", forge.Truncate(a.Action))
		return d, nil
	}
	p := e.Project
	target := a.TargetProjectID
	if target == 0 {
		target = p.ID
	}
	s, err := source(project{p.ID, p.PathWithNamespace, p.GitHTTPURL, p.WebURL, p.DefaultBranch}, target)
	if err != nil {
		return forge.Delivery{}, err
	}
	// refs/merge-requests/N/head lives in the target project, even for forks, so the builder
	// fetches from the target project only.
	s.Commit = a.LastCommit.ID
	s.Ref = fmt.Sprintf("refs/merge-requests/%d/head", a.IID)
	s.Event = v1alpha1.EventMergeRequest
	s.Number = int64(a.IID)
	s.BaseRef = a.TargetBranch
	if a.SourceProjectID > 0 {
		s.SourceProjectID = int64(a.SourceProjectID)
	}
	s.Fork = a.SourceProjectID != 0 && a.SourceProjectID != target
	d.Source = s
	return d, forge.ValidateSource(s)
}

func source(p project, projectID int) (*v1alpha1.Source, error) {
	if p.path == "" {
		return nil, forge.Invalidf("payload has no project.path_with_namespace")
	}
	u, err := url.Parse(p.webURL)
	if err != nil || u.Host == "" {
		return nil, forge.Invalidf("project.web_url %q is not a URL", forge.Truncate(p.webURL))
	}
	s := &v1alpha1.Source{
		Forge:         v1alpha1.ForgeGitLab,
		Host:          u.Host,
		Repository:    p.path,
		CloneURL:      p.cloneURL,
		DefaultBranch: p.defaultBranch,
	}
	if projectID > 0 {
		s.ProjectID = int64(projectID)
	}
	return s, nil
}
