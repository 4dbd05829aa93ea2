package forgetest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// recorder is a T that keeps what a fake reports, to check the cleanup contract.
type recorder struct {
	errors   []string
	cleanups []func()
}

func (*recorder) Helper()             {}
func (r *recorder) Fatal(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// TestProblemsFailTheTest: a problem a fake records fails the test at cleanup, unless a test
// that provoked it took it.
func TestProblemsFailTheTest(t *testing.T) {
	rec := &recorder{}
	var log ProblemLog
	srv := Start(rec, "Forge", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Problem("%s %s: not an endpoint", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}), &log)
	for _, path := range []string{"/provoked", "/unexpected"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if path == "/provoked" {
			if got := log.TakeProblems(); len(got) != 1 {
				t.Errorf("taken %v", got)
			}
		}
	}
	for _, f := range rec.cleanups {
		f()
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "fake Forge: GET /unexpected") {
		t.Errorf("cleanup reported %v, want the one problem not taken", rec.errors)
	}
}
