package controller

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

func TestExpand(t *testing.T) {
	trigger := func(only string) *v1alpha1.Build {
		return &v1alpha1.Build{
			ObjectMeta: metav1.ObjectMeta{Name: "github-0123456789abcdef", Namespace: "b",
				Labels:      map[string]string{v1alpha1.LabelForge: "github"},
				Annotations: map[string]string{v1alpha1.AnnotationTargets: only, v1alpha1.AnnotationBefore: "x"}},
			Spec: v1alpha1.BuildSpec{Source: v1alpha1.Source{Repository: "acme/app", Fork: true}, Target: v1alpha1.Target{Name: "default"}},
		}
	}
	two := repoconfig.Resolution{Targets: []v1alpha1.Target{{Name: "api"}, {Name: "web"}}, Push: false, Ref: "main"}
	for _, tc := range []struct {
		name    string
		only    string
		res     repoconfig.Resolution
		want    []string
		skipped bool
	}{
		{"every target", "*", two, []string{"github-0123456789abcdef-api", "github-0123456789abcdef-web"}, false},
		{"one re-run target", "web", two, []string{"github-0123456789abcdef-web"}, false},
		{"re-run of a removed target", "gone", two, nil, true},
		{"skipped by the config", "*", repoconfig.Resolution{Skipped: "forkPolicy: skip"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := trigger(tc.only)
			got, skipped := Expand(tr, tc.res)
			var names []string
			for _, b := range got {
				names = append(names, b.Name)
				if b.IsTrigger() || b.Labels[v1alpha1.LabelTarget] != b.Spec.Target.Name || b.Labels[v1alpha1.LabelForge] != "github" ||
					b.Annotations[v1alpha1.AnnotationConfigRef] != "main" || b.Annotations[v1alpha1.AnnotationBefore] != "x" || b.Pushes() {
					t.Errorf("child %s: labels %v annotations %v", b.Name, b.Labels, b.Annotations)
				}
			}
			if !slices.Equal(names, tc.want) || (skipped != "") != tc.skipped {
				t.Errorf("got %v skipped %q", names, skipped)
			}
			if !tr.IsTrigger() || tr.Labels[v1alpha1.LabelTarget] != "" {
				t.Errorf("Expand changed the trigger: %v %v", tr.Labels, tr.Annotations)
			}
		})
	}
}

func TestPushes(t *testing.T) {
	for _, tc := range []struct {
		fork       bool
		annotation string
		want       bool
	}{{false, "", true}, {true, "", false}, {true, "true", true}, {false, "false", false}} {
		b := &v1alpha1.Build{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
		b.Spec.Source.Fork = tc.fork
		if tc.annotation != "" {
			b.Annotations[v1alpha1.AnnotationPush] = tc.annotation
		}
		if b.Pushes() != tc.want {
			t.Errorf("fork %v annotation %q: pushes %v", tc.fork, tc.annotation, b.Pushes())
		}
	}
}
