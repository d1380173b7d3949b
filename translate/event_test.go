package translate

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVirtualEvent(t *testing.T) {
	virtual := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "vuid"}}
	hostPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-x-apps-x-t", Namespace: "hostns", UID: "huid"}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		host      corev1.Event
		wantCount int32
		wantLast  time.Time
		wantMsg   string
	}{
		{
			name: "core event with a count",
			host: corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: "web-x-apps-x-t.1", Namespace: "hostns"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: hostPod.Name, Namespace: "hostns", UID: "huid", FieldPath: "spec.containers{app}"},
				Reason:         "BackOff", Type: corev1.EventTypeWarning, Message: "Back-off restarting failed container app in pod hostns/web-x-apps-x-t",
				Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, FirstTimestamp: metav1.Time{Time: t0}, LastTimestamp: metav1.Time{Time: t0.Add(time.Minute)}, Count: 7,
			},
			wantCount: 7, wantLast: t0.Add(time.Minute), wantMsg: "Back-off restarting failed container app in pod apps/web",
		},
		{
			name: "events.k8s.io event with a series",
			host: corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: "web-x-apps-x-t.2", Namespace: "hostns"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: hostPod.Name, Namespace: "hostns", UID: "huid"},
				Reason:         "FailedScheduling", Type: corev1.EventTypeWarning, Message: "0/3 nodes are available",
				ReportingController: "default-scheduler", EventTime: metav1.MicroTime{Time: t0},
				Series: &corev1.EventSeries{Count: 4, LastObservedTime: metav1.MicroTime{Time: t0.Add(30 * time.Second)}},
			},
			wantCount: 4, wantLast: t0.Add(30 * time.Second), wantMsg: "0/3 nodes are available",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := VirtualEvent(&tc.host, virtual, hostPod)
			ref := got.InvolvedObject
			if got.Namespace != "apps" || ref.Name != "web" || ref.Namespace != "apps" || ref.UID != "vuid" || ref.Kind != "Pod" {
				t.Errorf("event %s/%s about %+v, want about the virtual pod", got.Namespace, got.Name, ref)
			}
			if ref.FieldPath != tc.host.InvolvedObject.FieldPath || got.Reason != tc.host.Reason || got.Type != tc.host.Type {
				t.Errorf("reason, type or field path changed: %+v", got)
			}
			if got.Count != tc.wantCount || !got.LastTimestamp.Time.Equal(tc.wantLast) || got.Message != tc.wantMsg {
				t.Errorf("count %d last %s message %q; want %d %s %q", got.Count, got.LastTimestamp, got.Message, tc.wantCount, tc.wantLast, tc.wantMsg)
			}
			if strings.Contains(got.Message, "hostns") || got.Source.Component == "" {
				t.Errorf("message %q, source %+v", got.Message, got.Source)
			}
			if again := VirtualEvent(&tc.host, virtual, hostPod); again.Name != got.Name {
				t.Errorf("names differ for one host event: %s, %s", got.Name, again.Name)
			}
		})
	}
	long := VirtualEventName(strings.Repeat("a", 253), "hostns", "e")
	if len(long) > 253 {
		t.Errorf("name of %d characters", len(long))
	}
}
