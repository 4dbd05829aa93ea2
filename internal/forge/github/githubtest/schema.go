package githubtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Spec is GitHub's OpenAPI description, cut to the operations Slipway uses
// (testdata/github/openapi/operations.json), with a validator for the part of JSON Schema those
// operations' request bodies use.
//
// Why a small validator rather than a module: kin-openapi (the usual choice) would add a
// dependency tree to go.mod for tests, refuses this very document unless example checks are
// switched off (an upstream defect, see the README), and, like JSON Schema itself, accepts
// unknown keys unless a schema says additionalProperties: false, which GitHub's schemas never
// say. Slipway wants the opposite: any key GitHub does not document is a bug. The keywords used
// are few (LoadSpec refuses a schema using any other, so the validator cannot silently skip one).
type Spec struct {
	doc map[string]any
	ops []*Operation
}

// Operation is one method on one path.
type Operation struct {
	ID, Method, Path string
	pattern          *regexp.Regexp
	body             map[string]any
	bodyRequired     bool
}

// keywords the validator implements, and annotations it may ignore.
var (
	validating  = map[string]bool{"type": true, "properties": true, "additionalProperties": true, "required": true, "enum": true, "items": true, "maxItems": true, "minItems": true, "maxLength": true, "minLength": true, "pattern": true, "format": true, "nullable": true, "$ref": true, "anyOf": true, "oneOf": true, "allOf": true, "minimum": true, "maximum": true}
	annotations = map[string]bool{"description": true, "example": true, "examples": true, "default": true, "title": true, "readOnly": true, "writeOnly": true, "deprecated": true, "externalDocs": true}
)

// LoadSpec reads the OpenAPI document and indexes its operations.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading OpenAPI description: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing OpenAPI description %s: %w", path, err)
	}
	s := &Spec{doc: doc}
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		methods, _ := item.(map[string]any)
		for m, raw := range methods {
			op, ok := raw.(map[string]any)
			if !ok {
				continue
			}
			o := &Operation{ID: fmt.Sprint(op["operationId"]), Method: strings.ToUpper(m), Path: p, pattern: pathPattern(p)}
			if rb, ok := op["requestBody"].(map[string]any); ok {
				o.bodyRequired, _ = rb["required"].(bool)
				content, _ := rb["content"].(map[string]any)
				if js, ok := content["application/json"].(map[string]any); ok {
					o.body, _ = js["schema"].(map[string]any)
				}
				if o.body != nil {
					if err := s.checkKeywords(o.body, o.ID, map[string]bool{}); err != nil {
						return nil, err
					}
				}
			}
			s.ops = append(s.ops, o)
		}
	}
	// Longest path first, so that /check-runs/{id} wins over a shorter pattern.
	sort.Slice(s.ops, func(i, j int) bool { return len(s.ops[i].Path) > len(s.ops[j].Path) })
	return s, nil
}

// pathPattern turns /repos/{owner}/{repo}/contents/{path} into a regexp; a trailing parameter
// may hold slashes (file paths, "base...head" with branch names).
func pathPattern(p string) *regexp.Regexp {
	parts := strings.Split(p, "/")
	var b strings.Builder
	b.WriteString("^")
	for i, part := range parts {
		if i > 0 {
			b.WriteString("/")
		}
		if strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}") {
			if i == len(parts)-1 {
				b.WriteString("(.+)")
			} else {
				b.WriteString("([^/]+)")
			}
			continue
		}
		b.WriteString(regexp.QuoteMeta(part))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Find returns the operation serving method and path (without the API prefix) and the path's
// parameter values in order.
func (s *Spec) Find(method, path string) (*Operation, []string, bool) {
	for _, o := range s.ops {
		if o.Method != method {
			continue
		}
		if m := o.pattern.FindStringSubmatch(path); m != nil {
			params := make([]string, 0, len(m)-1)
			for _, v := range m[1:] {
				u, err := url.PathUnescape(v)
				if err != nil {
					u = v
				}
				params = append(params, u)
			}
			return o, params, true
		}
	}
	return nil, nil, false
}

// ValidateBody checks a request body against the operation's schema, strictly: unknown keys
// are errors even where the schema does not forbid them.
func (s *Spec) ValidateBody(o *Operation, body []byte) []string {
	if len(bytes.TrimSpace(body)) == 0 {
		if o.bodyRequired {
			return []string{"request body is required"}
		}
		return nil
	}
	if o.body == nil {
		return []string{"operation takes no JSON body"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"body is not JSON: " + err.Error()}
	}
	return s.Validate(o.body, v, "body", true)
}

func (s *Spec) resolve(schema map[string]any) (map[string]any, error) {
	for i := 0; i < 16; i++ {
		ref, ok := schema["$ref"].(string)
		if !ok {
			return schema, nil
		}
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if !ok {
			return nil, fmt.Errorf("unsupported $ref %q", ref)
		}
		comps, _ := s.doc["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		next, ok := schemas[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q not found", ref)
		}
		schema = next
	}
	return nil, fmt.Errorf("$ref chain too long")
}

// checkKeywords refuses schemas using a keyword the validator does not implement.
func (s *Spec) checkKeywords(schema map[string]any, where string, seen map[string]bool) error {
	if ref, ok := schema["$ref"].(string); ok {
		if seen[ref] {
			return nil
		}
		seen[ref] = true
		r, err := s.resolve(schema)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return s.checkKeywords(r, where+"→"+ref, seen)
	}
	for k, v := range schema {
		if !validating[k] && !annotations[k] {
			return fmt.Errorf("%s: schema keyword %q is not implemented by the validator", where, k)
		}
		switch k {
		case "properties":
			for name, p := range v.(map[string]any) {
				if err := s.checkKeywords(p.(map[string]any), where+"."+name, seen); err != nil {
					return err
				}
			}
		case "items":
			if err := s.checkKeywords(v.(map[string]any), where+"[]", seen); err != nil {
				return err
			}
		case "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				if err := s.checkKeywords(m, where+".*", seen); err != nil {
					return err
				}
			}
		case "anyOf", "oneOf", "allOf":
			for i, sub := range v.([]any) {
				if err := s.checkKeywords(sub.(map[string]any), fmt.Sprintf("%s.%s[%d]", where, k, i), seen); err != nil {
					return err
				}
			}
		case "format":
			switch v {
			case "date-time", "uri", "int64", "int32":
			default:
				return fmt.Errorf("%s: format %q is not implemented by the validator", where, v)
			}
		}
	}
	return nil
}

// Validate checks v (decoded with UseNumber) against schema and returns every problem. strict
// refuses object keys the schema does not list unless additionalProperties allows them;
// subschemas of anyOf/oneOf/allOf are checked without it, as they describe parts of an object.
func (s *Spec) Validate(schema map[string]any, v any, at string, strict bool) []string {
	schema, err := s.resolve(schema)
	if err != nil {
		return []string{at + ": " + err.Error()}
	}
	if v == nil {
		if n, _ := schema["nullable"].(bool); n {
			return nil
		}
		if _, typed := schema["type"]; typed {
			return []string{at + ": null is not allowed"}
		}
		return nil
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if t, ok := schema["type"].(string); ok && !hasType(v, t) {
		fail("is %s, want %s", jsonType(v), t)
		return errs
	}
	if enum, ok := schema["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			found = found || fmt.Sprint(e) == fmt.Sprint(v)
		}
		if !found {
			fail("%v is not one of %v", v, enum)
		}
	}
	switch x := v.(type) {
	case string:
		n := len([]rune(x))
		if max, ok := num(schema["maxLength"]); ok && float64(n) > max {
			fail("is %d characters, more than %v", n, max)
		}
		if min, ok := num(schema["minLength"]); ok && float64(n) < min {
			fail("is %d characters, fewer than %v", n, min)
		}
		if p, ok := schema["pattern"].(string); ok {
			if re, err := regexp.Compile(p); err == nil && !re.MatchString(x) {
				fail("%q does not match %s", x, p)
			}
		}
		switch schema["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, x); err != nil {
				fail("%q is not an RFC 3339 date-time", x)
			}
		case "uri":
			if u, err := url.Parse(x); err != nil || u.Scheme == "" {
				fail("%q is not an absolute URI", x)
			}
		}
	case json.Number:
		f, _ := x.Float64()
		if min, ok := num(schema["minimum"]); ok && f < min {
			fail("%v is less than %v", x, min)
		}
		if max, ok := num(schema["maximum"]); ok && f > max {
			fail("%v is more than %v", x, max)
		}
	case []any:
		if max, ok := num(schema["maxItems"]); ok && float64(len(x)) > max {
			fail("has %d items, more than %v", len(x), max)
		}
		if min, ok := num(schema["minItems"]); ok && float64(len(x)) < min {
			fail("has %d items, fewer than %v", len(x), min)
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, e := range x {
				errs = append(errs, s.Validate(items, e, fmt.Sprintf("%s[%d]", at, i), strict)...)
			}
		}
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		if req, ok := schema["required"].([]any); ok {
			for _, r := range req {
				if _, present := x[fmt.Sprint(r)]; !present {
					fail("required property %q is missing", r)
				}
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := props[k].(map[string]any); ok {
				errs = append(errs, s.Validate(p, x[k], at+"."+k, true)...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("unknown property %q", k)
				}
			case map[string]any:
				errs = append(errs, s.Validate(ap, x[k], at+"."+k, true)...)
			default:
				if strict && props != nil {
					fail("unknown property %q (not in GitHub's schema)", k)
				}
			}
		}
	}
	if all, ok := schema["allOf"].([]any); ok {
		for _, sub := range all {
			errs = append(errs, s.Validate(sub.(map[string]any), v, at, false)...)
		}
	}
	if any_, ok := schema["anyOf"].([]any); ok {
		var why []string
		matched := false
		for i, sub := range any_ {
			e := s.Validate(sub.(map[string]any), v, at, false)
			if len(e) == 0 {
				matched = true
				break
			}
			why = append(why, fmt.Sprintf("anyOf[%d]: %s", i, strings.Join(e, "; ")))
		}
		if !matched {
			fail("matches no anyOf alternative (%s)", strings.Join(why, " | "))
		}
	}
	if one, ok := schema["oneOf"].([]any); ok {
		n := 0
		for _, sub := range one {
			if len(s.Validate(sub.(map[string]any), v, at, false)) == 0 {
				n++
			}
		}
		if n != 1 {
			fail("matches %d oneOf alternatives, want exactly 1", n)
		}
	}
	return errs
}

func hasType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	}
	return false
}

func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	}
	return "null"
}

func num(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
