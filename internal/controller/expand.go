package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/repoconfig"
)

// Resolver reads a trigger's repository config and says what to build (repoconfig.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, b *v1alpha1.Build) (repoconfig.Resolution, error)
}

// ReasonConfigInvalid fails a trigger whose .slipway.yaml cannot be used; the message names
// the error and its line.
const ReasonConfigInvalid = "ConfigInvalid"

// expand turns a trigger into one Build per matching target and deletes it.
//
// The trigger is deleted rather than kept as a record because it would show up as a build
// that never runs. Deleting it costs nothing in dedupe: the targets' names derive from the
// delivery, so a redelivery makes a new trigger whose expansion finds them all existing.
func (r *Reconciler) expand(ctx context.Context, b *v1alpha1.Build, resolver Resolver) (ctrl.Result, error) {
	res, err := resolver.Resolve(ctx, b)
	var invalid repoconfig.Errors
	switch {
	case errors.As(err, &invalid):
		return ctrl.Result{}, r.transition(ctx, b, v1alpha1.PhaseFailed, ReasonConfigInvalid,
			fmt.Sprintf("%s at %s: %v", repoconfig.FileName, shortRef(res.Ref), err), r.Opts.Now(), nil)
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("resolving %s: %w", repoconfig.FileName, err)
	}
	children, skipped := Expand(b, res)
	for _, c := range children {
		if err := r.Client.Create(ctx, c); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("creating build %s: %w", c.Name, err)
		}
	}
	if skipped != "" {
		r.event(b, corev1.EventTypeNormal, "Skipped", "%s", skipped)
		r.Log.Info("nothing to build", "build", b.Namespace+"/"+b.Name, "reason", skipped)
	} else {
		names := make([]string, len(children))
		for i, c := range children {
			names[i] = c.Name
		}
		r.event(b, corev1.EventTypeNormal, "Expanded", "created %v", names)
		r.Log.Info("expanded trigger", "build", b.Namespace+"/"+b.Name, "builds", names, "configRef", res.Ref)
	}
	uid := b.UID
	err = r.Client.Delete(ctx, b, client.Preconditions{UID: &uid})
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting expanded trigger: %w", err)
	}
	return ctrl.Result{}, nil
}

// Expand builds the Builds a trigger stands for. Pure, so that naming, labels and the push
// decision are table-tested. skipped says why nothing is built when that is the outcome.
func Expand(trigger *v1alpha1.Build, res repoconfig.Resolution) (builds []*v1alpha1.Build, skipped string) {
	if res.Skipped != "" {
		return nil, res.Skipped
	}
	only := trigger.Annotations[v1alpha1.AnnotationTargets]
	for _, t := range res.Targets {
		if only != "*" && only != "" && t.Name != only {
			continue
		}
		b := &v1alpha1.Build{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Build"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        ChildName(trigger.Name, t.Name),
				Namespace:   trigger.Namespace,
				Labels:      maps.Clone(trigger.Labels),
				Annotations: maps.Clone(trigger.Annotations),
			},
			Spec: v1alpha1.BuildSpec{Source: trigger.Spec.Source, Trigger: trigger.Spec.Trigger, Target: t},
		}
		if b.Labels == nil {
			b.Labels = map[string]string{}
		}
		b.Labels[v1alpha1.LabelTarget] = t.Name
		delete(b.Annotations, v1alpha1.AnnotationTargets)
		b.Annotations[v1alpha1.AnnotationConfigRef] = res.Ref
		b.Annotations[v1alpha1.AnnotationPush] = fmt.Sprint(res.Push)
		builds = append(builds, b)
	}
	if len(builds) == 0 {
		return nil, fmt.Sprintf("target %q is no longer in %s", only, repoconfig.FileName)
	}
	return builds, ""
}

// ChildName names a target's Build after its trigger, so that every copy of one delivery
// yields the same names.
func ChildName(trigger, target string) string { return trigger + "-" + target }

func shortRef(ref string) string {
	if len(ref) == 40 {
		return ref[:12]
	}
	return ref
}
