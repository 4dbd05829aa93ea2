package intake

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/forge"
)

// DefaultTarget is the placeholder target of a trigger Build; the controller replaces it with
// the targets of the repository's .slipway.yaml.
const DefaultTarget = "default"

// BuildName derives a Build's name from the delivery, so that every copy of one delivery maps
// to the same name and the API server's AlreadyExists becomes the dedupe check: no lock, no
// cache, and it holds across replicas and restarts.
//
// Form: <forge>-<16 hex of sha256(delivery ID)>[-<target>], at most 7+16+1+30 = 54 characters,
// DNS-1123 safe, leaving room for suffixes on the pod and Secret names.
func BuildName(f v1alpha1.Forge, deliveryID, target string) string {
	sum := sha256.Sum256([]byte(deliveryID))
	name := string(f) + "-" + hex.EncodeToString(sum[:8])
	if target != "" {
		name += "-" + target
	}
	return name
}

// BodyDeliveryID stands in for a missing delivery ID: identical bodies are the same delivery.
func BodyDeliveryID(body []byte) string {
	sum := sha256.Sum256(body)
	return "body-" + hex.EncodeToString(sum[:])
}

// NewBuild turns a verified, buildable delivery into a trigger Build: the record of the
// delivery, which the controller expands into one Build per target once it has read the
// repository's config (a network call intake must not make). Pure: no I/O.
func NewBuild(namespace string, d forge.Delivery, receivedAt time.Time) *v1alpha1.Build {
	s := *d.Source
	at := metav1.NewTime(receivedAt.UTC().Truncate(time.Second))
	targets := d.Target
	if targets == "" {
		targets = "*"
	}
	annotations := map[string]string{v1alpha1.AnnotationTargets: targets}
	if d.Before != "" {
		annotations[v1alpha1.AnnotationBefore] = d.Before
	}
	return &v1alpha1.Build{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Build"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        BuildName(s.Forge, d.ID, ""),
			Namespace:   namespace,
			Annotations: annotations,
			Labels: map[string]string{
				v1alpha1.LabelForge:       string(s.Forge),
				v1alpha1.LabelEvent:       string(s.Event),
				v1alpha1.LabelCommitShort: s.Commit[:7],
			},
		},
		Spec: v1alpha1.BuildSpec{
			Source: s,
			Trigger: v1alpha1.Trigger{
				DeliveryID: d.ID,
				Sender:     clamp(d.Sender, 256),
				ReceivedAt: &at,
			},
			Target: v1alpha1.Target{
				Name:       DefaultTarget,
				Context:    ".",
				Dockerfile: "Dockerfile",
			},
		},
	}
}

// clamp cuts s to the schema's maximum length, so that an overlong optional field costs the
// record a few characters instead of costing the build.
func clamp(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
