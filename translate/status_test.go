package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestVirtualStatusAppliesReadinessGates(t *testing.T) {
	host := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
	}}}
	gate := corev1.PodConditionType("example.com/lb")
	tests := []struct {
		name      string
		gates     []corev1.PodReadinessGate
		virtual   []corev1.PodCondition
		wantReady corev1.ConditionStatus
	}{
		{"no gates", nil, nil, corev1.ConditionTrue},
		{"gate not set yet", []corev1.PodReadinessGate{{ConditionType: gate}}, nil, corev1.ConditionFalse},
		{"gate false", []corev1.PodReadinessGate{{ConditionType: gate}}, []corev1.PodCondition{{Type: gate, Status: corev1.ConditionFalse}}, corev1.ConditionFalse},
		{"gate true", []corev1.PodReadinessGate{{ConditionType: gate}}, []corev1.PodCondition{{Type: gate, Status: corev1.ConditionTrue}}, corev1.ConditionTrue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			virtual := &corev1.Pod{Spec: corev1.PodSpec{ReadinessGates: tt.gates}, Status: corev1.PodStatus{Conditions: tt.virtual}}
			status := VirtualStatus(virtual, host)
			var ready *corev1.PodCondition
			for i := range status.Conditions {
				if status.Conditions[i].Type == corev1.PodReady {
					ready = &status.Conditions[i]
				}
			}
			if ready == nil || ready.Status != tt.wantReady {
				t.Fatalf("Ready = %+v, want %s", ready, tt.wantReady)
			}
			for _, c := range tt.virtual {
				found := false
				for _, got := range status.Conditions {
					found = found || (got.Type == c.Type && got.Status == c.Status)
				}
				if !found {
					t.Errorf("gate condition %s was not kept", c.Type)
				}
			}
		})
	}
}
