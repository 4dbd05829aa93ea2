// Package gitlabtest is a fake GitLab REST API (v4) for tests: commit statuses, raw repository
// files and comparisons. No OpenAPI description of GitLab's API is available offline, so
// requests are checked against the attributes GitLab documents for each endpoint (unknown
// attributes, missing or invalid values are errors), and commit statuses follow GitLab's state
// machine, which refuses a transition to the state a status already has.
package gitlabtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/forge/forgetest"
)

// Request is one request the fake received.
type Request struct {
	Method, Path string
	// Operation names the endpoint: "statuses", "raw-file", "compare", or "" if unknown.
	Operation string
	// Project is the project ID or path the request named, decoded.
	Project string
	Body    json.RawMessage
	Status  int
}

// Fault answers a request with an error instead of handling it.
type Fault struct {
	Status int
	Header http.Header
	Body   string
}

// Status is the fake's last commit status of one (project, sha, name).
type Status struct {
	State, Ref, Description, TargetURL string
}

// Server is the fake. Create it with New.
type Server struct {
	*httptest.Server
	forgetest.ProblemLog
	// Token is the PRIVATE-TOKEN the fake accepts.
	Token string

	mu       sync.Mutex
	projects map[string]string // ID → path
	statuses map[string]*Status
	files    map[string]string
	changed  map[string][]string
	fault    func(Request) *Fault
	requests []Request
	nextID   int
}

var (
	statusPath  = regexp.MustCompile(`^/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$`)
	rawFilePath = regexp.MustCompile(`^/api/v4/projects/([^/]+)/repository/files/([^/]+)/raw$`)
	comparePath = regexp.MustCompile(`^/api/v4/projects/([^/]+)/repository/compare$`)
)

// statusAttributes are the body attributes of POST /projects/:id/statuses/:sha
// (https://docs.gitlab.com/ee/api/commits.html#set-the-pipeline-status-of-a-commit).
var statusAttributes = map[string]bool{"state": true, "ref": true, "name": true, "context": true, "target_url": true, "description": true, "coverage": true, "pipeline_id": true}

// New starts a fake GitLab with project 1 = group/app. The test fails at cleanup if any request
// was invalid.
func New(t forgetest.T) *Server {
	t.Helper()
	return NewOn(t, "127.0.0.1:0")
}

// NewOn is New listening on addr, e.g. a bridge gateway that pods reach.
func NewOn(t forgetest.T, addr string) *Server {
	t.Helper()
	s := &Server{Token: "glpat-test-token", projects: map[string]string{}, statuses: map[string]*Status{},
		files: map[string]string{}, changed: map[string][]string{}, nextID: 100}
	s.AddProject(1, "group/app")
	s.Server = forgetest.Start(t, "GitLab", addr, http.HandlerFunc(s.serve), &s.ProblemLog)
	return s
}

// AddProject registers a project.
func (s *Server) AddProject(id int, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projects[strconv.Itoa(id)] = path
}

// SetFault installs a hook that may answer any request with an error.
func (s *Server) SetFault(f func(Request) *Fault) { s.mu.Lock(); s.fault = f; s.mu.Unlock() }

// PutFile serves a file of project (ID) at ref.
func (s *Server) PutFile(project int, ref, path, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[fmt.Sprintf("%d@%s:%s", project, ref, path)] = content
}

// SetChanged serves a comparison of project (ID).
func (s *Server) SetChanged(project int, from, to string, files []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed[fmt.Sprintf("%d:%s...%s", project, from, to)] = files
}

// Requests returns every request so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Calls returns the accepted (2xx) requests of one operation.
func (s *Server) Calls(operation string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Operation == operation && r.Status/100 == 2 {
			out = append(out, r)
		}
	}
	return out
}

// StatusOf returns the last status of (project ID, sha, name).
func (s *Server) StatusOf(project int, sha, name string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.statuses[fmt.Sprintf("%d/%s/%s", project, sha, name)]
	if !ok {
		return Status{}, false
	}
	return *st, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	path := r.URL.EscapedPath()
	req := Request{Method: r.Method, Path: path, Body: json.RawMessage(slices.Clone(body))}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := len(s.requests)
	s.requests = append(s.requests, req)
	answer := func(status int, v any) {
		s.requests[idx].Status = status
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if v != nil {
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	message := func(status int, msg any) { answer(status, map[string]any{"message": msg}) }
	problem := func(format string, args ...any) {
		s.Problem("%s %s: %s", r.Method, path, fmt.Sprintf(format, args...))
	}

	var m []string
	switch {
	case r.Method == http.MethodPost && statusPath.MatchString(path):
		m, s.requests[idx].Operation = statusPath.FindStringSubmatch(path), "statuses"
	case r.Method == http.MethodGet && rawFilePath.MatchString(path):
		m, s.requests[idx].Operation = rawFilePath.FindStringSubmatch(path), "raw-file"
	case r.Method == http.MethodGet && comparePath.MatchString(path):
		m, s.requests[idx].Operation = comparePath.FindStringSubmatch(path), "compare"
	default:
		problem("not an endpoint the fake knows")
		message(http.StatusNotFound, "404 Not Found")
		return
	}
	pid, _ := url.PathUnescape(m[1])
	s.requests[idx].Project = pid
	if s.fault != nil {
		if f := s.fault(s.requests[idx]); f != nil {
			for k, vs := range f.Header {
				w.Header()[k] = vs
			}
			s.requests[idx].Status = f.Status
			w.WriteHeader(f.Status)
			_, _ = io.WriteString(w, f.Body)
			return
		}
	}
	if r.Header.Get("PRIVATE-TOKEN") != s.Token {
		problem("PRIVATE-TOKEN missing or wrong")
		message(http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	id := pid
	if _, err := strconv.Atoi(pid); err != nil {
		id = ""
		for k, p := range s.projects {
			if p == pid {
				id = k
			}
		}
	}
	if _, ok := s.projects[id]; !ok {
		message(http.StatusNotFound, "404 Project Not Found")
		return
	}
	switch s.requests[idx].Operation {
	case "statuses":
		s.setStatus(id, m[2], body, answer, message, problem)
	case "raw-file":
		file, _ := url.PathUnescape(m[2])
		content, ok := s.files[id+"@"+r.URL.Query().Get("ref")+":"+file]
		if !ok {
			message(http.StatusNotFound, "404 File Not Found")
			return
		}
		s.requests[idx].Status = http.StatusOK
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, content)
	case "compare":
		q := r.URL.Query()
		files, ok := s.changed[id+":"+q.Get("from")+"..."+q.Get("to")]
		if !ok {
			message(http.StatusNotFound, "404 Ref Not Found")
			return
		}
		var diffs []map[string]any
		for _, f := range files {
			diffs = append(diffs, map[string]any{"old_path": f, "new_path": f, "a_mode": "100644", "b_mode": "100644", "diff": "", "new_file": false, "renamed_file": false, "deleted_file": false})
		}
		answer(http.StatusOK, map[string]any{"commit": nil, "commits": []any{}, "diffs": diffs, "compare_timeout": false, "compare_same_ref": false, "web_url": s.URL})
	}
}

var rank = map[string]int{"pending": 1, "running": 2, "success": 3, "failed": 3, "canceled": 3, "skipped": 3}

var event = map[string]string{"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel", "skipped": "skip"}

func (s *Server) setStatus(id, sha string, body []byte, answer func(int, any), message func(int, any), problem func(string, ...any)) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		problem("body is not a JSON object: %s", body)
		message(http.StatusBadRequest, "400 Bad request")
		return
	}
	var errs []string
	for k, v := range in {
		if !statusAttributes[k] {
			errs = append(errs, fmt.Sprintf("unknown attribute %q", k))
			continue
		}
		switch k {
		case "coverage":
			if _, ok := v.(float64); !ok {
				errs = append(errs, "coverage is not a number")
			}
		case "pipeline_id":
			if f, ok := v.(float64); !ok || f != float64(int64(f)) {
				errs = append(errs, "pipeline_id is not an integer")
			}
		default:
			str, ok := v.(string)
			switch {
			case !ok:
				errs = append(errs, k+" is not a string")
			case len([]rune(str)) > 255:
				errs = append(errs, k+" is longer than 255 characters")
			case k == "target_url" && !strings.HasPrefix(str, "http://") && !strings.HasPrefix(str, "https://"):
				errs = append(errs, "target_url is not an http(s) URL")
			}
		}
	}
	state, _ := in["state"].(string)
	if rank[state] == 0 {
		errs = append(errs, fmt.Sprintf("state %q is not one of pending, running, success, failed, canceled, skipped", state))
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		problem("%s; body %s", strings.Join(errs, "; "), body)
		message(http.StatusBadRequest, map[string][]string{"base": errs})
		return
	}
	name, _ := in["name"].(string)
	if name == "" {
		name, _ = in["context"].(string)
	}
	if name == "" {
		name = "default"
	}
	key := id + "/" + sha + "/" + name
	cur := s.statuses[key]
	if cur != nil && rank[cur.State] < 3 && rank[state] <= rank[cur.State] {
		// GitLab's state machine: no transition to the same or an earlier state of a live status.
		message(http.StatusBadRequest, fmt.Sprintf("Cannot transition status via :%s from :%s", event[state], cur.State))
		return
	}
	st := &Status{State: state}
	st.Ref, _ = in["ref"].(string)
	st.Description, _ = in["description"].(string)
	st.TargetURL, _ = in["target_url"].(string)
	s.statuses[key] = st
	s.nextID++
	now := time.Now().UTC().Format(time.RFC3339)
	answer(http.StatusCreated, map[string]any{
		"id": s.nextID, "sha": sha, "ref": st.Ref, "status": state, "name": name, "target_url": st.TargetURL,
		"description": st.Description, "created_at": now, "started_at": nil, "finished_at": nil, "allow_failure": false,
		"coverage": nil, "pipeline_id": 7, "author": map[string]any{"id": 1, "username": "slipway-bot", "name": "Slipway"},
	})
}
