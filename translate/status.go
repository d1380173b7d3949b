package translate

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualStatus is the status the virtual pod should carry given its host
// pod's status: the host's view of phase, conditions, IPs and containers,
// limited to containers the virtual spec has, while conditions the virtual
// cluster owns (readiness gates) and the virtual QoS class are kept.
func VirtualStatus(virtual, host *corev1.Pod) corev1.PodStatus {
	hs := &host.Status
	out := corev1.PodStatus{
		Phase:                      hs.Phase,
		Message:                    hs.Message,
		Reason:                     hs.Reason,
		HostIP:                     hs.HostIP,
		HostIPs:                    hs.HostIPs,
		PodIP:                      hs.PodIP,
		PodIPs:                     hs.PodIPs,
		StartTime:                  hs.StartTime,
		QOSClass:                   virtual.Status.QOSClass,
		Resize:                     hs.Resize, //nolint:staticcheck // still reported by older kubelets.
		Resources:                  hs.Resources,
		ObservedGeneration:         observedGeneration(hs.ObservedGeneration, virtual, host),
		ContainerStatuses:          containerStatuses(virtual.Spec.Containers, hs.ContainerStatuses),
		InitContainerStatuses:      containerStatuses(virtual.Spec.InitContainers, hs.InitContainerStatuses),
		EphemeralContainerStatuses: ephemeralStatuses(virtual.Spec.EphemeralContainers, hs.EphemeralContainerStatuses),
	}
	out.Conditions = conditions(virtual, host)
	return out
}

// ConditionHostSync is the virtual pod's condition, set False by the
// reflector while a change of the virtual pod cannot be carried to its host
// pod because the host-side gate refuses it (reason ReasonHostSyncRefused,
// message naming the fields), and removed once a later change passes.
const ConditionHostSync corev1.PodConditionType = Prefix + "HostSync"

// ReasonHostSyncRefused is the reason of a False ConditionHostSync.
const ReasonHostSyncRefused = "HostPolicyRefused"

// ReasonHostSpecDiffers is the reason of a False ConditionHostSync when the
// stored virtual pod differs from what its host pod, already started, was
// made from (see AnnotationAdmittedSpec): the difference cannot be carried.
const ReasonHostSpecDiffers = "HostSpecDiffers"

// conditions takes the host's conditions and keeps the virtual pod's own
// readiness-gate conditions, which only the virtual cluster sets, its
// ConditionHostSync, and its
// own PodScheduled condition once it is bound (see scheduledCondition).
func conditions(virtual, host *corev1.Pod) []corev1.PodCondition {
	virtualOwned := map[corev1.PodConditionType]bool{}
	for _, g := range virtual.Spec.ReadinessGates {
		virtualOwned[g.ConditionType] = true
	}
	var out []corev1.PodCondition
	for _, c := range host.Status.Conditions {
		switch {
		case virtualOwned[c.Type]:
		case c.Type == corev1.PodScheduled:
			if scheduled, ok := scheduledCondition(virtual, host, c); ok {
				out = append(out, scheduled)
			}
		default:
			c.ObservedGeneration = observedGeneration(c.ObservedGeneration, virtual, host)
			out = append(out, c)
		}
	}
	for _, c := range virtual.Status.Conditions {
		if virtualOwned[c.Type] || c.Type == ConditionHostSync {
			out = append(out, c)
		}
	}
	return gateReadiness(virtual, out)
}

// scheduledCondition is the virtual pod's PodScheduled condition given the
// host's, or false when it should have none. The binding to the virtual
// node sets the virtual pod's own PodScheduled, which is kept: its time is
// the virtual cluster's, and rewriting it would cost a write per pod. A host
// pod gated while the virtual pod has no gates of its own waits for
// podbridge (GateVirtualPod), not for the tenant, so that SchedulingGated
// condition is not the virtual pod's (the host scheduler may also still
// show it a moment after the gate went). Any other host view
// (unschedulable, gated by the tenant's own gates) is copied.
func scheduledCondition(virtual, host *corev1.Pod, c corev1.PodCondition) (corev1.PodCondition, bool) {
	if virtual.Spec.NodeName != "" {
		for _, own := range virtual.Status.Conditions {
			if own.Type == corev1.PodScheduled && own.Status == corev1.ConditionTrue {
				return own, true
			}
		}
	}
	if c.Reason == corev1.PodReasonSchedulingGated && len(virtual.Spec.SchedulingGates) == 0 {
		return c, false
	}
	c.Message = virtualClaimNames(virtual, host, c.Message)
	c.ObservedGeneration = observedGeneration(c.ObservedGeneration, virtual, host)
	return c, true
}

// virtualClaimNames rewrites the host claim names a host scheduler's
// message quotes (`persistentvolumeclaim "data-x-shop-x-vc" not found`)
// as the virtual pod's claims, so the tenant reads its own names.
func virtualClaimNames(virtual, host *corev1.Pod, message string) string {
	if message == "" {
		return message
	}
	for _, v := range virtual.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		for _, h := range host.Spec.Volumes {
			if h.Name == v.Name && h.PersistentVolumeClaim != nil {
				message = strings.ReplaceAll(message, strconv.Quote(h.PersistentVolumeClaim.ClaimName), strconv.Quote(v.PersistentVolumeClaim.ClaimName))
			}
		}
	}
	return message
}

// observedGeneration maps a generation the host reports as observed (by
// its kubelet or scheduler) to the virtual pod's: the virtual generation
// once the host has observed the host pod's latest spec (the reflector
// carries virtual spec changes down), the one the virtual pod reported
// before while it has not, and none when the host reports none (kubelets
// before pod generation tracking, kwok).
func observedGeneration(hostObserved int64, virtual, host *corev1.Pod) int64 {
	switch {
	case hostObserved == 0:
		return 0
	case hostObserved >= host.Generation:
		return virtual.Generation
	default:
		return virtual.Status.ObservedGeneration
	}
}

// gateReadiness applies the virtual pod's readiness gates to Ready, as the
// kubelet would: the host pod has no gates (nothing on the host sets them),
// so its Ready only says that the containers are ready.
func gateReadiness(virtual *corev1.Pod, conditions []corev1.PodCondition) []corev1.PodCondition {
	unmet := ""
	for _, g := range virtual.Spec.ReadinessGates {
		met := false
		for _, c := range conditions {
			met = met || (c.Type == g.ConditionType && c.Status == corev1.ConditionTrue)
		}
		if !met {
			unmet = string(g.ConditionType)
			break
		}
	}
	if unmet == "" {
		return conditions
	}
	for i, c := range conditions {
		if c.Type != corev1.PodReady || c.Status != corev1.ConditionTrue {
			continue
		}
		c.Status, c.Reason = corev1.ConditionFalse, "ReadinessGatesNotReady"
		c.Message = fmt.Sprintf("corresponding condition of pod readiness gate %q is not True", unmet)
		for _, prev := range virtual.Status.Conditions {
			if prev.Type == corev1.PodReady && prev.Status == corev1.ConditionFalse {
				c.LastTransitionTime = prev.LastTransitionTime
			}
		}
		conditions[i] = c
	}
	return conditions
}

func containerStatuses(containers []corev1.Container, host []corev1.ContainerStatus) []corev1.ContainerStatus {
	names := make(map[string]bool, len(containers))
	for _, c := range containers {
		names[c.Name] = true
	}
	return filterStatuses(names, host)
}

func ephemeralStatuses(containers []corev1.EphemeralContainer, host []corev1.ContainerStatus) []corev1.ContainerStatus {
	names := make(map[string]bool, len(containers))
	for _, c := range containers {
		names[c.Name] = true
	}
	return filterStatuses(names, host)
}

func filterStatuses(names map[string]bool, host []corev1.ContainerStatus) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, s := range host {
		if names[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// Reasons a virtual pod's final status gives when its host pod is gone.
const (
	// ReasonHostPodDeleted: the host pod was deleted on the host.
	ReasonHostPodDeleted = "HostPodDeleted"
	// ReasonEvicted: the host evicted the host pod (the eviction API, or
	// the kubelet under node pressure).
	ReasonEvicted = "Evicted"
	// ReasonPreempted: the host scheduler preempted the host pod.
	ReasonPreempted = "Preempted"
)

// evictionByEvictionAPI is the DisruptionTarget reason the apiserver sets
// when the eviction API deletes a pod; client libraries have no constant.
const evictionByEvictionAPI = "EvictionByEvictionAPI"

// HostGoneStatus is the final status of a virtual pod whose host pod was
// deleted on the host: Failed, not ready, with a reason that tells an
// eviction or a preemption from a plain deletion. last is the host pod as
// last seen, or nil when unknown; then the status already copied to the
// virtual pod speaks for it. now stamps the conditions that change.
func HostGoneStatus(virtual, last *corev1.Pod, now metav1.Time) corev1.PodStatus {
	status := *virtual.Status.DeepCopy()
	if last != nil {
		status = VirtualStatus(virtual, last)
	}
	status.Phase = corev1.PodFailed
	reason, message := ReasonHostPodDeleted, "The pod's host pod was deleted in the host cluster."
	for _, c := range status.Conditions {
		if c.Type != corev1.DisruptionTarget || c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Reason {
		case evictionByEvictionAPI, corev1.PodReasonTerminationByKubelet:
			reason, message = ReasonEvicted, "The host cluster evicted the pod's host pod: "+c.Message
		case corev1.PodReasonPreemptionByScheduler:
			reason, message = ReasonPreempted, "The host scheduler preempted the pod's host pod: "+c.Message
		}
	}
	if status.Reason == ReasonEvicted && reason == ReasonHostPodDeleted {
		reason, message = ReasonEvicted, "The host cluster evicted the pod's host pod: "+status.Message
	}
	status.Reason, status.Message = reason, message
	for i, c := range status.Conditions {
		if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != corev1.ConditionFalse {
			status.Conditions[i].Status = corev1.ConditionFalse
			status.Conditions[i].Reason = reason
			status.Conditions[i].LastTransitionTime = now
		}
	}
	for i := range status.ContainerStatuses {
		status.ContainerStatuses[i].Ready = false
	}
	return status
}

// StatusChangedAt is when host's status last changed as far as the object
// tells: the latest write to its status subresource recorded in
// managedFields (by the kubelet, the scheduler or the eviction API), else
// its newest condition transition, else its creation. Apiserver timestamps
// have second resolution.
func StatusChangedAt(host *corev1.Pod) time.Time {
	var latest time.Time
	for _, e := range host.ManagedFields {
		if e.Subresource == "status" && e.Time != nil && e.Time.After(latest) {
			latest = e.Time.Time
		}
	}
	if !latest.IsZero() {
		return latest
	}
	latest = host.CreationTimestamp.Time
	for _, c := range host.Status.Conditions {
		if c.LastTransitionTime.After(latest) {
			latest = c.LastTransitionTime.Time
		}
	}
	return latest
}
