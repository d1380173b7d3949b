package translate

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationDefaultStorageClass marks a cluster's default StorageClass:
// the apiserver's DefaultStorageClass admission gives it to claims that
// name none.
const AnnotationDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"

// IsDefaultStorageClass reports whether class is marked its cluster's default.
func IsDefaultStorageClass(class *storagev1.StorageClass) bool {
	return class.Annotations[AnnotationDefaultStorageClass] == "true"
}

// VirtualStorageClass is the read-only virtual mirror of host, an allowed
// host class, so that `kubectl get storageclass` in the virtual cluster
// shows the classes a tenant may name, and the virtual apiserver's own
// admission (DefaultStorageClass, the resize check of allowVolumeExpansion)
// reads the host's answers. It carries the class's name, provisioner,
// reclaim policy, binding mode, expansion, mount options and topologies,
// and the default mark of the host's default class; never its parameters,
// which may name host Secrets and mean nothing to a tenant. Nothing in the
// virtual cluster provisions from it: the host does.
func VirtualStorageClass(host *storagev1.StorageClass) *storagev1.StorageClass {
	mirror := &storagev1.StorageClass{
		TypeMeta: metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        host.Name,
			Labels:      map[string]string{LabelManagedBy: ManagedByValue},
			Annotations: map[string]string{},
		},
		Provisioner:          host.Provisioner,
		ReclaimPolicy:        copyPtr(host.ReclaimPolicy),
		VolumeBindingMode:    copyPtr(host.VolumeBindingMode),
		AllowVolumeExpansion: copyPtr(host.AllowVolumeExpansion),
		MountOptions:         slices.Clone(host.MountOptions),
	}
	for _, t := range host.AllowedTopologies {
		mirror.AllowedTopologies = append(mirror.AllowedTopologies, *t.DeepCopy())
	}
	if IsDefaultStorageClass(host) {
		mirror.Annotations[AnnotationDefaultStorageClass] = "true"
	}
	return mirror
}

// IsStorageClassMirror reports whether a virtual class is one of
// podbridge's mirrors.
func IsStorageClassMirror(class *storagev1.StorageClass) bool {
	return class.Labels[LabelManagedBy] == ManagedByValue
}

// StorageClassMirrorDiffers says how current, a virtual class, differs
// from desired, the mirror it must be: not at all, in what an update can
// set (the mark, the default annotation, expansion), or in a field the
// apiserver keeps as it was created (then only a delete and a create set
// it).
func StorageClassMirrorDiffers(desired, current *storagev1.StorageClass) (differs, immutable bool) {
	immutable = desired.Provisioner != current.Provisioner ||
		!equality.Semantic.DeepEqual(desired.Parameters, current.Parameters) ||
		reclaim(desired) != reclaim(current) || binding(desired) != binding(current) ||
		!equality.Semantic.DeepEqual(desired.MountOptions, current.MountOptions) ||
		!equality.Semantic.DeepEqual(desired.AllowedTopologies, current.AllowedTopologies)
	differs = immutable || !maps.Equal(desired.Labels, current.Labels) || !maps.Equal(desired.Annotations, current.Annotations) ||
		!equality.Semantic.DeepEqual(desired.AllowVolumeExpansion, current.AllowVolumeExpansion)
	return differs, immutable
}

// reclaim and binding are a class's policies as the apiserver defaults
// them.
func reclaim(c *storagev1.StorageClass) corev1.PersistentVolumeReclaimPolicy {
	if c.ReclaimPolicy == nil {
		return corev1.PersistentVolumeReclaimDelete
	}
	return *c.ReclaimPolicy
}

func binding(c *storagev1.StorageClass) storagev1.VolumeBindingMode {
	if c.VolumeBindingMode == nil {
		return storagev1.VolumeBindingImmediate
	}
	return *c.VolumeBindingMode
}
