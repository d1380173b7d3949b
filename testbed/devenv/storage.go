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

// WaitForFirstConsumerClassName is the host's second StorageClass when a
// real node runs: the same provisioner and reclaim policy as
// StorageClassName, binding WaitForFirstConsumer. A claim of it stays
// Pending until a pod uses it; the host scheduler then picks the pod's
// node and records it on the host claim (volume.kubernetes.io/selected-node),
// and only then does the host's binder provision and bind. The host-path
// provisioner ignores the node it is given (its volume is a folder of this
// machine, with no node affinity), which is right on the one real node.
const WaitForFirstConsumerClassName = "standard-wait"

// hostPathProvisioner is the host-path provisioner's name.
const hostPathProvisioner = "kubernetes.io/host-path"

// allowStorageClasses lets tenants' claims name the test bed's classes, so
// the reflector mirrors them into the virtual cluster (the default one
// marked default), and a claim naming no class gets the default from the
// virtual cluster's admission.
func allowStorageClasses(tc *translate.Config) {
	for _, name := range []string{StorageClassName, WaitForFirstConsumerClassName} {
		if !slices.Contains(tc.StorageClasses, name) {
			tc.StorageClasses = append(slices.Clone(tc.StorageClasses), name)
		}
	}
}

// createStorageClasses creates the host's classes: the default one, binding
// at once, and one waiting for the first consumer.
func createStorageClasses(ctx context.Context, c client.Client) error {
	classes := []*storagev1.StorageClass{{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName, Annotations: map[string]string{
			"storageclass.kubernetes.io/is-default-class": "true",
		}},
		Provisioner:       hostPathProvisioner,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}, {
		ObjectMeta:        metav1.ObjectMeta{Name: WaitForFirstConsumerClassName},
		Provisioner:       hostPathProvisioner,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
	}}
	for _, class := range classes {
		if err := c.Create(ctx, class); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the host StorageClass %s: %w", class.Name, err)
		}
	}
	return nil
}
