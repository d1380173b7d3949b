package translate

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Claims reports whether host is the host pod of the stored virtual pod:
// it carries the virtual pod's sync ID and names it. This is the one
// definition of a pair that the reflector and `podbridge check` share: a
// host pod of the virtual cluster that no stored virtual pod claims is an
// orphan, whatever its name.
func Claims(virtual, host *corev1.Pod) bool {
	if virtual == nil || host == nil {
		return false
	}
	id := virtual.Annotations[AnnotationSyncID]
	return id != "" && host.Annotations[AnnotationSyncID] == id &&
		host.Annotations[AnnotationName] == virtual.Name && host.Annotations[AnnotationNamespace] == virtual.Namespace
}

// OrphanWait is how much longer an unclaimed host pod must live before it
// counts as an orphan (0 once it does): younger ones may belong to an
// admission still under way. creationTimestamp has second resolution, so
// the age counts from the latest instant it may stand for.
func OrphanWait(host *corev1.Pod, now time.Time, grace time.Duration) time.Duration {
	age := now.Sub(host.CreationTimestamp.Time) - time.Second
	if age >= grace {
		return 0
	}
	return grace - age
}
