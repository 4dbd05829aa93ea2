package github

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/slipway-dev/slipway/internal/forge"
)

// defaultSecondaryWait is GitHub's advice when a secondary rate limit names no time: wait at
// least a minute.
const defaultSecondaryWait = time.Minute

// classify wraps a failed call's error in a *forge.RetryError that says whether and when to try
// again. The caller (the reporter reconciler) does the waiting by requeueing; nothing here sleeps.
func classify(err error, resp *gh.Response, now time.Time) error {
	if err == nil {
		return nil
	}
	var re *forge.RetryError
	if errors.As(err, &re) {
		return err // already classified, e.g. a failed token mint under an API call
	}
	// go-github remembers a primary rate limit and refuses calls locally until the reset; the
	// error then carries a synthetic response without headers, but the reset time.
	var rl *gh.RateLimitError
	if errors.As(err, &rl) {
		return &forge.RetryError{After: max(rl.Rate.Reset.Sub(now), 0) + time.Second, Err: err}
	}
	var ab *gh.AbuseRateLimitError
	if errors.As(err, &ab) {
		after := defaultSecondaryWait
		if ab.RetryAfter != nil && *ab.RetryAfter > 0 {
			after = *ab.RetryAfter
		}
		return &forge.RetryError{After: after, Err: err}
	}
	status, header := 0, http.Header(nil)
	if resp != nil && resp.Response != nil {
		status, header = resp.StatusCode, resp.Header
	}
	after, permanent := RetryPolicy(status, header, now)
	return &forge.RetryError{After: after, Permanent: permanent, Err: err}
}

// RetryPolicy decides from a response's status and headers whether a failed request is worth
// retrying, and the least wait GitHub asked for. Status 0 means no response (a network error).
// It is a pure function so that the rules are a table in a test.
func RetryPolicy(status int, h http.Header, now time.Time) (after time.Duration, permanent bool) {
	after = headerWait(status, h, now)
	switch {
	case status == 0, status >= 500, status == http.StatusRequestTimeout:
		return after, false
	case status == http.StatusTooManyRequests:
		if after == 0 {
			after = defaultSecondaryWait
		}
		return after, false
	case status == http.StatusForbidden && (h.Get("Retry-After") != "" || h.Get("X-RateLimit-Remaining") == "0"):
		// A primary (remaining 0) or secondary (Retry-After) rate limit, not a missing permission.
		if after == 0 {
			after = defaultSecondaryWait
		}
		return after, false
	case status == http.StatusUnauthorized:
		// The cached installation token was dropped; the next attempt mints a new one.
		return after, false
	case status >= 400:
		return after, true
	}
	return after, false
}

// headerWait reads Retry-After (seconds or an HTTP date), else X-RateLimit-Reset (epoch
// seconds) when it describes a limit that was hit: every GitHub response carries the latter.
func headerWait(status int, h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
			return time.Duration(min(s, 3600)) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return min(t.Sub(now), time.Hour)
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" || status == http.StatusTooManyRequests {
		if v := h.Get("X-RateLimit-Reset"); v != "" {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil {
				if d := time.Unix(s, 0).Sub(now); d > 0 {
					return min(d, time.Hour) + time.Second
				}
			}
		}
	}
	return 0
}
