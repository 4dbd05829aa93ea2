// Package buildpage serves <externalURL>/builds/<namespace>/<name>: the page every commit status
// and check run links to. It shows a Build's phase, timings, image and failure, and the end of
// its log while the pod exists. Links carry an HMAC signature with an expiry, so that a person
// can open them without cluster credentials while nobody can guess or enumerate other Builds.
package buildpage

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MinKeyLength is the shortest signing key accepted (256 bits, HMAC-SHA256's strength).
const MinKeyLength = 32

// DefaultTTL is how long a link works: long enough to read a build from last month's pull
// request, short enough that a leaked link does not work forever.
const DefaultTTL = 30 * 24 * time.Hour

// Errors Verify returns.
var (
	ErrBadSignature = errors.New("the link's signature is not valid")
	ErrExpired      = errors.New("the link has expired")
)

// Sign returns the signature of a link to namespace/name that expires at exp (Unix seconds):
// base64url(HMAC-SHA256(key, "v1\n<namespace>\n<name>\n<exp>")). The version prefix lets the
// format change without old signatures verifying under new rules.
func Sign(key []byte, namespace, name string, exp int64) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "v1\n%s\n%s\n%d", namespace, name, exp)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a link's signature in constant time, then its expiry.
func Verify(key []byte, namespace, name string, exp int64, sig string, now time.Time) error {
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	want, _ := base64.RawURLEncoding.DecodeString(Sign(key, namespace, name, exp))
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	if !now.Before(time.Unix(exp, 0)) {
		return ErrExpired
	}
	return nil
}

// Signer makes signed links; it implements report.Linker.
type Signer struct {
	key  []byte
	base string
	ttl  time.Duration
}

// NewSigner validates the key and the external URL (where `slipway serve` is reachable).
func NewSigner(key []byte, externalURL string, ttl time.Duration) (*Signer, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("build page signing key has %d bytes, at least %d needed", len(key), MinKeyLength)
	}
	u, err := url.Parse(externalURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("external URL %q is not an http(s) base URL", externalURL)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Signer{key: key, base: strings.TrimSuffix(u.String(), "/"), ttl: ttl}, nil
}

// BuildURL returns the signed link to a Build. The expiry counts from the Build's creation, so
// every report of one Build carries the same link.
func (s *Signer) BuildURL(namespace, name string, created time.Time) string {
	exp := created.Add(s.ttl).Unix()
	q := url.Values{"exp": {strconv.FormatInt(exp, 10)}, "sig": {Sign(s.key, namespace, name, exp)}}
	return s.base + "/builds/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "?" + q.Encode()
}
