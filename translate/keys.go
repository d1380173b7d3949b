package translate

import "strings"

// Prefix is the label and annotation prefix podbridge reserves. Tenants may
// not set keys under it: the reflector trusts them to find its own pods.
const Prefix = "podbridge.io/"

// Labels podbridge puts on host objects so it can select only its own.
const (
	// LabelManagedBy is the well-known managed-by label, set to ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue marks objects podbridge created on the host.
	ManagedByValue = "podbridge"
	// LabelVCluster names the virtual cluster a host object belongs to.
	LabelVCluster = Prefix + "vcluster"
	// LabelNamespace holds the virtual namespace of a host pod, so
	// affinity selectors can be scoped to one virtual namespace.
	LabelNamespace = Prefix + "namespace"
)

// Annotations that tie a host pod to its virtual pod.
const (
	// AnnotationSyncID is podbridge's own identity of a pod pair, set on both
	// pods. Mutating admission runs before the apiserver assigns a UID, so
	// the UID cannot serve.
	AnnotationSyncID = Prefix + "sync-id"
	// AnnotationName, AnnotationNamespace and AnnotationVCluster name the
	// virtual pod on its host pod.
	AnnotationName      = Prefix + "name"
	AnnotationNamespace = Prefix + "namespace"
	AnnotationVCluster  = Prefix + "vcluster"
	// AnnotationHostName records the host pod's name on the virtual pod.
	AnnotationHostName = Prefix + "host-name"
)

// IsReserved reports whether a label or annotation key belongs to podbridge.
func IsReserved(key string) bool {
	return strings.HasPrefix(key, Prefix)
}

// Field managers of podbridge's writes, in both clusters. The reflector
// tells the tenant's keys on a host pod from the host's by them.
const (
	FieldManagerWebhook   = "podbridge-webhook"
	FieldManagerReflector = "podbridge-reflector"
)

// WebhookPath is where the webhook server serves pod admission.
const WebhookPath = "/mutate-v1-pod"
