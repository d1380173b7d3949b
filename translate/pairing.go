package translate

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Claims reports whether host is the host pod of the stored virtual pod:
// it carries the virtual pod's sync ID and names it. This is the one
// definition of a pair that the reflector and `podbridge check` share: a
// host pod of the virtual cluster that no stored virtual pod claims is an
// orphan, whatever its name.
func Claims(virtual, host *corev1.Pod) bool {
	return virtual != nil && host != nil && ClaimsObject(virtual, host)
}

// ClaimsObject is Claims of any kind of pair (ClaimsService, ClaimsClaim,
// ClaimsNetworkPolicy): both must be non-nil.
func ClaimsObject(virtual, host metav1.Object) bool {
	id := virtual.GetAnnotations()[AnnotationSyncID]
	return id != "" && host.GetAnnotations()[AnnotationSyncID] == id &&
		host.GetAnnotations()[AnnotationName] == virtual.GetName() && host.GetAnnotations()[AnnotationNamespace] == virtual.GetNamespace()
}

// pairedHostMeta is the metadata of host object name, the one a tenant's
// namespaced object virtual has (a Service, a NetworkPolicy, a claim): in
// the host namespace, with hostLabels and the annotations that pair it
// with virtual (ClaimsObject).
func pairedHostMeta(virtual metav1.Object, name string, cfg Config, syncID string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: cfg.HostNamespace,
		Labels:    hostLabels(virtual.GetLabels(), virtual.GetNamespace(), cfg),
		Annotations: map[string]string{
			AnnotationSyncID:    syncID,
			AnnotationName:      virtual.GetName(),
			AnnotationNamespace: virtual.GetNamespace(),
			AnnotationVCluster:  cfg.VCluster,
		},
	}
}

// DefaultVirtualRequestTimeout is kube-apiserver's default
// --request-timeout, the longest any create on the virtual apiserver runs.
const DefaultVirtualRequestTimeout = time.Minute

// orphanMargin is how long past the virtual apiserver's request timeout an
// unclaimed host pod is still taken for a create under way: etcd may apply
// a write a moment after its request's deadline, and the host's and the
// virtual apiserver's clocks may differ a little.
const orphanMargin = 10 * time.Second

// OrphanGracePeriod is the age past which a host pod no stored virtual
// pod claims is an orphan, for a virtual apiserver whose request timeout
// is virtualRequestTimeout (0: the default). The webhook makes the host
// pod while the create is admitted; every later step (the tenant's own
// webhooks and policies, then the write) runs within that request's
// deadline, so a virtual pod that is not stored by then never will be.
// The webhook's own timeout is no bound: later admission steps take longer.
func OrphanGracePeriod(virtualRequestTimeout time.Duration) time.Duration {
	if virtualRequestTimeout <= 0 {
		virtualRequestTimeout = DefaultVirtualRequestTimeout
	}
	return virtualRequestTimeout + orphanMargin
}

// OrphanWait is how much longer an unclaimed host object (a pod, a
// Service) must live before it counts as an orphan (0 once it does):
// younger ones may belong to an admission still under way.
// creationTimestamp has second resolution, so the age counts from the
// latest instant it may stand for.
func OrphanWait(host metav1.Object, now time.Time, grace time.Duration) time.Duration {
	age := now.Sub(host.GetCreationTimestamp().Time) - time.Second
	if age >= grace {
		return 0
	}
	return grace - age
}
