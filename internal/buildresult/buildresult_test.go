package buildresult

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestExitCodesAreDistinct(t *testing.T) {
	seen := map[int]Outcome{}
	for _, o := range []Outcome{Succeeded, InternalError, DaemonUnavailable, SourceFailed, ConfigInvalid, BuildFailed, PushFailed, Canceled} {
		c := o.ExitCode()
		if prev, dup := seen[c]; dup {
			t.Fatalf("%s and %s share exit code %d", prev, o, c)
		}
		seen[c] = o
		back, ok := OutcomeForExitCode(c)
		if !ok || back != o {
			t.Errorf("OutcomeForExitCode(%d) = %q, %v; want %q", c, back, ok, o)
		}
	}
	if Outcome("Bogus").ExitCode() != ExitInternalError {
		t.Error("unknown outcome should map to the generic exit code")
	}
	if _, ok := OutcomeForExitCode(137); ok {
		t.Error("137 is not a builder exit code")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := Result{
		Outcome: BuildFailed,
		Tags:    []string{"127.0.0.1:5000/app:abc", "127.0.0.1:5000/app:main"},
		Timings: Timings{Daemon: 310, Fetch: 120, Solve: 5400},
		Steps:   Steps{Total: 7, Cached: 3},
		Failure: &Failure{Step: "[build 4/5] RUN make", Line: 9, ExitCode: 2, Message: "process did not complete"},
	}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsRune(b, '\n') {
		t.Errorf("encoded result has a newline: %s", b)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Encode(out)
	if !bytes.Equal(b, b2) {
		t.Errorf("round trip changed the result:\n%s\n%s", b, b2)
	}
	want := `{"outcome":"BuildFailed","tags":["127.0.0.1:5000/app:abc","127.0.0.1:5000/app:main"],"timings":{"daemon":310,"fetch":120,"solve":5400},"steps":{"total":7,"cached":3},"failure":{"step":"[build 4/5] RUN make","line":9,"exitCode":2,"message":"process did not complete"}}`
	if string(b) != want {
		t.Errorf("wire format changed:\n got %s\nwant %s", b, want)
	}
}

func TestEncodeTruncates(t *testing.T) {
	manyTags := make([]string, 200)
	for i := range manyTags {
		manyTags[i] = "registry.example.com/some/long/repository/name:tag-" + strings.Repeat("x", 20)
	}
	tests := []struct {
		name string
		in   Result
		keep func(t *testing.T, r Result)
	}{
		{"long message", Result{Outcome: BuildFailed, Digest: "sha256:" + strings.Repeat("a", 64),
			Failure: &Failure{Step: "s", Line: 3, Message: strings.Repeat("é", 5000)}},
			func(t *testing.T, r Result) {
				if r.Failure.Line != 3 || r.Failure.Step != "s" || !strings.HasSuffix(r.Failure.Message, ellipsis) {
					t.Errorf("failure lost its fields: %+v", r.Failure)
				}
			}},
		{"message of escaped characters", Result{Outcome: BuildFailed, Failure: &Failure{Message: strings.Repeat("\x01<>&\"", 3000)}}, nil},
		{"long step and message", Result{Outcome: BuildFailed, Failure: &Failure{Step: strings.Repeat("s", 9000), Message: strings.Repeat("m", 9000)}},
			func(t *testing.T, r Result) {
				if r.Failure.Message != "" {
					t.Errorf("message should be dropped before the step is cut")
				}
			}},
		{"many tags", Result{Outcome: Succeeded, Digest: "sha256:" + strings.Repeat("b", 64), Tags: manyTags, Warnings: []string{"cache export failed"}},
			func(t *testing.T, r Result) {
				if r.Digest == "" || len(r.Tags) == 0 || r.Warnings != nil {
					t.Errorf("digest and first tags must survive, warnings go first: %+v", r)
				}
			}},
		{"invalid UTF-8", Result{Outcome: BuildFailed, Failure: &Failure{Message: strings.Repeat("\xff\xfe", 4000)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxEncodedSize {
				t.Fatalf("encoded %d bytes, limit %d", len(b), MaxEncodedSize)
			}
			r, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tt.in.Outcome {
				t.Errorf("outcome = %q", r.Outcome)
			}
			if r.Failure != nil && !utf8.ValidString(r.Failure.Message) {
				t.Errorf("message is not valid UTF-8")
			}
			if tt.keep != nil {
				tt.keep(t, r)
			}
		})
	}
	// Encode must not modify the caller's value.
	in := Result{Outcome: BuildFailed, Failure: &Failure{Message: strings.Repeat("m", 9000)}, Tags: manyTags}
	if _, err := Encode(in); err != nil {
		t.Fatal(err)
	}
	if len(in.Failure.Message) != 9000 || len(in.Tags) != 200 {
		t.Error("Encode modified its argument")
	}
}

func TestDecodeTolerance(t *testing.T) {
	good := `{"outcome":"Succeeded","digest":"sha256:abc","timings":{},"steps":{"total":1,"cached":1}}`
	tests := []struct {
		name    string
		in      string
		want    Outcome
		wantErr bool
	}{
		{"plain", good, Succeeded, false},
		{"trailing newline and spaces", "  " + good + " \n\n", Succeeded, false},
		{"log tail", "#5 [2/2] RUN true\n#5 DONE 0.1s\n" + good + "\n", Succeeded, false},
		{"last object wins", `{"outcome":"BuildFailed"}` + "\n" + good, Succeeded, false},
		{"cut off last line falls back", good + "\n" + `{"outcome":"Bui`, Succeeded, false},
		{"unknown fields", `{"outcome":"Succeeded","future":{"x":1}}`, Succeeded, false},
		{"unknown outcome kept", `{"outcome":"Exploded"}`, "Exploded", false},
		{"empty", "", "", true},
		{"garbage", "\x00\x01 not json", "", true},
		{"object without outcome", `{"digest":"x"}`, "", true},
		{"wrong types", `{"outcome":7}`, "", true},
		{"array", `[1,2]`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if r.Outcome != tt.want {
				t.Errorf("outcome = %q, want %q", r.Outcome, tt.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	r := Result{Outcome: BuildFailed, Failure: &Failure{Step: "[2/2] RUN false", Line: 4, ExitCode: 1, Message: "boom"}}
	want := "BuildFailed at [2/2] RUN false (Dockerfile line 4), exit code 1: boom"
	if got := r.Summary(); got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if got := (Result{Outcome: Succeeded}).Summary(); got != "Succeeded" {
		t.Errorf("Summary() = %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"outcome":"Succeeded","digest":"sha256:abc","tags":["a"],"timings":{"solve":1},"steps":{"total":1,"cached":1}}`))
	f.Add([]byte("log line\n{\"outcome\":\"BuildFailed\",\"failure\":{\"line\":3}}\n"))
	f.Add([]byte(`{"outcome":"x","failure":null,"tags":null}`))
	f.Add([]byte{0xff, '{', '\n', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		if r.Outcome == "" {
			t.Fatal("decoded a result without an outcome")
		}
		b, err := Encode(r)
		if err != nil {
			t.Fatalf("re-encoding a decoded result: %v", err)
		}
		if len(b) > MaxEncodedSize {
			t.Fatalf("re-encoded %d bytes", len(b))
		}
		if _, err := Decode(b); err != nil {
			t.Fatalf("decoding our own encoding: %v", err)
		}
	})
}

func FuzzEncode(f *testing.F) {
	f.Add("[2/3] RUN make", "exit status 2", "sha256:abc", "reg/app:v1", 12, 2)
	f.Add(strings.Repeat("s", 5000), strings.Repeat("\u2028", 3000), "", "", 0, 0)
	f.Fuzz(func(t *testing.T, step, msg, digest, tag string, line, code int) {
		in := Result{Outcome: BuildFailed, Digest: digest, Tags: []string{tag, tag + "2"},
			Failure: &Failure{Step: step, Line: line, ExitCode: code, Message: msg}}
		b, err := Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxEncodedSize {
			t.Fatalf("encoded %d bytes", len(b))
		}
		if !json.Valid(b) || bytes.ContainsRune(b, '\n') {
			t.Fatalf("not one line of valid JSON: %q", b)
		}
		r, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome != BuildFailed {
			t.Fatalf("outcome = %q", r.Outcome)
		}
		// A digest that fits comfortably on the wire survives; an absurd one (control characters
		// escape to six bytes each) may be dropped to keep the outcome.
		wire, _ := json.Marshal(digest)
		if len(wire) < 1000 && r.Digest != digest && utf8.ValidString(digest) {
			t.Fatalf("digest changed: %q -> %q", digest, r.Digest)
		}
	})
}
