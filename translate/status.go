package translate

import (
	corev1 "k8s.io/api/core/v1"
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
		ObservedGeneration:         virtual.Generation,
		ContainerStatuses:          containerStatuses(virtual.Spec.Containers, hs.ContainerStatuses),
		InitContainerStatuses:      containerStatuses(virtual.Spec.InitContainers, hs.InitContainerStatuses),
		EphemeralContainerStatuses: ephemeralStatuses(virtual.Spec.EphemeralContainers, hs.EphemeralContainerStatuses),
	}
	out.Conditions = conditions(virtual, host)
	return out
}

// conditions takes the host's conditions and keeps the virtual pod's own
// readiness-gate conditions, which only the virtual cluster sets.
func conditions(virtual, host *corev1.Pod) []corev1.PodCondition {
	gates := map[corev1.PodConditionType]bool{}
	for _, g := range virtual.Spec.ReadinessGates {
		gates[g.ConditionType] = true
	}
	var out []corev1.PodCondition
	for _, c := range host.Status.Conditions {
		if !gates[c.Type] {
			c.ObservedGeneration = virtual.Generation
			out = append(out, c)
		}
	}
	for _, c := range virtual.Status.Conditions {
		if gates[c.Type] {
			out = append(out, c)
		}
	}
	return out
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
