package translate

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Paths of the webhook server for PersistentVolumeClaims, each registered
// as its own webhook as the Service paths are.
const (
	// WebhookPathClaim serves claim creates: the host claim is made here.
	WebhookPathClaim = "/mutate-v1-persistentvolumeclaim"
	// WebhookPathClaimUpdate serves claim updates: a resize or a label
	// change is carried to the host claim before the virtual one is stored.
	WebhookPathClaimUpdate = "/mutate-v1-persistentvolumeclaim-update"
)

// HostClaimName is the name of the host claim of virtual claim name in
// namespace of virtual cluster vcluster: HostName, as for pods and
// Services (a claim's name is a DNS subdomain, and so is the host name).
// A pod's persistentVolumeClaim volume names the same host claim.
func HostClaimName(name, namespace, vcluster string) string {
	return HostName(name, namespace, vcluster)
}

// HostClaim translates a named virtual claim into its host claim. syncID
// identifies the pair.
//
// What the host gets (policy.claimSpecFields classifies every field; the
// gate refuses what must not reach the host, this function never widens):
//   - labels under their tenant keys, plus podbridge's own; no tenant
//     annotation (the host's provisioners and binder act on claim
//     annotations);
//   - accessModes, resources, storageClassName and volumeMode as written;
//   - a dataSource or dataSourceRef naming a PersistentVolumeClaim (core
//     group, no namespace) points at the host claim of that claim in the
//     same virtual namespace; any other source is copied as written, for
//     the gate to refuse;
//   - no volumeName and no selector (a tenant never picks a host volume:
//     the gate refuses both) and no volumeAttributesClassName.
func HostClaim(virtual *corev1.PersistentVolumeClaim, cfg Config, syncID string) (*corev1.PersistentVolumeClaim, field.ErrorList) {
	if errs := validateObjectMeta(virtual, validation.IsDNS1123Subdomain); len(errs) > 0 {
		return nil, errs
	}
	v := &virtual.Spec
	spec := corev1.PersistentVolumeClaimSpec{
		AccessModes:      slices.Clone(v.AccessModes),
		Resources:        *v.Resources.DeepCopy(),
		StorageClassName: copyPtr(v.StorageClassName),
		VolumeMode:       copyPtr(v.VolumeMode),
	}
	if src := v.DataSource; src != nil {
		spec.DataSource = src.DeepCopy()
		if IsClaimSource(src.APIGroup, src.Kind) {
			spec.DataSource.Name = HostClaimName(src.Name, virtual.Namespace, cfg.VCluster)
		}
	}
	if src := v.DataSourceRef; src != nil {
		spec.DataSourceRef = src.DeepCopy()
		if IsClaimSource(src.APIGroup, src.Kind) && src.Namespace == nil {
			spec.DataSourceRef.Name = HostClaimName(src.Name, virtual.Namespace, cfg.VCluster)
		}
	}
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: pairedHostMeta(virtual, HostClaimName(virtual.Name, virtual.Namespace, cfg.VCluster), cfg, syncID),
		Spec:       spec,
	}, nil
}

// IsClaimSource reports whether a data source of apiGroup and kind names a
// PersistentVolumeClaim (a clone).
func IsClaimSource(apiGroup *string, kind string) bool {
	return (apiGroup == nil || *apiGroup == "") && kind == "PersistentVolumeClaim"
}

// OverHostClaim is the host claim to write over current so that it holds
// desired: desired's labels and resource requests (the only spec field of
// a claim the host lets change, besides its binding) and podbridge's
// annotations, with what host controllers set on current (the binding,
// their annotations and finalizers, status) left as it is.
func OverHostClaim(desired, current *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	updated := current.DeepCopy()
	updated.Labels = desired.Labels
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	updated.Spec.Resources = *desired.Spec.Resources.DeepCopy()
	return updated
}

// SameHostClaim reports whether current, a host claim read from the host,
// already holds what desired would write: its labels, resource requests
// and podbridge's annotations.
func SameHostClaim(desired, current *corev1.PersistentVolumeClaim) bool {
	return equality.Semantic.DeepEqual(desired.Spec.Resources, current.Spec.Resources) &&
		maps.Equal(desired.Labels, current.Labels) && hasAll(current.Annotations, desired.Annotations)
}

// ImmutableClaimSpec is the part of a claim's spec that cannot change once
// the host claim exists: everything but the resource requests and the
// binding the host decides (volumeName).
func ImmutableClaimSpec(spec *corev1.PersistentVolumeClaimSpec) corev1.PersistentVolumeClaimSpec {
	s := *spec.DeepCopy()
	s.Resources, s.VolumeName = corev1.VolumeResourceRequirements{}, ""
	return s
}

// RequestedStorage is the storage a claim requests, in bytes (0 when it
// names none).
func RequestedStorage(claim *corev1.PersistentVolumeClaim) int64 {
	if q, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		return q.Value()
	}
	return 0
}

// ClaimStatus is the virtual claim's status from its host claim's: the
// host binds and provisions, the virtual claim mirrors phase, capacity,
// access modes, conditions and the resize state.
func ClaimStatus(host *corev1.PersistentVolumeClaimStatus) corev1.PersistentVolumeClaimStatus {
	return *host.DeepCopy()
}

// ClaimsClaim reports whether host is the host claim of the stored virtual
// claim: it carries the virtual claim's sync ID and names it, as Claims
// defines a pod pair.
func ClaimsClaim(virtual, host *corev1.PersistentVolumeClaim) bool {
	return virtual != nil && host != nil && ClaimsObject(virtual, host)
}
