// Package golden compares test output with reviewed files, so that a change in what Slipway
// produces (a normalised webhook, a pod, a chart render) shows up as a diff in review.
package golden

import (
	"encoding/json"
	"os"
	"testing"
)

// Compare fails t when got differs from the file at path; with update it rewrites the file
// instead (run `go test -update` and review the diff).
func Compare(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("output differs from %s; run go test -update and review the diff.\ngot:\n%s", path, got)
	}
}

// CompareJSON is Compare for a value rendered as indented JSON.
func CompareJSON(t testing.TB, path string, v any, update bool) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	Compare(t, path, append(data, '\n'), update)
}
