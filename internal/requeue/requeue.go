// Package requeue holds the one retry rule Slipway's reconcilers share: the controller and the
// reporter both write Build status, so each regularly loses an optimistic-concurrency race to
// the other.
package requeue

import (
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
)

// conflictRetry is how soon a Build is looked at again after a write conflict.
const conflictRetry = 100 * time.Millisecond

// OnConflict passes a reconcile's outcome through, except a write conflict, which becomes a
// prompt retry with fresh state instead of an error: an error would be logged as one, and
// would grow the item's rate-limited backoff with every race lost.
func OnConflict(res ctrl.Result, err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return res, err
}
