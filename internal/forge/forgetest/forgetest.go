// Package forgetest holds what the fake forges (githubtest, gitlabtest) share: how they start,
// and how they collect the requests a real forge would refuse, which fail the test at cleanup.
package forgetest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"
)

// T is the part of testing.TB the fakes use, so that tools outside tests (make demo) can run
// them too.
type T interface {
	Helper()
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Cleanup(f func())
}

// ProblemLog collects requests a real forge would have refused as invalid. Embed it in a fake.
type ProblemLog struct {
	mu   sync.Mutex
	list []string
}

// Problem records one.
func (p *ProblemLog) Problem(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// Problems lists the problems so far.
func (p *ProblemLog) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.list)
}

// TakeProblems returns and forgets the problems so far, for tests that provoke them.
func (p *ProblemLog) TakeProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.list
	p.list = nil
	return out
}

// Start serves h on addr (e.g. "127.0.0.1:0", or a bridge gateway that pods reach) until the
// test ends, and then fails the test with every problem the fake named forge collected.
func Start(t T, forge, addr string, h http.Handler, p *ProblemLog) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		for _, msg := range p.Problems() {
			t.Errorf("fake %s: %s", forge, msg)
		}
	})
	return srv
}
