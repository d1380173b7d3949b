package reflector

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// The volume reconciler's decision for each state of a volume name: a
// virtual volume exists exactly while its claim pair is bound to it, is
// put back after a tenant's edit, and goes (released first, so the
// virtual cluster's volume protection lets it go) with its claim; a
// volume the tenant made is left alone.
func TestDecideVolume(t *testing.T) {
	virtual := storedClaim()
	virtual.UID = "vuid"
	host := hostClaimOf(virtual, time.Hour, func(h *corev1.PersistentVolumeClaim) {
		h.Spec.VolumeName = "pvc-123"
		h.Status = bound
	})
	desired := translate.VirtualVolume(virtual, host, corev1.PersistentVolumeReclaimDelete)
	if desired.Name != "pvc-123" || desired.Spec.ClaimRef.Name != "data" || desired.Spec.ClaimRef.UID != "vuid" ||
		desired.Spec.CSI == nil || desired.Spec.CSI.Driver != translate.VirtualVolumeDriver || desired.Spec.StorageClassName != "fast" {
		t.Fatalf("virtual volume %+v", desired)
	}
	mirrored := desired.DeepCopy()
	mirrored.Status.Phase = corev1.VolumeBound
	grown := desired.DeepCopy()
	grown.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
	edited := mirrored.DeepCopy()
	edited.Spec.ClaimRef.Namespace = "victim"
	resourced := mirrored.DeepCopy()
	resourced.Spec.CSI = nil
	resourced.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/"}
	deleting := mirrored.DeepCopy()
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(svcNow))
	released := deleting.DeepCopy()
	released.Status.Phase = corev1.VolumeReleased
	tenants := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "mine"}}
	cases := []struct {
		name             string
		virtual, desired *corev1.PersistentVolume
		want             volumeStep
	}{
		{"bound, no volume yet", nil, desired, volCreate},
		{"mirrored", mirrored, desired, volNone},
		{"not yet marked Bound", desired, desired, volUpdate},
		{"the host claim grew", mirrored, grown, volUpdate},
		{"the tenant's edit is undone", edited, desired, volUpdate},
		{"a source only a create sets: made again", resourced, desired, volDelete},
		{"the claim went", mirrored, nil, volDelete},
		{"going, still Bound: released", deleting, nil, volRelease},
		{"going, released", released, nil, volNone},
		{"deleted by the tenant: made again once gone", deleting, desired, volNone},
		{"the tenant's own volume", tenants, nil, volNone},
		{"nothing", nil, nil, volNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideVolume(tc.virtual, tc.desired); got != tc.want {
				t.Errorf("step %s, want %s", got, tc.want)
			}
		})
	}
}
