package translate

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestVirtualStatusPodScheduled(t *testing.T) {
	bindingTime := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC))
	hostTime := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 4, 0, time.UTC))
	gated := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}
	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available"}
	hostScheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: hostTime}
	bound := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: bindingTime}
	tests := []struct {
		name         string
		virtualGates []corev1.PodSchedulingGate
		nodeName     string
		virtual      []corev1.PodCondition
		host         corev1.PodCondition
		want         *corev1.PodCondition
	}{
		{"held by podbridge's gate only: not the tenant's", nil, "", nil, gated, nil},
		{"held by the tenant's own gate", []corev1.PodSchedulingGate{{Name: "example.com/quota"}}, "", nil, gated, &gated},
		{"unschedulable on the host", nil, "", nil, unschedulable, &unschedulable},
		{"scheduled on the host, virtual not bound yet", nil, "", nil, hostScheduled, &hostScheduled},
		{"bound: the binding's condition is kept", nil, "node-1", []corev1.PodCondition{bound}, hostScheduled, &bound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			virtual := &corev1.Pod{
				Spec:   corev1.PodSpec{NodeName: tt.nodeName, SchedulingGates: tt.virtualGates},
				Status: corev1.PodStatus{Conditions: tt.virtual},
			}
			host := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{tt.host}}}
			var got *corev1.PodCondition
			for _, c := range VirtualStatus(virtual, host).Conditions {
				if c.Type == corev1.PodScheduled {
					got = &c
				}
			}
			if !apiequality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("PodScheduled = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVirtualStatusObservedGeneration(t *testing.T) {
	tests := []struct {
		name                             string
		hostGeneration, hostObserved     int64
		virtualGeneration, virtualBefore int64
		want                             int64
	}{
		{"host reports none (kwok, older kubelets)", 1, 0, 3, 0, 0},
		{"host caught up with its spec", 2, 2, 3, 2, 3},
		{"host not yet caught up", 3, 2, 4, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cond := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, ObservedGeneration: tt.hostObserved}
			host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: tt.hostGeneration},
				Status: corev1.PodStatus{ObservedGeneration: tt.hostObserved, Conditions: []corev1.PodCondition{cond}}}
			virtual := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: tt.virtualGeneration},
				Status: corev1.PodStatus{ObservedGeneration: tt.virtualBefore}}
			status := VirtualStatus(virtual, host)
			if status.ObservedGeneration != tt.want || status.Conditions[0].ObservedGeneration != tt.want {
				t.Errorf("observedGeneration %d, Ready's %d, want %d", status.ObservedGeneration, status.Conditions[0].ObservedGeneration, tt.want)
			}
		})
	}
}

// A host scheduler's message about a missing or unbound claim names the
// virtual pod's claim, not its host claim.
func TestVirtualStatusNamesVirtualClaims(t *testing.T) {
	claim := func(name string) []corev1.Volume {
		return []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
	}
	virtual := &corev1.Pod{Spec: corev1.PodSpec{Volumes: claim("data")}}
	host := &corev1.Pod{
		Spec: corev1.PodSpec{Volumes: claim("data-x-shop-x-vc")},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: `0/3 nodes are available: persistentvolumeclaim "data-x-shop-x-vc" not found. preemption: 0/3 nodes are available.`,
		}}},
	}
	got := VirtualStatus(virtual, host).Conditions
	if len(got) != 1 || got[0].Message != `0/3 nodes are available: persistentvolumeclaim "data" not found. preemption: 0/3 nodes are available.` {
		t.Errorf("conditions %+v", got)
	}
}
