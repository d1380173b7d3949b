package reflector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

func claimGate() policy.Gate {
	return policy.Gate{Config: translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa", StorageClasses: []string{"fast"}}}
}

func storedClaim(mutate ...func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", Annotations: map[string]string{translate.AnnotationSyncID: "id"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("fast"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func hostClaimOf(virtual *corev1.PersistentVolumeClaim, age time.Duration, mutate ...func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	h, errs := translate.HostClaim(virtual, claimGate().Config, virtual.Annotations[translate.AnnotationSyncID])
	if len(errs) > 0 {
		panic(fmt.Sprint(errs))
	}
	h.CreationTimestamp = metav1.NewTime(svcNow.Add(-age))
	for _, m := range mutate {
		m(h)
	}
	return h
}

var bound = corev1.PersistentVolumeClaimStatus{
	Phase:       corev1.ClaimBound,
	AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
	Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
}

// The claim reconciler's decision for each state of a pair.
func TestDecideClaim(t *testing.T) {
	grace := 30 * time.Second
	stored := storedClaim()
	withStatus := func(c *corev1.PersistentVolumeClaim) { c.Status = bound }
	terminating := func(c *corev1.PersistentVolumeClaim) { c.DeletionTimestamp = ptr.To(metav1.NewTime(svcNow)) }
	cases := []struct {
		name          string
		virtual, host *corev1.PersistentVolumeClaim
		want          string
	}{
		{"in sync", stored, hostClaimOf(stored, time.Hour), ""},
		{"the host bound it: status mirrored", stored, hostClaimOf(stored, time.Hour, withStatus), "Status"},
		{"mirrored already", storedClaim(withStatus), hostClaimOf(stored, time.Hour, withStatus), ""},
		{"the host bound it to a volume: binding mirrored", storedClaim(withStatus), hostClaimOf(stored, time.Hour, withStatus, func(h *corev1.PersistentVolumeClaim) {
			h.Spec.VolumeName = "pvc-123"
			h.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		}), "Bind"},
		{"binding mirrored already", storedClaim(withStatus, func(c *corev1.PersistentVolumeClaim) {
			c.Spec.VolumeName = "pvc-123"
			c.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		}), hostClaimOf(stored, time.Hour, withStatus, func(h *corev1.PersistentVolumeClaim) {
			h.Spec.VolumeName = "pvc-123"
			h.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		}), ""},
		{"resize status mirrored", storedClaim(withStatus), hostClaimOf(stored, time.Hour, withStatus, func(h *corev1.PersistentVolumeClaim) {
			h.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
			h.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{corev1.ResourceStorage: corev1.PersistentVolumeClaimControllerResizeInProgress}
		}), "Status"},
		{"orphan past the grace period", nil, hostClaimOf(stored, time.Minute), "DeleteOrphan"},
		{"orphan still young: wait", nil, hostClaimOf(stored, time.Second), "requeue"},
		{"orphan already going", nil, hostClaimOf(stored, time.Minute, terminating), ""},
		{"host claim of an earlier virtual claim of the same name", storedClaim(func(c *corev1.PersistentVolumeClaim) { c.Annotations[translate.AnnotationSyncID] = "new" }),
			hostClaimOf(stored, time.Minute), "DeleteOrphan DeleteVirtual"},
		{"host claim gone: the virtual claim goes", stored, nil, "DeleteVirtual"},
		{"virtual claim in use and Terminating: its host claim stays, status mirrored", storedClaim(terminating), hostClaimOf(stored, time.Hour, withStatus), "Status"},
		{"host claim Terminating: nothing written to it", stored, hostClaimOf(stored, time.Hour, terminating, func(h *corev1.PersistentVolumeClaim) {
			h.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("5Gi")
		}), ""},
		{"never admitted by podbridge: nothing on the host, an event", storedClaim(func(c *corev1.PersistentVolumeClaim) { c.Annotations = nil }), nil, "NotAdmitted"},
		{"a resize the webhook did not see is carried", storedClaim(func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		}), hostClaimOf(stored, time.Hour), "UpdateHost"},
		{"a host claim larger than the stored one is never shrunk", stored, hostClaimOf(stored, time.Hour, func(h *corev1.PersistentVolumeClaim) {
			h.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		}), ""},
		{"a resize just after the webhook wrote: wait", storedClaim(func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		}), hostClaimOf(stored, time.Hour, func(h *corev1.PersistentVolumeClaim) {
			h.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: translate.FieldManagerWebhook, Time: ptr.To(metav1.NewTime(svcNow.Add(-5 * time.Second)))}}
		}), "requeue"},
		{"a class sneaked in after admission is refused", storedClaim(func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("premium") }),
			hostClaimOf(stored, time.Hour), "Refused"},
		{"a volume name sneaked in after admission is refused", storedClaim(func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-of-another" }),
			hostClaimOf(stored, time.Hour), "Refused"},
		{"a provisioner annotation sneaked in after admission is refused", storedClaim(func(c *corev1.PersistentVolumeClaim) {
			c.Annotations["volume.kubernetes.io/storage-provisioner"] = "evil"
		}), hostClaimOf(stored, time.Hour), "Refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := decideClaim(tc.virtual, tc.host, claimGate(), svcNow, grace)
			var got []string
			for _, s := range d.steps {
				got = append(got, s.String())
			}
			if d.requeue > 0 {
				got = append(got, "requeue")
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("steps %q, want %q", g, tc.want)
			}
			if d.desired != nil && (d.desired.Spec.StorageClassName == nil || *d.desired.Spec.StorageClassName != "fast") {
				t.Errorf("update changes the host claim's class: %+v", d.desired.Spec)
			}
		})
	}
}
