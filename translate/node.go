package translate

import (
	"maps"
	"net"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeletEndpoint is where podbridge serves the kubelet API for virtual
// nodes: the virtual apiserver dials it for logs, exec, attach and
// port-forward. Address is an IP or a DNS name.
type KubeletEndpoint struct {
	Address string
	Port    int32
}

// VirtualNode is the node the virtual cluster sees for host node: its name,
// labels, capacity, conditions and node info, marked as podbridge's, and
// podbridge's kubelet endpoint as its only address. Taints and the spec
// stay behind: nothing schedules onto a virtual node, and the tenant must
// not learn more of the host than its pods need.
func VirtualNode(host *corev1.Node, kubelet KubeletEndpoint) *corev1.Node {
	labels := maps.Clone(host.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: host.Name, Labels: labels},
		Status:     virtualNodeStatus(host, kubelet),
	}
}

// virtualNodeStatus is the part of the host node's status a virtual node
// mirrors. Its addresses are never the host node's: the virtual apiserver
// would dial the host's kubelet with virtual pod names (and the tenant
// would learn host addresses). With no kubelet endpoint the node has no
// address, so the apiserver dials nothing.
func virtualNodeStatus(host *corev1.Node, kubelet KubeletEndpoint) corev1.NodeStatus {
	status := corev1.NodeStatus{
		Capacity:    host.Status.Capacity,
		Allocatable: host.Status.Allocatable,
		Phase:       host.Status.Phase,
		Conditions:  host.Status.Conditions,
		NodeInfo:    host.Status.NodeInfo,
	}
	if kubelet.Address == "" || kubelet.Port == 0 {
		return status
	}
	// One address, so whatever --kubelet-preferred-address-types the
	// virtual apiserver has, it picks this one.
	addressType := corev1.NodeHostName
	if net.ParseIP(kubelet.Address) != nil {
		addressType = corev1.NodeInternalIP
	}
	status.Addresses = []corev1.NodeAddress{{Type: addressType, Address: kubelet.Address}}
	status.DaemonEndpoints = corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: kubelet.Port}}
	return status
}
