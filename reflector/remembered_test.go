package reflector

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podbridge/podbridge/translate"
)

func TestWrittenOver(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	pod := func(rv string) *corev1.Pod { return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}} }
	tests := []struct {
		name  string
		write func(w *writtenOver)
		// seen are the cached (virtual, host) pods of successive reconciles.
		seen [][2]*corev1.Pod
		want []bool
	}{
		{
			name:  "virtual write: waits until the cache moves on, then forgets",
			write: func(w *writtenOver) { w.virtual(key, "1", "2") },
			seen:  [][2]*corev1.Pod{{pod("1"), pod("7")}, {pod("2"), pod("7")}, {pod("1"), pod("7")}},
			want:  []bool{true, false, false},
		},
		{
			name:  "host write",
			write: func(w *writtenOver) { w.host(key, "7", "8") },
			seen:  [][2]*corev1.Pod{{pod("1"), pod("7")}, {pod("1"), pod("8")}},
			want:  []bool{true, false},
		},
		{
			name:  "a write that changed nothing waits for nothing",
			write: func(w *writtenOver) { w.virtual(key, "1", "1") },
			seen:  [][2]*corev1.Pod{{pod("1"), nil}},
			want:  []bool{false},
		},
		{
			name:  "a removal: the pod is gone from the cache",
			write: func(w *writtenOver) { w.virtual(key, "1", "") },
			seen:  [][2]*corev1.Pod{{pod("1"), nil}, {nil, nil}},
			want:  []bool{true, false},
		},
		{
			name:  "nothing written",
			write: func(*writtenOver) {},
			seen:  [][2]*corev1.Pod{{pod("1"), pod("7")}},
			want:  []bool{false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &writtenOver{}
			tt.write(w)
			for i, s := range tt.seen {
				if got := w.lagging(key, s[0], s[1]); got != tt.want[i] {
					t.Errorf("reconcile %d: lagging = %t, want %t", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestGonePodsExpire(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(time.Now())
	gone := newGonePods(time.Minute, clock)
	deleted := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Annotations: map[string]string{translate.AnnotationSyncID: "s1"}}}
	gone.put(deleted)
	gone.put(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "not-ours"}})
	if !gone.syncID("s1") || !gone.uid("u1") {
		t.Fatal("a deleted pod is not remembered")
	}
	if gone.uid("not-ours") || gone.syncID("") || gone.uid("") {
		t.Error("a pod podbridge did not admit is remembered")
	}
	clock.SetTime(clock.Now().Add(2 * time.Minute))
	gone.put(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u2", Annotations: map[string]string{translate.AnnotationSyncID: "s2"}}})
	if gone.syncID("s1") || gone.uid("u1") {
		t.Error("a pod deleted longer ago than the grace period is still remembered")
	}
	if !gone.syncID("s2") {
		t.Error("the newest deletion is forgotten")
	}
}
