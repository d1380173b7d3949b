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

// A host claim's events (the host binder's and provisioner's) show on the
// virtual claim, about it by name, namespace and UID, with the host
// claim's name and namespace in the message replaced.
func TestVirtualClaimEvent(t *testing.T) {
	virtual := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "apps", UID: "vuid"}}
	hostClaim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-x-apps-x-t", Namespace: "hostns", UID: "huid"}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		host    corev1.Event
		wantMsg string
	}{
		{"WaitForFirstConsumer", corev1.Event{
			Reason: "WaitForFirstConsumer", Type: corev1.EventTypeNormal, Message: "waiting for first consumer to be created before binding",
			Source: corev1.EventSource{Component: "persistentvolume-controller"}, FirstTimestamp: metav1.Time{Time: t0}, LastTimestamp: metav1.Time{Time: t0.Add(time.Minute)}, Count: 5,
		}, "waiting for first consumer to be created before binding"},
		{"a message naming the host claim", corev1.Event{
			Reason: "ExternalProvisioning", Type: corev1.EventTypeNormal,
			Message: `Waiting for a volume to be created either by the external provisioner 'x' for claim "hostns/data-x-apps-x-t" or manually`,
			Source:  corev1.EventSource{Component: "persistentvolume-controller"}, FirstTimestamp: metav1.Time{Time: t0}, Count: 1,
		}, `Waiting for a volume to be created either by the external provisioner 'x' for claim "apps/data" or manually`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.host.ObjectMeta = metav1.ObjectMeta{Name: hostClaim.Name + ".1", Namespace: "hostns"}
			tc.host.InvolvedObject = corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Name: hostClaim.Name, Namespace: "hostns", UID: "huid"}
			got := VirtualClaimEvent(&tc.host, virtual, hostClaim)
			want := corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: "apps", Name: "data", UID: "vuid"}
			if got.InvolvedObject != want || got.Namespace != "apps" {
				t.Errorf("event %s/%s about %+v, want about %+v", got.Namespace, got.Name, got.InvolvedObject, want)
			}
			if got.Message != tc.wantMsg || got.Reason != tc.host.Reason || got.Type != tc.host.Type || got.Count != max(tc.host.Count, 1) || got.Source.Component != tc.host.Source.Component {
				t.Errorf("got %q %s %s count %d from %s; want %q and the host's reason, type, count and source", got.Message, got.Reason, got.Type, got.Count, got.Source.Component, tc.wantMsg)
			}
			if got.Name != VirtualEventName("data", "hostns", tc.host.Name) {
				t.Errorf("name %s", got.Name)
			}
		})
	}
}

// The virtual pod shows one Scheduled event, podbridge's (naming the
// virtual pod and node); the host scheduler's is not copied, every other
// host event is, the scheduler's failures included.
func TestCopiesHostEvent(t *testing.T) {
	cases := []struct {
		name string
		host corev1.Event
		want bool
	}{
		{"scheduler's Scheduled (events.k8s.io)", corev1.Event{Reason: "Scheduled", Type: corev1.EventTypeNormal, ReportingController: "default-scheduler", Message: "Successfully assigned hostns/web-x-apps-x-t to node-1"}, false},
		{"Scheduled from a second host scheduler (core)", corev1.Event{Reason: "Scheduled", Type: corev1.EventTypeNormal, Source: corev1.EventSource{Component: "other-scheduler"}}, false},
		{"FailedScheduling", corev1.Event{Reason: "FailedScheduling", Type: corev1.EventTypeWarning, ReportingController: "default-scheduler"}, true},
		{"Preempted", corev1.Event{Reason: "Preempted", Type: corev1.EventTypeNormal, ReportingController: "default-scheduler"}, true},
		{"kubelet's Pulled", corev1.Event{Reason: "Pulled", Type: corev1.EventTypeNormal, Source: corev1.EventSource{Component: "kubelet"}}, true},
		{"kubelet's BackOff", corev1.Event{Reason: "BackOff", Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "kubelet"}}, true},
		{"reason differing in case only", corev1.Event{Reason: "scheduled", Type: corev1.EventTypeNormal}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CopiesHostEvent(&tc.host); got != tc.want {
				t.Errorf("CopiesHostEvent(%s) = %v, want %v", tc.host.Reason, got, tc.want)
			}
		})
	}
	virtual := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}}
	if got, want := ScheduledMessage(virtual, "node-1"), "Successfully assigned apps/web to node-1"; got != want {
		t.Errorf("ScheduledMessage = %q, want %q", got, want)
	}
}
