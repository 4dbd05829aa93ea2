package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// RBAC: exactly the verbs the reconciler uses (controller-gen writes charts/slipway/files).
// +kubebuilder:rbac:groups=slipway.dev,resources=builds,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=slipway.dev,resources=builds/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Setup registers the reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, r *Reconciler) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Build{}, indexSupersedeKey, func(o client.Object) []string {
		return []string{SupersedeKey(o.(*v1alpha1.Build))}
	}); err != nil {
		return fmt.Errorf("indexing builds: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("build").
		For(&v1alpha1.Build{}).
		Owns(&corev1.Pod{}).
		// Any Build change may decide another's fate: a newer Build supersedes its peers, and
		// a finished one frees a slot for the queue.
		Watches(&v1alpha1.Build{}, handler.EnqueueRequestsFromMapFunc(r.related), builder.WithPredicates()).
		Complete(r)
}

// related maps a Build event to the Builds it may affect: its older peers (supersede) and the
// waiting ones (admission).
func (r *Reconciler) related(ctx context.Context, o client.Object) []reconcile.Request {
	b, ok := o.(*v1alpha1.Build)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	var peers v1alpha1.BuildList
	if err := r.Client.List(ctx, &peers, client.InNamespace(b.Namespace), client.MatchingFields{indexSupersedeKey: SupersedeKey(b)}); err == nil {
		for _, p := range peers.Items {
			if p.UID != b.UID && !p.Status.Phase.Terminal() {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
			}
		}
	}
	if b.Status.Phase.Terminal() || b.DeletionTimestamp != nil {
		var all v1alpha1.BuildList
		if err := r.Client.List(ctx, &all); err == nil {
			for _, q := range all.Items {
				if q.Status.Phase == v1alpha1.PhaseQueued {
					reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&q)})
				}
			}
		}
	}
	return reqs
}
