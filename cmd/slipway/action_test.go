package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestActionMatchesSubmit keeps action/action.yml and `slipway submit` in step: every argument
// the Action passes is a flag of the command, and every input is used.
func TestActionMatchesSubmit(t *testing.T) {
	data, err := os.ReadFile("../../action/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var action struct {
		Inputs map[string]struct {
			Required bool    `json:"required"`
			Default  *string `json:"default"`
		} `json:"inputs"`
		Outputs map[string]any `json:"outputs"`
		Runs    struct {
			Using string            `json:"using"`
			Env   map[string]string `json:"env"`
			Args  []string          `json:"args"`
		} `json:"runs"`
	}
	if err := yaml.Unmarshal(data, &action); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if action.Runs.Using != "docker" || len(action.Runs.Args) == 0 || action.Runs.Args[0] != "submit" {
		t.Fatalf("runs: %+v", action.Runs)
	}
	flags := newSubmitCommand().Flags()
	used := map[string]bool{}
	ref := regexp.MustCompile(`\$\{\{ inputs\.([a-z-]+) \}\}`)
	for _, a := range action.Runs.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if flags.Lookup(name) == nil {
			t.Errorf("action passes --%s, which slipway submit does not have", name)
		}
		for _, m := range ref.FindAllStringSubmatch(a, -1) {
			used[m[1]] = true
		}
	}
	for _, v := range action.Runs.Env {
		for _, m := range ref.FindAllStringSubmatch(v, -1) {
			used[m[1]] = true
		}
	}
	for name, in := range action.Inputs {
		if !used[name] {
			t.Errorf("input %s is never passed to slipway", name)
		}
		if !in.Required && in.Default == nil {
			t.Errorf("optional input %s has no default", name)
		}
	}
	// With every input at its default, the arguments parse.
	args := make([]string, 0, len(action.Runs.Args)-1)
	for _, a := range action.Runs.Args[1:] {
		args = append(args, ref.ReplaceAllStringFunc(a, func(m string) string {
			in := action.Inputs[ref.FindStringSubmatch(m)[1]]
			if in.Default == nil {
				return ""
			}
			return *in.Default
		}))
	}
	if err := newSubmitCommand().ParseFlags(args); err != nil {
		t.Fatalf("default arguments %v do not parse: %v", args, err)
	}
	for _, o := range []string{"build", "phase", "reason", "digest", "image"} {
		if _, ok := action.Outputs[o]; !ok {
			t.Errorf("output %s is written by slipway submit but not declared", o)
		}
	}
}
