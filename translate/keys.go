package translate

import (
	"crypto/sha256"
	"strings"
)

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

// Paths of the webhook server, one per kind of pod admission request, each
// registered as its own webhook: a handler serves only the requests its
// path is for, so a registration the tenant rewires cannot send a create to
// a handler that checks updates, or the other way round.
const (
	// WebhookPath serves pod creates: the host pod is made here.
	WebhookPath = "/mutate-v1-pod"
	// WebhookPathPodUpdate serves pod updates, refused when they change
	// podbridge's own labels and annotations.
	WebhookPathPodUpdate = "/validate-v1-pod-update"
	// WebhookPathEphemeralContainers serves updates of the
	// pods/ephemeralcontainers subresource, checked as the pod's create was.
	WebhookPathEphemeralContainers = "/validate-v1-pod-ephemeralcontainers"
)

// Tenant keys on the host.
//
// The tenant owns every label and annotation of its virtual pods. Copied
// verbatim, its labels would let a host Service, ReplicaSet, PDB or
// NetworkPolicy select its pods (a ReplicaSet adopts, and may delete,
// matching orphans), and its annotations would drive host features keyed on
// them (CNI network selection, fixed IPs, mesh opt-outs). So a tenant key
// reaches the host only as TenantKey(key), under domains podbridge owns,
// which no host selector matches unless it was written for this scheme:
//
//	app                 → tenant.podbridge.io/app
//	example.com/tier    → example.com.tenant.podbridge.io/tier
//	<prefix too long>/n → <prefix cut>.<hash>.hashed-tenant.podbridge.io/n
//
// The name is kept and the tenant's prefix becomes subdomains of
// TenantKeyDomain; a prefix that would make the host prefix longer than a
// DNS subdomain's 253 characters is cut and followed by 25 characters of
// base32 SHA-256 of the whole prefix, under hashedTenantKeyDomain, which no
// readable form ends with. So the mapping is injective and every valid
// tenant key gives a valid host key. Values are kept.
//
// Labels use it for every tenant label, and every pod selector podbridge
// translates uses it too, so scheduling matches what the tenant wrote.
// Annotations reach the host verbatim only when Config.HostAnnotations
// lists them; those the downward API reads are carried as TenantKey(key).
// podbridge's own keys (Prefix, LabelManagedBy) are never translated.
const (
	// TenantKeyDomain is the label key prefix of tenant keys without one,
	// and the parent domain of readable translated prefixes.
	TenantKeyDomain = "tenant.podbridge.io"
	// hashedTenantKeyDomain holds translated prefixes that were too long.
	hashedTenantKeyDomain = "hashed-tenant.podbridge.io"
	// maxKeyPrefixLength is the longest key prefix (a DNS subdomain).
	maxKeyPrefixLength = 253
)

// TenantKey is the host key of the tenant's label or annotation key (see
// "Tenant keys on the host" above). It is defined for any string; for a
// valid qualified name it returns a valid one, distinct from the host key
// of every other tenant key.
func TenantKey(key string) string {
	prefix, name, ok := strings.Cut(key, "/")
	if !ok {
		return TenantKeyDomain + "/" + key
	}
	if host := prefix + "." + TenantKeyDomain; len(host) <= maxKeyPrefixLength {
		return host + "/" + name
	}
	sum := sha256.Sum256([]byte(prefix))
	hash := hashEncoding.EncodeToString(sum[:])[:hashLength]
	room := maxKeyPrefixLength - len(hashedTenantKeyDomain) - hashLength - 2
	cut := strings.TrimRight(prefix[:min(len(prefix), room)], "-.")
	return cut + "." + hash + "." + hashedTenantKeyDomain + "/" + name
}

// IsTenantKey reports whether a host key is a translated tenant key.
func IsTenantKey(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	return ok && (prefix == TenantKeyDomain || strings.HasSuffix(prefix, "."+TenantKeyDomain) || strings.HasSuffix(prefix, "."+hashedTenantKeyDomain))
}
