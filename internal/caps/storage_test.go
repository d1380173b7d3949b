package caps

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func hostClaim(name, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
	}
}

// The cap counts the host claims the informer shows and the writes under
// way; a resize counts its growth only; a shrink or an unchanged request
// is always admitted; a release gives the room back.
func TestHostStorage(t *testing.T) {
	const gi = int64(1 << 30)
	h := NewHostStorage(10 * gi)
	handler := h.Handler()
	handler.OnAdd(hostClaim("a", "4Gi"), false)
	handler.OnAdd(hostClaim("b", "4Gi"), false)

	var limit *LimitError
	if _, err := h.Reserve("c", 3*gi); !errors.As(err, &limit) || limit.Use != 8*gi || !strings.Contains(err.Error(), "--max-claim-storage") || !strings.Contains(err.Error(), "10Gi") {
		t.Fatalf("3Gi more with 8Gi of 10Gi in use: %v", err)
	}
	release, err := h.Reserve("c", 2*gi)
	if err != nil {
		t.Fatalf("2Gi more with 8Gi of 10Gi in use: %v", err)
	}
	if _, err := h.Reserve("a", 5*gi); err == nil {
		t.Error("growing a by 1Gi at the cap admitted")
	}
	if _, err := h.Reserve("a", 4*gi); err != nil {
		t.Errorf("rewriting a at its size: %v", err)
	}
	release()
	if _, err := h.Reserve("a", 6*gi); err != nil {
		t.Errorf("growing a by 2Gi after the release: %v", err)
	}
	// Seen by the informer, the reservation gives way to the claim.
	handler.OnUpdate(nil, hostClaim("a", "6Gi"))
	handler.OnDelete(hostClaim("b", "4Gi"))
	if _, err := h.Reserve("d", 4*gi); err != nil {
		t.Errorf("4Gi more with 6Gi of 10Gi in use: %v", err)
	}
}
