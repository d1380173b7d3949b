// Package ownership marks the host objects podbridge keeps for one
// virtual cluster (self-managed certificate Secrets, the service account
// host pods run as) and checks that mark before podbridge uses one. Two
// podbridges may share a host namespace: an object of the expected name is
// not proof that it is this one's, and adopting another's would let one
// virtual cluster's apiserver call the other's podbridge, or run its pods
// as the other's identity.
package ownership

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotation names the virtual cluster (its --vcluster-name, unique in
// the host namespace) whose podbridge may use the object. podbridge sets
// it on what it creates; a platform sets it on what it gives podbridge.
// No tenant write reaches it: host copies of tenant objects have names
// podbridge translates and annotations podbridge writes.
const Annotation = "podbridge.io/owner"

// Mark records on meta that the object is vcluster's.
func Mark(meta *metav1.ObjectMeta, vcluster string) {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[Annotation] = vcluster
}

// Check returns nil when obj, of kind, is marked as vcluster's, and
// otherwise an error naming the object, why it is refused, and how a
// platform that means podbridge to use it says so.
func Check(obj metav1.Object, kind, vcluster string) error {
	owner, marked := obj.GetAnnotations()[Annotation]
	switch {
	case owner == vcluster:
		return nil
	case !marked:
		return fmt.Errorf("%s %s/%s carries no %s annotation, so nothing shows it is virtual cluster %q's: podbridge uses only its own (if it is, annotate it: kubectl annotate -n %s %s/%s %s=%s)",
			kind, obj.GetNamespace(), obj.GetName(), Annotation, vcluster, obj.GetNamespace(), strings.ToLower(kind), obj.GetName(), Annotation, vcluster)
	default:
		return fmt.Errorf("%s %s/%s belongs to virtual cluster %q (annotation %s), not %q: podbridge uses only its own, and changes no other's",
			kind, obj.GetNamespace(), obj.GetName(), owner, Annotation, vcluster)
	}
}
