package requeue

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
)

func TestOnConflict(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "slipway.dev", Resource: "builds"}, "b", errors.New("modified"))
	if res, err := OnConflict(ctrl.Result{}, fmt.Errorf("updating build status: %w", conflict)); err != nil || res.RequeueAfter != conflictRetry {
		t.Errorf("a wrapped conflict: %v, %v", res, err)
	}
	other := errors.New("boom")
	if _, err := OnConflict(ctrl.Result{}, other); err != other {
		t.Errorf("other errors must pass: %v", err)
	}
	if res, err := OnConflict(ctrl.Result{RequeueAfter: 7}, nil); err != nil || res.RequeueAfter != 7 {
		t.Errorf("success must pass: %v, %v", res, err)
	}
}
