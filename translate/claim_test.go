package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// A virtual claim becomes a host claim in the host namespace under
// HostClaimName, with tenant labels under tenant keys, podbridge's labels
// and annotations, no tenant annotation, no volume name or selector, and a
// clone source pointed at the host claim of the same virtual namespace.
func TestHostClaim(t *testing.T) {
	cfg := Config{VCluster: "vc", HostNamespace: "host"}
	virtual := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"volume.kubernetes.io/selected-node": "n"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("fast"),
			VolumeName:       "pv-1",
			Selector:         &metav1.LabelSelector{},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			DataSource:       &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "db"},
			DataSourceRef:    &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db"},
		},
	}
	host, errs := HostClaim(virtual, cfg, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if host.Name != "data-x-shop-x-vc" || host.Namespace != "host" {
		t.Errorf("host claim %s/%s", host.Namespace, host.Name)
	}
	if host.Labels[TenantKey("app")] != "db" || host.Labels[LabelVCluster] != "vc" || host.Labels[LabelNamespace] != "shop" || host.Labels[LabelManagedBy] != ManagedByValue {
		t.Errorf("labels %v", host.Labels)
	}
	for k := range host.Annotations {
		if !IsReserved(k) {
			t.Errorf("tenant annotation %q on the host claim", k)
		}
	}
	if host.Annotations[AnnotationSyncID] != "id" || host.Annotations[AnnotationName] != "data" || host.Annotations[AnnotationNamespace] != "shop" {
		t.Errorf("annotations %v", host.Annotations)
	}
	s := host.Spec
	if s.VolumeName != "" || s.Selector != nil || *s.StorageClassName != "fast" || RequestedStorage(host) != 1<<30 {
		t.Errorf("spec %+v", s)
	}
	if s.DataSource.Name != "db-x-shop-x-vc" || s.DataSourceRef.Name != "db-x-shop-x-vc" {
		t.Errorf("sources %+v %+v", s.DataSource, s.DataSourceRef)
	}
	// A snapshot source is not translated (the gate refuses it).
	virtual.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "s"}
	if host, _ = HostClaim(virtual, cfg, "id"); host.Spec.DataSource.Name != "s" {
		t.Errorf("snapshot source %+v", host.Spec.DataSource)
	}
	// podbridge's keys are refused.
	virtual.Labels[LabelVCluster] = "other"
	if _, errs := HostClaim(virtual, cfg, "id"); len(errs) == 0 {
		t.Error("a claim with podbridge's label translated")
	}
}

// A write over the host claim changes its labels, requests and podbridge's
// annotations only: the host's binding, annotations and status stay.
func TestOverHostClaim(t *testing.T) {
	current := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "h", Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes", AnnotationSyncID: "id"}, Finalizers: []string{"kubernetes.io/pvc-protection"}},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1", Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	desired := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"b": "2"}, Annotations: map[string]string{AnnotationSyncID: "id"}},
		Spec:       corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}},
	}
	if SameHostClaim(desired, current) {
		t.Error("a resize is no change")
	}
	u := OverHostClaim(desired, current)
	if u.Spec.VolumeName != "pv-1" || u.Annotations["pv.kubernetes.io/bind-completed"] != "yes" || len(u.Finalizers) != 1 || u.Status.Phase != corev1.ClaimBound ||
		u.Labels["b"] != "2" || u.Labels["a"] != "" || RequestedStorage(u) != 2<<30 {
		t.Errorf("written %+v", u)
	}
	if !SameHostClaim(desired, u) {
		t.Error("the written claim differs from what was wanted")
	}
}
