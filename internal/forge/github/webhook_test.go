package github

import (
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/testbed/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

const fixtureDir = "../../../testdata/github/webhooks"

func TestVerifySignature(t *testing.T) {
	secret, body := []byte("It's a Secret to Everybody"), []byte("Hello, World!")
	// The example from GitHub's "Validating webhook deliveries" documentation.
	const documented = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := Sign(secret, body); got != documented {
		t.Fatalf("Sign = %s, want GitHub's documented %s", got, documented)
	}
	for _, tc := range []struct {
		name, header string
		secret, body []byte
		ok           bool
	}{
		{"valid", documented, secret, body, true},
		{"missing", "", secret, body, false},
		{"sha1 only", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59", secret, body, false},
		{"wrong secret", documented, []byte("another secret"), body, false},
		{"tampered body", documented, secret, []byte("Hello, World?"), false},
		{"not hex", "sha256=zz", secret, body, false},
		{"truncated", documented[:len(documented)-2], secret, body, false},
		{"uppercase prefix", strings.Replace(documented, "sha256", "SHA256", 1), secret, body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.secret, tc.header, tc.body)
			if tc.ok != (err == nil) {
				t.Fatalf("VerifySignature = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, forge.ErrUnauthenticated) {
				t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
			}
		})
	}
}

func TestNewReceiverRejectsEmptySecret(t *testing.T) {
	if _, err := NewReceiver(nil); err == nil {
		t.Fatal("NewReceiver(nil) succeeded")
	}
}

// TestParseOfficialExamples runs every vendored octokit example through Parse and compares the
// normalised result with a reviewed golden file, so any change in what we build from a real
// payload shows up in review.
func TestParseOfficialExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	got := map[string]forge.Delivery{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		d, err := Parse(EventFromFixtureName(name), body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if (d.Source == nil) == (d.Ignored == "") {
			t.Errorf("%s: exactly one of Source and Ignored must be set: %+v", name, d)
		}
		got[name] = d
	}
	golden.CompareJSON(t, "testdata/parse.golden.json", got, *update)
}

// EventFromFixtureName reads the X-GitHub-Event from a fixture's name, <event>.<action>.<n>.json.
func EventFromFixtureName(name string) string {
	event, _, _ := strings.Cut(name, ".")
	return event
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, event, body, want string }{
		{"truncated JSON", "push", `{"ref":"refs/heads/main","after":"`, "push payload"},
		{"no repository", "push", `{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `"}`, "repository.full_name"},
		{"no sha", "push", `{"ref":"refs/heads/main","repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "not a 40-hex SHA"},
		{"short sha", "push", `{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "not a 40-hex SHA"},
		{"odd ref", "push", `{"ref":"refs/notes/x","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "neither a branch nor a tag"},
		{"ref with ..", "push", `{"ref":"refs/heads/../x","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "not a valid"},
		{"hostile repo", "push", `{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r;rm -rf","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "owner/name"},
		{"ssh clone url", "push", `{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"git@github.com:o/r.git"}}`, "http(s) URL"},
		{"pull request body for a push header", "push", `{"action":"opened","number":1,"pull_request":{"head":{"sha":"` + strings.Repeat("a", 40) + `"}},"repository":{"full_name":"o/r","html_url":"https://github.com/o/r","clone_url":"https://github.com/o/r.git"}}`, "neither a branch nor a tag"},
		{"not JSON", "pull_request", `<xml/>`, "pull_request payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.event, []byte(tc.body))
			if !errors.Is(err, forge.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestReceiveUsesDeliveryHeader(t *testing.T) {
	r, err := NewReceiver([]byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	h := http.Header{}
	h.Set(HeaderSignature256, Sign([]byte("s"), body))
	h.Set(HeaderEvent, "ping")
	h.Set(HeaderDelivery, "d-1")
	d, err := r.Receive(h, body)
	if err != nil || d.ID != "d-1" || d.Ignored != "ping" {
		t.Fatalf("Receive = %+v, %v", d, err)
	}
	h.Del(HeaderEvent)
	if _, err := r.Receive(h, body); !errors.Is(err, forge.ErrInvalid) {
		t.Fatalf("missing event header: %v", err)
	}
}

// FuzzReceive feeds arbitrary bodies and event names, correctly signed, through the receiver:
// it must never panic, and anything it accepts for building must pass source validation.
func FuzzReceive(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	sort.Strings(files)
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(EventFromFixtureName(filepath.Base(file)), body)
	}
	f.Add("push", []byte(`{}`))
	f.Add("pull_request", []byte(`{"pull_request":null}`))
	secret := []byte("fuzz")
	r, err := NewReceiver(secret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set(HeaderSignature256, Sign(secret, body))
		h.Set(HeaderEvent, event)
		d, err := r.Receive(h, body)
		if err != nil {
			if !errors.Is(err, forge.ErrInvalid) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if d.Source != nil {
			if d.Ignored != "" {
				t.Fatalf("both Source and Ignored set: %+v", d)
			}
			if err := forge.ValidateSource(d.Source); err != nil {
				t.Fatalf("accepted an invalid source: %v", err)
			}
		} else if d.Ignored == "" {
			t.Fatalf("neither Source nor Ignored set: %+v", d)
		}
	})
}
