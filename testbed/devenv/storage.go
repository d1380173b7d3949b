package devenv

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// StorageClassName is the host's default StorageClass when a real node
// runs: kube-controller-manager's host-path provisioner
// (controlplane.HostControllers) makes each claim's volume a folder of
// this machine (realnode.HostPathProvisionerDir), which the real node's
// kubelet mounts. Reclaim policy Delete: a claim's deletion removes its
// folder. Binding Immediate: a volume can be mounted on the one real node
// only, so there is no node to wait for.
const StorageClassName = "standard"

// hostPathProvisioner is the host-path provisioner's name.
const hostPathProvisioner = "kubernetes.io/host-path"

// allowStorageClass lets tenants' claims name the test bed's class, so
// the reflector mirrors it into the virtual cluster, marked default, and
// a claim naming no class gets it from the virtual cluster's admission.
func allowStorageClass(tc *translate.Config) {
	if !slices.Contains(tc.StorageClasses, StorageClassName) {
		tc.StorageClasses = append(slices.Clone(tc.StorageClasses), StorageClassName)
	}
}

// createStorageClass creates the host's default class.
func createStorageClass(ctx context.Context, c client.Client) error {
	class := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName, Annotations: map[string]string{
			"storageclass.kubernetes.io/is-default-class": "true",
		}},
		Provisioner:       hostPathProvisioner,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := c.Create(ctx, class); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the host StorageClass %s: %w", StorageClassName, err)
	}
	return nil
}
