package forge

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

func TestTruncateRunes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"toolong", 4, "too…"},
		{"ééééé", 3, "éé…"},
		{"x", 0, ""},
	} {
		if got := TruncateRunes(tc.in, tc.n); got != tc.want {
			t.Errorf("TruncateRunes(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func FuzzTruncateRunes(f *testing.F) {
	f.Add("héllo wörld", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 300
		got := TruncateRunes(s, n)
		if n > 0 && utf8.RuneCountInString(got) > n {
			t.Fatalf("TruncateRunes(%q, %d) = %q: too long", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("cut inside a character: %q", got)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &RetryError{After: time.Minute, Err: errors.New("429")})
	if after, perm := RetryAfter(err); after != time.Minute || perm {
		t.Errorf("RetryAfter = %s %v", after, perm)
	}
	if after, perm := RetryAfter(errors.New("network")); after != 0 || perm {
		t.Errorf("plain error: %s %v", after, perm)
	}
	if !StateFailed.Final() || StateRunning.Final() || State("").Final() {
		t.Error("Final")
	}
}

type staticToken string

func (s staticToken) CloneToken(context.Context, *v1alpha1.Build) (string, error) {
	return string(s), nil
}

func TestTokenMux(t *testing.T) {
	m := TokenMux{Sources: map[TokenKey]TokenSource{{v1alpha1.ForgeGitHub, "github.com"}: staticToken("gh")}}
	b := &v1alpha1.Build{Spec: v1alpha1.BuildSpec{Source: v1alpha1.Source{Forge: v1alpha1.ForgeGitHub, Host: "github.com"}}}
	if tok, err := m.CloneToken(context.Background(), b); tok != "gh" || err != nil {
		t.Errorf("github: %q %v", tok, err)
	}
	b.Spec.Source.Host = "ghe.example.com"
	if _, err := m.CloneToken(context.Background(), b); err == nil {
		t.Error("unknown host got a token")
	}
	m.Fallback = staticToken("fallback")
	if tok, _ := m.CloneToken(context.Background(), b); tok != "fallback" {
		t.Errorf("fallback: %q", tok)
	}
}
