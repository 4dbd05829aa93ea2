package githubtest

import (
	"strings"
	"testing"
)

// TestValidator: the checks the fake relies on actually refuse what GitHub refuses.
func TestValidator(t *testing.T) {
	spec, err := LoadSpec("../../../../testdata/github/openapi/operations.json")
	if err != nil {
		t.Fatal(err)
	}
	op := func(method, path string) *Operation {
		o, _, ok := spec.Find(method, path)
		if !ok {
			t.Fatalf("no operation for %s %s", method, path)
		}
		return o
	}
	status := op("POST", "/repos/a/b/statuses/abc")
	create := op("POST", "/repos/a/b/check-runs")
	update := op("PATCH", "/repos/a/b/check-runs/12")
	mint := op("POST", "/app/installations/7/access_tokens")
	if _, params, _ := spec.Find("GET", "/repos/a/b/contents/dir/.slipway.yaml"); strings.Join(params, ",") != "a,b,dir/.slipway.yaml" {
		t.Errorf("contents params %v", params)
	}
	if _, params, _ := spec.Find("GET", "/repos/a/b/compare/main...feature/x"); strings.Join(params, ",") != "a,b,main...feature/x" {
		t.Errorf("compare params %v", params)
	}
	for _, tc := range []struct {
		name string
		op   *Operation
		body string
		want string // "" = valid
	}{
		{"status ok", status, `{"state":"success","context":"slipway/x","description":"d","target_url":"https://x"}`, ""},
		{"status null description", status, `{"state":"pending","description":null}`, ""},
		{"status missing state", status, `{"context":"x"}`, `required property "state"`},
		{"status bad state", status, `{"state":"running"}`, `running is not one of`},
		{"status unknown key", status, `{"state":"success","name":"x"}`, `unknown property "name"`},
		{"status not JSON", status, `{`, `not JSON`},
		{"status no body", status, ``, `required`},
		{"check ok", create, `{"name":"n","head_sha":"s","status":"completed","conclusion":"success","completed_at":"2026-01-02T03:04:05Z","output":{"title":"t","summary":"s","annotations":[{"path":"Dockerfile","start_line":1,"end_line":1,"annotation_level":"failure","message":"m"}]}}`, ""},
		{"check missing head_sha", create, `{"name":"n"}`, `required property "head_sha"`},
		{"check bad conclusion", create, `{"name":"n","head_sha":"s","conclusion":"canceled"}`, `canceled is not one of`},
		{"check output without summary", create, `{"name":"n","head_sha":"s","output":{"title":"t"}}`, `required property "summary"`},
		{"check summary too long", create, `{"name":"n","head_sha":"s","output":{"title":"t","summary":"` + strings.Repeat("x", 65536) + `"}}`, `more than 65535`},
		{"check annotation level", create, `{"name":"n","head_sha":"s","output":{"title":"t","summary":"s","annotations":[{"path":"p","start_line":1,"end_line":1,"annotation_level":"error","message":"m"}]}}`, `error is not one of`},
		{"check annotation line not integer", create, `{"name":"n","head_sha":"s","output":{"title":"t","summary":"s","annotations":[{"path":"p","start_line":1.5,"end_line":1,"annotation_level":"failure","message":"m"}]}}`, `want integer`},
		{"check bad date", create, `{"name":"n","head_sha":"s","started_at":"yesterday"}`, `RFC 3339`},
		{"check unknown output key", create, `{"name":"n","head_sha":"s","output":{"title":"t","summary":"s","annotations_count":1}}`, `unknown property "annotations_count"`},
		{"update completed without conclusion", update, `{"status":"completed"}`, `anyOf`},
		{"update ok", update, `{"name":"n","status":"in_progress"}`, ""},
		{"mint empty object", mint, `{}`, ""},
		{"mint null", mint, `null`, `null is not allowed`},
		{"mint scoped", mint, `{"repositories":["app"],"permissions":{"contents":"read"}}`, ""},
		{"mint bad permission level", mint, `{"permissions":{"contents":"admin"}}`, `admin is not one of`},
		{"mint unknown permission", mint, `{"permissions":{"everything":"write"}}`, `unknown property "everything"`},
	} {
		errs := spec.ValidateBody(tc.op, []byte(tc.body))
		got := strings.Join(errs, "; ")
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: unexpected %s", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
