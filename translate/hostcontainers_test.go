package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEventConcernsVirtualPod(t *testing.T) {
	virtual := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers:      []corev1.Container{{Name: "init"}},
		Containers:          []corev1.Container{{Name: "app"}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger"}}, {EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "operator"}}},
	}}
	host := virtual.DeepCopy()
	// The reflector added "debugger"; "operator" was added on the host by
	// someone else, and the tenant gave one of its own the same name.
	host.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: FieldManagerReflector, Subresource: "ephemeralcontainers", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ephemeralContainers":{"k:{\"name\":\"debugger\"}":{".":{},"f:name":{}}}}}`)},
		{Manager: "kubectl-debug", Subresource: "ephemeralcontainers", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ephemeralContainers":{"k:{\"name\":\"operator\"}":{".":{},"f:name":{}}}}}`)},
	}
	host.Spec.EphemeralContainers = append(host.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "host-only"}})
	for _, tc := range []struct {
		fieldPath string
		want      bool
	}{
		{"", true},
		{"spec.containers{app}", true},
		{"spec.initContainers{init}", true},
		{"spec.ephemeralContainers{debugger}", true},
		{"spec.ephemeralContainers{operator}", false},  // same name as the tenant's, added by another
		{"spec.ephemeralContainers{host-only}", false}, // only the host pod has it
		{"spec.initContainers{app}", false},            // the tenant's name in another list
		{"spec.containers{missing}", false},
		{"spec.volumes{app}", false},
		{"spec.containers{app}.x", false},
		{"spec", false},
	} {
		e := &corev1.Event{InvolvedObject: corev1.ObjectReference{FieldPath: tc.fieldPath}}
		if got := EventConcernsVirtualPod(e, virtual, host); got != tc.want {
			t.Errorf("field path %q: %v, want %v", tc.fieldPath, got, tc.want)
		}
	}
}
