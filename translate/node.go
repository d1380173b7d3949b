package translate

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualNode is the node the virtual cluster sees for host node: its name,
// labels, capacity, conditions and addresses, marked as podbridge's. Taints
// and the spec stay behind: nothing schedules onto a virtual node, and the
// tenant must not learn more of the host than its pods need.
func VirtualNode(host *corev1.Node) *corev1.Node {
	labels := maps.Clone(host.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: host.Name, Labels: labels},
		Status:     VirtualNodeStatus(host),
	}
}

// VirtualNodeStatus is the part of the host node's status a virtual node mirrors.
func VirtualNodeStatus(host *corev1.Node) corev1.NodeStatus {
	return corev1.NodeStatus{
		Capacity:    host.Status.Capacity,
		Allocatable: host.Status.Allocatable,
		Phase:       host.Status.Phase,
		Conditions:  host.Status.Conditions,
		Addresses:   host.Status.Addresses,
		NodeInfo:    host.Status.NodeInfo,
	}
}
