package gitlab

import (
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/forge"
	"github.com/slipway-dev/slipway/internal/testbed/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

const fixtureDir = "../../../testdata/gitlab/webhooks"

// FixtureEvents maps each vendored GitLab fixture to the X-Gitlab-Event it is sent with.
var FixtureEvents = map[string]string{
	"push.json":          "Push Hook",
	"tag_push.json":      "Tag Push Hook",
	"merge_request.json": "Merge Request Hook",
	"pipeline.json":      "Pipeline Hook",
	"job.json":           "Job Hook",
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseOfficialExamples(t *testing.T) {
	got := map[string]forge.Delivery{}
	for name, event := range FixtureEvents {
		d, err := Parse(event, readFixture(t, name))
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

// mergeRequest returns the fixture with its action and oldrev replaced.
func mergeRequestFixture(t *testing.T, action, oldrev string) []byte {
	var m map[string]any
	if err := json.Unmarshal(readFixture(t, "merge_request.json"), &m); err != nil {
		t.Fatal(err)
	}
	attrs := m["object_attributes"].(map[string]any)
	attrs["action"] = action
	if oldrev == "" {
		delete(attrs, "oldrev")
	} else {
		attrs["oldrev"] = oldrev
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMergeRequestActions(t *testing.T) {
	for _, tc := range []struct {
		action, oldrev string
		build          bool
	}{
		{"open", "", true},
		{"reopen", "", true},
		{"update", strings.Repeat("b", 40), true},
		{"update", "", false},
		{"close", "", false},
		{"merge", "", false},
		{"approved", "", false},
	} {
		d, err := Parse("Merge Request Hook", mergeRequestFixture(t, tc.action, tc.oldrev))
		if err != nil {
			t.Fatalf("%s: %v", tc.action, err)
		}
		if got := d.Source != nil; got != tc.build {
			t.Errorf("action %q oldrev %q: build=%v, want %v (ignored: %q)", tc.action, tc.oldrev, got, tc.build, d.Ignored)
		}
	}
}

func TestBranchDeletionIsIgnored(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(readFixture(t, "push.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["after"] = forge.ZeroSHA
	m["checkout_sha"] = nil
	b, _ := json.Marshal(m)
	d, err := Parse("Push Hook", b)
	if err != nil || d.Source != nil || !strings.Contains(d.Ignored, "deleted") {
		t.Fatalf("Parse = %+v, %v", d, err)
	}
}

func newReceiver(t *testing.T, signing string, now time.Time) *Receiver {
	t.Helper()
	r, err := NewReceiver([]byte("token"), []byte(signing), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func signedHeaders(key []byte, id string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderToken, "token")
	h.Set(HeaderEvent, "Push Hook")
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, "v1,"+Sign(key, id, strconv.FormatInt(ts.Unix(), 10), body))
	return h
}

func TestReceiveVerification(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := readFixture(t, "push.json")
	key := []byte("signing-key")

	plain := http.Header{}
	plain.Set(HeaderEvent, "Push Hook")
	plain.Set(HeaderToken, "token")
	plain.Set(HeaderEventUUID, "uuid-1")

	for _, tc := range []struct {
		name    string
		signing string
		header  func() http.Header
		body    []byte
		wantErr error
	}{
		{"token ok", "", func() http.Header { return plain.Clone() }, body, nil},
		{"token missing", "", func() http.Header { h := plain.Clone(); h.Del(HeaderToken); return h }, body, forge.ErrUnauthenticated},
		{"token wrong", "", func() http.Header { h := plain.Clone(); h.Set(HeaderToken, "tokeN"); return h }, body, forge.ErrUnauthenticated},
		{"event missing", "", func() http.Header { h := plain.Clone(); h.Del(HeaderEvent); return h }, body, forge.ErrInvalid},
		{"signed ok", string(key), func() http.Header { return signedHeaders(key, "msg_1", now, body) }, body, nil},
		{"signed whsec form", "whsec_c2lnbmluZy1rZXk=", func() http.Header { return signedHeaders(key, "msg_1", now, body) }, body, nil},
		{"signed, second of two signatures", string(key), func() http.Header {
			h := signedHeaders(key, "msg_1", now, body)
			h.Set(HeaderSignature, "v1,AAAA "+h.Get(HeaderSignature))
			return h
		}, body, nil},
		{"signing configured, unsigned", string(key), func() http.Header { return plain.Clone() }, body, forge.ErrUnauthenticated},
		{"stale timestamp", string(key), func() http.Header { return signedHeaders(key, "msg_1", now.Add(-6*time.Minute), body) }, body, forge.ErrUnauthenticated},
		{"future timestamp", string(key), func() http.Header { return signedHeaders(key, "msg_1", now.Add(6*time.Minute), body) }, body, forge.ErrUnauthenticated},
		{"tampered body", string(key), func() http.Header { return signedHeaders(key, "msg_1", now, body) }, append([]byte(" "), body...), forge.ErrUnauthenticated},
		{"wrong key", string(key), func() http.Header { return signedHeaders([]byte("other"), "msg_1", now, body) }, body, forge.ErrUnauthenticated},
		{"id swapped", string(key), func() http.Header {
			h := signedHeaders(key, "msg_1", now, body)
			h.Set(HeaderWebhookID, "msg_2")
			return h
		}, body, forge.ErrUnauthenticated},
		{"v2 scheme", string(key), func() http.Header {
			h := signedHeaders(key, "msg_1", now, body)
			h.Set(HeaderSignature, strings.Replace(h.Get(HeaderSignature), "v1,", "v2,", 1))
			return h
		}, body, forge.ErrUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := newReceiver(t, tc.signing, now).Receive(tc.header(), tc.body)
			if tc.wantErr == nil {
				if err != nil || d.Source == nil {
					t.Fatalf("Receive = %+v, %v", d, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Receive error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestDeliveryIDPreference(t *testing.T) {
	h := http.Header{}
	h.Set(HeaderEventUUID, "uuid")
	if got := DeliveryID(h); got != "uuid" {
		t.Fatalf("got %q", got)
	}
	h.Set(HeaderIdempotencyKey, "idem")
	if got := DeliveryID(h); got != "idem" {
		t.Fatalf("got %q", got)
	}
	h.Set(HeaderWebhookID, "msg")
	if got := DeliveryID(h); got != "msg" {
		t.Fatalf("got %q", got)
	}
}

// FuzzReceive: arbitrary bodies with a valid token never panic, and whatever is accepted for a
// build passes source validation.
func FuzzReceive(f *testing.F) {
	for name, event := range FixtureEvents {
		f.Add(event, readFixture(f, name))
	}
	f.Add("Push Hook", []byte(`{"ref":"refs/heads/x","checkout_sha":"`+strings.Repeat("a", 40)+`"}`))
	f.Add("Merge Request Hook", []byte(`{"object_attributes":{"action":"open","iid":-1}}`))
	r, err := NewReceiver([]byte("token"), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set(HeaderToken, "token")
		h.Set(HeaderEvent, event)
		d, err := r.Receive(h, body)
		if err != nil {
			if !errors.Is(err, forge.ErrInvalid) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if (d.Source == nil) == (d.Ignored == "") {
			t.Fatalf("exactly one of Source and Ignored must be set: %+v", d)
		}
		if d.Source != nil {
			if err := forge.ValidateSource(d.Source); err != nil {
				t.Fatalf("accepted an invalid source: %v", err)
			}
		}
	})
}
