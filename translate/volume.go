package translate

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualVolumeDriver is the CSI driver of every virtual PersistentVolume:
// no such driver runs anywhere, so nothing in the virtual cluster (which
// has no kubelets and no attach-detach controller) can act on one.
const VirtualVolumeDriver = "host.podbridge.io"

// BindAnnotations are the annotations the host's binder records on a
// bound claim; the virtual claim mirrors them.
var BindAnnotations = []string{"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller"}

// ClaimBinding is what the virtual claim of host, a bound host claim,
// mirrors of its binding: the volume's name and the binder's annotations.
func ClaimBinding(host *corev1.PersistentVolumeClaim) (volumeName string, annotations map[string]string) {
	annotations = map[string]string{}
	for _, k := range BindAnnotations {
		if v, ok := host.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	return host.Spec.VolumeName, annotations
}

// NeedsBinding reports whether virtual, the stored virtual claim of host,
// must be written to mirror host's binding.
func NeedsBinding(virtual, host *corev1.PersistentVolumeClaim) bool {
	name, annotations := ClaimBinding(host)
	if name == "" || (virtual.Spec.VolumeName != "" && virtual.Spec.VolumeName != name) {
		return false // unbound, or bound otherwise: the gate says so.
	}
	return virtual.Spec.VolumeName == "" || !hasAll(virtual.Annotations, annotations)
}

// BoundVirtualClaim is virtual with host's binding mirrored.
func BoundVirtualClaim(virtual, host *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	bound := virtual.DeepCopy()
	name, annotations := ClaimBinding(host)
	bound.Spec.VolumeName = name
	if bound.Annotations == nil {
		bound.Annotations = map[string]string{}
	}
	maps.Copy(bound.Annotations, annotations)
	return bound
}

// VirtualVolume is the read-only virtual PersistentVolume of a bound claim
// pair, so `kubectl get pv` and controllers that read a claim's volume
// behave: named like the host volume (host.Spec.VolumeName), bound to the
// virtual claim (its claimRef), with the host claim's capacity and access
// modes, the claim's class and volume mode, reclaimPolicy (the host
// class's), and a CSI source of VirtualVolumeDriver that nothing acts on.
// It carries nothing of the host volume itself (no server, path or
// handle of the host's).
func VirtualVolume(virtual, host *corev1.PersistentVolumeClaim, reclaimPolicy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	class := ""
	if virtual.Spec.StorageClassName != nil {
		class = *virtual.Spec.StorageClassName
	}
	modes := host.Status.AccessModes
	if len(modes) == 0 {
		modes = host.Spec.AccessModes
	}
	return &corev1.PersistentVolume{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolume"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   host.Spec.VolumeName,
			Labels: map[string]string{LabelManagedBy: ManagedByValue},
			Annotations: map[string]string{
				AnnotationName:      virtual.Name,
				AnnotationNamespace: virtual.Namespace,
				AnnotationSyncID:    virtual.Annotations[AnnotationSyncID],
			},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    host.Status.Capacity.DeepCopy(),
			AccessModes: append([]corev1.PersistentVolumeAccessMode(nil), modes...),
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: virtual.Namespace, Name: virtual.Name, UID: virtual.UID,
			},
			PersistentVolumeReclaimPolicy: reclaimPolicy,
			StorageClassName:              class,
			VolumeMode:                    copyPtr(host.Spec.VolumeMode),
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: VirtualVolumeDriver, VolumeHandle: host.Spec.VolumeName, ReadOnly: true,
			}},
		},
	}
}

// IsVolumeMirror reports whether a virtual volume is one of podbridge's.
func IsVolumeMirror(pv *corev1.PersistentVolume) bool {
	return pv.Labels[LabelManagedBy] == ManagedByValue
}

// OverVirtualVolume is current, a virtual volume, holding desired's
// labels, podbridge's annotations and the fields of its spec an update
// may set (capacity, access modes, claimRef, reclaim policy, class); a
// source or volume mode that differs is set only by a delete and a create
// (VolumeNeedsRecreate).
func OverVirtualVolume(desired, current *corev1.PersistentVolume) *corev1.PersistentVolume {
	updated := current.DeepCopy()
	updated.Labels = desired.Labels
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	updated.Spec.Capacity = desired.Spec.Capacity
	updated.Spec.AccessModes = desired.Spec.AccessModes
	updated.Spec.ClaimRef = desired.Spec.ClaimRef
	updated.Spec.PersistentVolumeReclaimPolicy = desired.Spec.PersistentVolumeReclaimPolicy
	updated.Spec.StorageClassName = desired.Spec.StorageClassName
	return updated
}

// VolumeNeedsRecreate reports whether current differs from desired in a
// field the apiserver keeps as created (its source, its volume mode).
func VolumeNeedsRecreate(desired, current *corev1.PersistentVolume) bool {
	return !equality.Semantic.DeepEqual(desired.Spec.PersistentVolumeSource, current.Spec.PersistentVolumeSource) ||
		!equality.Semantic.DeepEqual(desired.Spec.VolumeMode, current.Spec.VolumeMode) && current.Spec.VolumeMode != nil && desired.Spec.VolumeMode != nil
}

// SameVirtualVolume reports whether current already holds desired.
func SameVirtualVolume(desired, current *corev1.PersistentVolume) bool {
	return !VolumeNeedsRecreate(desired, current) &&
		equality.Semantic.DeepEqual(OverVirtualVolume(desired, current).Spec, current.Spec) &&
		maps.Equal(desired.Labels, current.Labels) && hasAll(current.Annotations, desired.Annotations)
}
