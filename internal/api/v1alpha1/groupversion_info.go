// Package v1alpha1 holds the Build API (group slipway.dev). A Build is the one durable record of
// a requested image build: intake creates it, the controller drives it, the reporter mirrors it
// to the forge. All state lives here and in the build pod; Slipway has no database.
//
// +kubebuilder:object:generate=true
// +groupName=slipway.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of the Build API.
var GroupVersion = schema.GroupVersion{Group: "slipway.dev", Version: "v1alpha1"}

// AddToScheme registers the Build types. A plain function rather than the usual SchemeBuilder
// variable, so the package holds no mutable state.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Build{}, &BuildList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
