package translate

import (
	"crypto/sha256"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonScheduled is the reason of the event saying where a pod was
// placed: kube-scheduler's on the host pod, podbridge's on the virtual pod.
const ReasonScheduled = "Scheduled"

// ScheduledMessage is the message of podbridge's Scheduled event on a
// virtual pod bound to node, worded as kube-scheduler words its own.
func ScheduledMessage(virtual *corev1.Pod, node string) string {
	return "Successfully assigned " + virtual.Namespace + "/" + virtual.Name + " to " + node
}

// CopiesHostEvent reports whether a host event about a host pod (or host
// claim) is copied to its virtual pod (claim). The host scheduler's Scheduled is not: the virtual
// pod has podbridge's own, recorded when it binds the virtual pod to the
// virtual node. That one says what the tenant's pod shows (spec.nodeName,
// PodScheduled, at the binding's time), and is there when event copying
// is off or a burst is paced; a copy of the host's would say the same a
// second time.
func CopiesHostEvent(host *corev1.Event) bool {
	return host.Reason != ReasonScheduled
}

// VirtualEvent is the event the virtual pod shows for an event the host
// recorded about its host pod: the same reason, type, message, source and
// counts, about the virtual pod (name, namespace, UID), with the host pod's
// name and namespace in the message replaced by the virtual ones. Its name
// is derived from the host event's, so the host's repeats (its count and
// series) update one virtual event instead of adding new ones.
func VirtualEvent(host *corev1.Event, virtual *corev1.Pod, hostPod *corev1.Pod) *corev1.Event {
	return virtualEvent(host, corev1.ObjectReference{
		APIVersion: "v1", Kind: "Pod",
		Namespace: virtual.Namespace, Name: virtual.Name, UID: virtual.UID,
		FieldPath: host.InvolvedObject.FieldPath,
	}, hostPod.Namespace, hostPod.Name)
}

// VirtualClaimEvent is the event the virtual claim shows for an event the
// host recorded about its host claim (the host's binder and provisioner:
// WaitForFirstConsumer, WaitForPodScheduled, Provisioning,
// ProvisioningSucceeded, ProvisioningFailed, ExternalProvisioning...), as
// VirtualEvent makes a pod's: about the virtual claim, with the host
// claim's name and namespace in the message replaced by the virtual ones.
// Other host names in a message (the host pods a WaitForPodScheduled
// names) stay as the host wrote them: they are this tenant's host pods,
// whose names its virtual pods carry (AnnotationHostName).
func VirtualClaimEvent(host *corev1.Event, virtual, hostClaim *corev1.PersistentVolumeClaim) *corev1.Event {
	return virtualEvent(host, corev1.ObjectReference{
		APIVersion: "v1", Kind: "PersistentVolumeClaim",
		Namespace: virtual.Namespace, Name: virtual.Name, UID: virtual.UID,
	}, hostClaim.Namespace, hostClaim.Name)
}

// virtualEvent is host's event about the host object hostNamespace/hostName
// as the virtual object about shows it.
func virtualEvent(host *corev1.Event, about corev1.ObjectReference, hostNamespace, hostName string) *corev1.Event {
	first, last, count := EventTimes(host)
	message := strings.NewReplacer(
		hostNamespace+"/"+hostName, about.Namespace+"/"+about.Name,
		hostName, about.Name,
	).Replace(host.Message)
	component := host.Source.Component
	if component == "" {
		component = host.ReportingController
	}
	return &corev1.Event{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      VirtualEventName(about.Name, host.Namespace, host.Name),
			Namespace: about.Namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedByValue},
		},
		InvolvedObject: about,
		Reason:         host.Reason,
		Message:        message,
		Type:           host.Type,
		Source:         corev1.EventSource{Component: component, Host: host.Source.Host},
		FirstTimestamp: first,
		LastTimestamp:  last,
		Count:          count,
	}
}

// VirtualEventName names the virtual event of host event namespace/name
// about the virtual object (pod, claim) named pod: its name (cut to leave
// room) and a hash.
func VirtualEventName(pod, namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	hash := hashEncoding.EncodeToString(sum[:])[:16]
	const maxName = 253
	if len(pod) > maxName-len(hash)-1 {
		pod = strings.TrimRight(pod[:maxName-len(hash)-1], "-.")
	}
	return pod + "." + hash
}

// EventTimes reads first and last occurrence and count from either event
// API's fields: core/v1 (firstTimestamp, lastTimestamp, count) or
// events.k8s.io as the core view shows it (eventTime, series).
func EventTimes(e *corev1.Event) (first, last metav1.Time, count int32) {
	first, last, count = e.FirstTimestamp, e.LastTimestamp, e.Count
	if first.IsZero() {
		first = metav1.Time{Time: e.EventTime.Time}
	}
	if e.Series != nil {
		if e.Series.Count > count {
			count = e.Series.Count
		}
		if t := e.Series.LastObservedTime.Time; t.After(last.Time) {
			last = metav1.Time{Time: t}
		}
	}
	if last.IsZero() {
		last = first
	}
	if first.IsZero() {
		first = metav1.Time{Time: e.CreationTimestamp.Time}
		last = first
	}
	if count < 1 {
		count = 1
	}
	// Seconds, as the legacy fields hold them.
	first = metav1.Time{Time: first.Truncate(time.Second)}
	last = metav1.Time{Time: last.Truncate(time.Second)}
	return first, last, count
}
