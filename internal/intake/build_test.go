package intake

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

func TestBuildName(t *testing.T) {
	a := BuildName(v1alpha1.ForgeGitHub, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "default")
	if a != BuildName(v1alpha1.ForgeGitHub, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "default") {
		t.Fatal("not deterministic")
	}
	for _, other := range []string{
		BuildName(v1alpha1.ForgeGitLab, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "default"),
		BuildName(v1alpha1.ForgeGitHub, "72d3162e-cc78-11e3-81ab-4c9367dc0959", "default"),
		BuildName(v1alpha1.ForgeGitHub, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "api"),
	} {
		if other == a {
			t.Fatalf("collision: %s", a)
		}
	}
	longest := BuildName(v1alpha1.ForgeGitLab, strings.Repeat("x", 256), strings.Repeat("a", 30))
	for _, n := range []string{a, longest, BuildName(v1alpha1.ForgeGitHub, "", "")} {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("%q: %v", n, errs)
		}
	}
	if len(longest) > 54 {
		t.Errorf("name %d characters leaves no room for suffixes", len(longest))
	}
}

// FuzzBuildName: any delivery ID gives a valid object name.
func FuzzBuildName(f *testing.F) {
	f.Add("72d3162e-cc78-11e3-81ab-4c9367dc0958")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		if errs := validation.IsDNS1123Label(BuildName(v1alpha1.ForgeGitHub, id, DefaultTarget)); len(errs) > 0 {
			t.Fatal(errs)
		}
	})
}
