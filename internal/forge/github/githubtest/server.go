// Package githubtest is a fake GitHub REST API for tests: a GitHub App's installations,
// installation tokens, commit statuses, check runs, contents and compare. Every request is
// checked against GitHub's published OpenAPI description (the vendored subset) and its
// authentication is verified the way GitHub does (an RS256 App JWT for token mints, an
// installation token with the right permissions and repositories for the rest). A request that
// GitHub would refuse is answered as GitHub would (401, 403, 404, 422) and recorded as a test
// error.
package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/forge/forgetest"
)

// APIPrefix is where the fake serves the API, as GitHub Enterprise Server does; go-github's
// WithEnterpriseURLs adds it to the server's URL.
const APIPrefix = "/api/v3"

// OpMintToken is the operation ID of installation token mints, which API budgets leave out.
const OpMintToken = "apps/create-installation-access-token"

// Request is one request the fake received.
type Request struct {
	Method, Path string
	// Operation is the OpenAPI operationId, e.g. "checks/create"; "" for an unknown route.
	Operation string
	// Installation whose token authenticated the request (0 for JWT or none).
	Installation int64
	// Token is the installation token used, if any.
	Token string
	Body  json.RawMessage
	// Status is what the fake answered.
	Status int
}

// Installation is a GitHub App installation the fake knows.
type Installation struct {
	ID int64
	// Repositories are owner/name; the installation may access only these.
	Repositories []string
	// Permissions granted to the App, e.g. {"checks": "write", "contents": "read"}.
	Permissions map[string]string
}

// Fault is returned by a fault hook to answer a request with an error instead of handling it.
type Fault struct {
	Status int
	Header http.Header
	Body   string
}

type token struct {
	installation int64
	repos        []string
	perms        map[string]string
	expires      time.Time
}

type checkRun struct {
	ID         int64          `json:"id"`
	Repo       string         `json:"-"`
	Body       map[string]any `json:"-"`
	Status     string         `json:"status"`
	Conclusion *string        `json:"conclusion"`
}

// Server is the fake. Create it with New.
type Server struct {
	*httptest.Server
	forgetest.ProblemLog
	AppID  int64
	Key    *rsa.PrivateKey
	KeyPEM []byte

	t      forgetest.T
	spec   *Spec
	status map[string]any // the recorded create-status response from @octokit/fixtures

	mu            sync.Mutex
	now           func() time.Time
	tokenTTL      time.Duration
	installations map[int64]*Installation
	tokens        map[string]*token
	checkRuns     map[int64]*checkRun
	nextID        int64
	files         map[string]string
	changed       map[string][]string
	fault         func(Request) *Fault
	requests      []Request
}

// New starts a fake GitHub for an App with one installation (ID 1) of acme/app, with the
// permissions Slipway asks for. The test fails at cleanup if any request was invalid.
func New(t forgetest.T) *Server {
	t.Helper()
	return NewOn(t, "127.0.0.1:0")
}

// NewOn is New listening on addr, e.g. a bridge gateway that pods reach.
func NewOn(t forgetest.T, addr string) *Server {
	t.Helper()
	root := repoRoot(t)
	spec, err := LoadSpec(filepath.Join(root, "testdata", "github", "openapi", "operations.json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		AppID: 4242, Key: key,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		t:      t, spec: spec, status: loadStatusFixture(t, root),
		now: time.Now, tokenTTL: time.Hour,
		installations: map[int64]*Installation{}, tokens: map[string]*token{}, checkRuns: map[int64]*checkRun{},
		nextID: 1000, files: map[string]string{}, changed: map[string][]string{},
	}
	s.AddInstallation(Installation{ID: 1, Repositories: []string{"acme/app"}, Permissions: map[string]string{
		"checks": "write", "statuses": "write", "contents": "read", "metadata": "read", "pull_requests": "read",
	}})
	s.Server = forgetest.Start(t, "GitHub", addr, http.HandlerFunc(s.serve), &s.ProblemLog)
	return s
}

func repoRoot(t forgetest.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("locating githubtest source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

func loadStatusFixture(t forgetest.T, root string) map[string]any {
	data, err := os.ReadFile(filepath.Join(root, "testdata", "github", "fixtures", "create-status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var scenario []struct {
		Method   string          `json:"method"`
		Status   int             `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(data, &scenario); err != nil {
		t.Fatal(err)
	}
	for _, x := range scenario {
		if x.Method == "post" && x.Status == http.StatusCreated {
			var resp map[string]any
			if err := json.Unmarshal(x.Response, &resp); err != nil {
				t.Fatal(err)
			}
			return resp
		}
	}
	t.Fatal("create-status fixture has no POST 201")
	return nil
}

// AddInstallation adds or replaces an installation.
func (s *Server) AddInstallation(in Installation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installations[in.ID] = &in
}

// APIURL is what to configure as the App's API URL.
func (s *Server) APIURL() string { return s.URL }

// SetClock sets the fake's clock, which decides tokens' expires_at and expiry.
func (s *Server) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

// SetTokenTTL sets the lifetime of minted tokens (GitHub's is one hour).
func (s *Server) SetTokenTTL(d time.Duration) { s.mu.Lock(); s.tokenTTL = d; s.mu.Unlock() }

// SetFault installs a hook that may answer any request with an error (nil: handle normally).
func (s *Server) SetFault(f func(Request) *Fault) { s.mu.Lock(); s.fault = f; s.mu.Unlock() }

// PutFile serves content for GET contents of repo at ref.
func (s *Server) PutFile(repo, ref, path, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[repo+"@"+ref+":"+path] = content
}

// SetChanged serves files for GET compare/{base}...{head} of repo.
func (s *Server) SetChanged(repo, base, head string, files []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed[repo+":"+base+"..."+head] = files
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Calls returns the requests of one operation that GitHub accepted (2xx).
func (s *Server) Calls(operation string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Operation == operation && r.Status/100 == 2 {
			out = append(out, r)
		}
	}
	return out
}

// APICalls counts the requests that reached the API, failed or not, except token mints: what
// an API budget counts.
func (s *Server) APICalls() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Operation != OpMintToken {
			n++
		}
	}
	return n
}

// CheckRun returns the fake's state of a check run.
func (s *Server) CheckRun(id int64) (status, conclusion string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cr := s.checkRuns[id]
	if cr == nil {
		return "", "", false
	}
	if cr.Conclusion != nil {
		conclusion = *cr.Conclusion
	}
	return cr.Status, conclusion, true
}

// serve handles one request: route, record, fault, authenticate, validate, answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	path := strings.TrimPrefix(r.URL.EscapedPath(), APIPrefix)
	req := Request{Method: r.Method, Path: path, Body: json.RawMessage(slices.Clone(body))}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := len(s.requests)
	s.requests = append(s.requests, req)
	answer := func(status int, v any) {
		s.requests[idx].Status = status
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		w.WriteHeader(status)
		if v != nil {
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	message := func(status int, msg string) {
		answer(status, map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest", "status": strconv.Itoa(status)})
	}
	if !strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
		s.Problem("%s %s is outside %s (GHES base URL not applied)", r.Method, r.URL.Path, APIPrefix)
		message(http.StatusNotFound, "Not Found")
		return
	}
	op, params, ok := s.spec.Find(r.Method, path)
	if !ok {
		s.Problem("%s %s is not an operation in operations.json", r.Method, path)
		message(http.StatusNotFound, "Not Found")
		return
	}
	s.requests[idx].Operation = op.ID
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
	if errs := s.spec.ValidateBody(op, body); len(errs) > 0 {
		s.Problem("%s %s (%s): %s; body %s", r.Method, path, op.ID, strings.Join(errs, "; "), body)
		message(http.StatusUnprocessableEntity, "Invalid request.\n\n"+strings.Join(errs, "\n"))
		return
	}
	if accept := r.Header.Values("Accept"); len(accept) == 0 {
		s.Problem("%s %s: no Accept header", r.Method, path)
	}
	now := s.now()
	if op.ID == OpMintToken {
		s.mint(r, params, body, now, answer, message)
		return
	}
	owner, repo := params[0], params[1]
	full := owner + "/" + repo
	tok, status, msg := s.authenticate(r, full, now)
	if tok == nil {
		// A token minted before its repository joined the installation is refused, as GitHub
		// does; that is the client's state, not an invalid request.
		if status != http.StatusNotFound {
			s.Problem("%s %s: %s", r.Method, path, msg)
		}
		message(status, msg)
		return
	}
	s.requests[idx].Installation, s.requests[idx].Token = tok.installation, strings.Fields(r.Header.Get("Authorization"))[1]
	need := map[string][2]string{
		"repos/create-commit-status":          {"statuses", "write"},
		"checks/create":                       {"checks", "write"},
		"checks/update":                       {"checks", "write"},
		"repos/get-content":                   {"contents", "read"},
		"repos/compare-commits-with-basehead": {"contents", "read"},
	}[op.ID]
	if need[0] != "" && !allows(tok.perms[need[0]], need[1]) {
		s.Problem("%s %s: token lacks %s:%s (has %v)", r.Method, path, need[0], need[1], tok.perms)
		message(http.StatusForbidden, "Resource not accessible by integration")
		return
	}
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	switch op.ID {
	case "repos/create-commit-status":
		resp := map[string]any{}
		for k, v := range s.status {
			resp[k] = v
		}
		for _, k := range []string{"state", "description", "target_url", "context"} {
			resp[k] = in[k]
		}
		if resp["context"] == nil {
			resp["context"] = "default"
		}
		s.nextID++
		resp["id"] = s.nextID
		resp["url"] = s.URL + APIPrefix + "/repos/" + full + "/statuses/" + params[2]
		answer(http.StatusCreated, resp)
	case "checks/create":
		if msg := checkRunRules(in); msg != "" {
			s.Problem("%s %s: %s", r.Method, path, msg)
			message(http.StatusUnprocessableEntity, msg)
			return
		}
		s.nextID++
		cr := &checkRun{ID: s.nextID, Repo: full, Body: in, Status: "queued"}
		applyCheckRun(cr, in)
		s.checkRuns[cr.ID] = cr
		answer(http.StatusCreated, s.checkRunResponse(cr, full))
	case "checks/update":
		id, _ := strconv.ParseInt(params[2], 10, 64)
		cr := s.checkRuns[id]
		if cr == nil || cr.Repo != full {
			s.Problem("%s %s: no check run %d in %s", r.Method, path, id, full)
			message(http.StatusNotFound, "Not Found")
			return
		}
		if msg := checkRunRules(in); msg != "" {
			s.Problem("%s %s: %s", r.Method, path, msg)
			message(http.StatusUnprocessableEntity, msg)
			return
		}
		applyCheckRun(cr, in)
		answer(http.StatusOK, s.checkRunResponse(cr, full))
	case "repos/get-content":
		ref := r.URL.Query().Get("ref")
		content, ok := s.files[full+"@"+ref+":"+params[2]]
		if !ok {
			message(http.StatusNotFound, "Not Found")
			return
		}
		sum := sha256.Sum256([]byte(content))
		answer(http.StatusOK, map[string]any{
			"type": "file", "encoding": "base64", "size": len(content), "name": filepath.Base(params[2]), "path": params[2],
			"content": base64.StdEncoding.EncodeToString([]byte(content)), "sha": hex.EncodeToString(sum[:20]),
			"url": s.URL + APIPrefix + "/repos/" + full + "/contents/" + params[2], "git_url": nil, "html_url": nil, "download_url": nil,
			"_links": map[string]any{"self": s.URL, "git": nil, "html": nil},
		})
	case "repos/compare-commits-with-basehead":
		files, ok := s.changed[full+":"+params[2]]
		if !ok {
			message(http.StatusNotFound, "Not Found")
			return
		}
		var fs []map[string]any
		for _, f := range files {
			fs = append(fs, map[string]any{"filename": f, "status": "modified", "sha": "0", "additions": 1, "deletions": 0, "changes": 1})
		}
		answer(http.StatusOK, map[string]any{"status": "ahead", "ahead_by": 1, "behind_by": 0, "total_commits": 1, "commits": []any{}, "files": fs})
	default:
		message(http.StatusNotFound, "Not Found")
	}
}

// checkRunRules are what GitHub enforces beyond the schema.
func checkRunRules(in map[string]any) string {
	status, _ := in["status"].(string)
	_, hasConclusion := in["conclusion"]
	_, hasCompletedAt := in["completed_at"]
	switch {
	case status == "completed" && !hasConclusion:
		return "conclusion is required when status is completed"
	case hasCompletedAt && !hasConclusion:
		return "conclusion is required when completed_at is given"
	case hasConclusion && status != "" && status != "completed":
		return "a conclusion sets status completed; status " + status + " contradicts it"
	}
	if out, ok := in["output"].(map[string]any); ok {
		if a, ok := out["annotations"].([]any); ok && len(a) > 50 {
			return "more than 50 annotations"
		}
	}
	return ""
}

func applyCheckRun(cr *checkRun, in map[string]any) {
	if st, ok := in["status"].(string); ok {
		cr.Status = st
	}
	if c, ok := in["conclusion"].(string); ok {
		cr.Status, cr.Conclusion = "completed", &c
	}
	for k, v := range in {
		cr.Body[k] = v
	}
}

func (s *Server) checkRunResponse(cr *checkRun, repo string) map[string]any {
	out := map[string]any{
		"id": cr.ID, "node_id": "CR_" + strconv.FormatInt(cr.ID, 10), "head_sha": cr.Body["head_sha"],
		"external_id": cr.Body["external_id"], "url": fmt.Sprintf("%s%s/repos/%s/check-runs/%d", s.URL, APIPrefix, repo, cr.ID),
		"html_url": fmt.Sprintf("https://github.com/%s/runs/%d", repo, cr.ID), "details_url": cr.Body["details_url"],
		"status": cr.Status, "conclusion": cr.Conclusion, "started_at": cr.Body["started_at"], "completed_at": cr.Body["completed_at"],
		"name": cr.Body["name"], "check_suite": map[string]any{"id": 5}, "app": nil, "pull_requests": []any{},
		"output": map[string]any{"title": nil, "summary": nil, "text": nil, "annotations_count": 0, "annotations_url": ""},
	}
	if o, ok := cr.Body["output"].(map[string]any); ok {
		n := 0
		if a, ok := o["annotations"].([]any); ok {
			n = len(a)
		}
		out["output"] = map[string]any{"title": o["title"], "summary": o["summary"], "text": o["text"], "annotations_count": n, "annotations_url": ""}
	}
	return out
}

// mint serves POST /app/installations/{id}/access_tokens after verifying the App JWT.
func (s *Server) mint(r *http.Request, params []string, body []byte, now time.Time, answer func(int, any), message func(int, string)) {
	// The JWT is signed with the real clock (ghinstallation has no other), whatever the fake's.
	if msg := s.verifyJWT(r.Header.Get("Authorization"), time.Now()); msg != "" {
		s.Problem("token mint: %s", msg)
		message(http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	id, _ := strconv.ParseInt(params[0], 10, 64)
	in := s.installations[id]
	if in == nil {
		message(http.StatusNotFound, "Not Found")
		return
	}
	var opts struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &opts); err != nil {
			message(http.StatusUnprocessableEntity, err.Error())
			return
		}
	}
	tok := &token{installation: id, repos: in.Repositories, perms: in.Permissions, expires: now.Add(s.tokenTTL)}
	selection := "all"
	if len(opts.Repositories) > 0 {
		tok.repos, selection = nil, "selected"
		for _, name := range opts.Repositories {
			found := ""
			for _, full := range in.Repositories {
				if strings.HasSuffix(full, "/"+name) {
					found = full
				}
			}
			if found == "" {
				message(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.")
				return
			}
			tok.repos = append(tok.repos, found)
		}
	}
	if opts.Permissions != nil {
		for k, v := range opts.Permissions {
			if !allows(in.Permissions[k], v) {
				message(http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.")
				return
			}
		}
		tok.perms = opts.Permissions
	}
	raw := make([]byte, 20)
	_, _ = rand.Read(raw)
	value := "ghs_" + hex.EncodeToString(raw)
	s.tokens[value] = tok
	answer(http.StatusCreated, map[string]any{
		"token": value, "expires_at": tok.expires.UTC().Format(time.RFC3339),
		"permissions": tok.perms, "repository_selection": selection,
	})
}

// authenticate finds the installation token of a request and checks its repository scope.
func (s *Server) authenticate(r *http.Request, repo string, now time.Time) (*token, int, string) {
	f := strings.Fields(r.Header.Get("Authorization"))
	if len(f) != 2 || (f[0] != "token" && f[0] != "Bearer") {
		return nil, http.StatusUnauthorized, "Requires authentication"
	}
	tok := s.tokens[f[1]]
	switch {
	case tok == nil:
		return nil, http.StatusUnauthorized, "Bad credentials"
	case !now.Before(tok.expires):
		return nil, http.StatusUnauthorized, "Bad credentials (token expired)"
	case !slices.Contains(tok.repos, repo):
		return nil, http.StatusNotFound, "token is not scoped to " + repo
	}
	return tok, 0, ""
}

func allows(granted, want string) bool {
	return granted == want || (granted == "write" && want == "read")
}

// verifyJWT checks an App JWT as GitHub does: RS256 by the App's key, iss the App ID, issued
// no later than now (60 s leeway), expiring within 10 minutes.
func (s *Server) verifyJWT(header string, now time.Time) string {
	raw, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return "Authorization is not a Bearer JWT: " + header
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "JWT does not have three parts"
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return fmt.Sprintf("JWT header %+v is not RS256 (%v)", hdr, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "JWT signature is not base64url"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&s.Key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return "JWT signature does not verify with the App's key"
	}
	var claims struct {
		Iss any   `json:"iss"`
		Iat int64 `json:"iat"`
		Exp int64 `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "JWT claims: " + err.Error()
	}
	iat, exp := time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
	switch {
	case fmt.Sprint(claims.Iss) != strconv.FormatInt(s.AppID, 10):
		return fmt.Sprintf("JWT iss %v is not the App ID %d", claims.Iss, s.AppID)
	case iat.After(now.Add(60 * time.Second)):
		return "JWT issued in the future"
	case !exp.After(now):
		return "JWT expired"
	case exp.Sub(iat) > 10*time.Minute:
		return "JWT lives longer than 10 minutes"
	}
	return ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// CloneTokenAllows reports whether tok is an unexpired installation token that may read the
// contents of repo (owner/name): what a git server of GitHub would accept for a clone.
func (s *Server) CloneTokenAllows(tok, repo string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	return t != nil && s.now().Before(t.expires) && slices.Contains(t.repos, repo) && allows(t.perms["contents"], "read")
}

// CheckRunSHA returns the head SHA a check run was created for, "" if there is no such run.
func (s *Server) CheckRunSHA(id int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cr := s.checkRuns[id]; cr != nil {
		sha, _ := cr.Body["head_sha"].(string)
		return sha
	}
	return ""
}
