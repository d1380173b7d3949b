package reflector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// The StorageClass reconciler's decision for each state of a name: a
// mirror is made, put back after the tenant's edit or deletion, made again
// when a field only a create sets differs, and removed when its host class
// goes or is no longer allowed; a tenant's own class is left alone.
func TestDecideStorageClass(t *testing.T) {
	host := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: "fast", Annotations: map[string]string{translate.AnnotationDefaultStorageClass: "true"}},
		Provisioner:          "csi.example.com",
		Parameters:           map[string]string{"csi.storage.k8s.io/provisioner-secret-name": "platform-secret"},
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
	mirror := translate.VirtualStorageClass(host)
	if len(mirror.Parameters) > 0 || !translate.IsDefaultStorageClass(mirror) || !translate.IsStorageClassMirror(mirror) || !*mirror.AllowVolumeExpansion {
		t.Fatalf("mirror %+v", mirror)
	}
	edited := mirror.DeepCopy()
	edited.Annotations[translate.AnnotationDefaultStorageClass] = "false"
	edited.AllowVolumeExpansion = ptr.To(false)
	reprovisioned := mirror.DeepCopy()
	reprovisioned.Provisioner = "tenant.example.com"
	tenants := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, Provisioner: "x"}
	cases := []struct {
		name          string
		allowed       bool
		host, virtual *storagev1.StorageClass
		want          classStep
	}{
		{"no mirror yet", true, host, nil, classCreate},
		{"mirrored", true, host, mirror, classNone},
		{"the tenant's edit is undone", true, host, edited, classUpdate},
		{"a field only a create sets: made again", true, host, reprovisioned, classDelete},
		{"host class gone", true, nil, mirror, classDelete},
		{"no longer allowed", false, nil, mirror, classDelete},
		{"the tenant's own class", false, nil, tenants, classNone},
		{"an allowed name the host lacks, the tenant's", true, nil, tenants, classNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step, obj := decideStorageClass(tc.allowed, tc.host, tc.virtual)
			if step != tc.want {
				t.Fatalf("step %s, want %s", step, tc.want)
			}
			if step == classUpdate && (obj.Annotations[translate.AnnotationDefaultStorageClass] != "true" || !*obj.AllowVolumeExpansion) {
				t.Errorf("update writes %+v", obj)
			}
		})
	}
}
