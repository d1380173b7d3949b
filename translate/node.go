package translate

import (
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// KubeletEndpoint is where podbridge serves the kubelet API for virtual
// nodes: the virtual apiserver dials it for logs, exec, attach and
// port-forward. Address is an IP or a DNS name.
type KubeletEndpoint struct {
	Address string
	Port    int32
}

// VirtualNode is the node the virtual cluster sees for host node: its name,
// labels, capacity, conditions, node info and cordon, marked as
// podbridge's, podbridge's kubelet endpoint as its only address, and the
// host node's taints but those the platform's enforced tolerations cover:
// every host pod carries those, so to the tenant they keep nothing off.
// The rest of the spec stays behind: the tenant must not learn more of the
// host than its pods need.
func VirtualNode(host *corev1.Node, kubelet KubeletEndpoint, enforced []corev1.Toleration) *corev1.Node {
	labels := maps.Clone(host.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	var taints []corev1.Taint
	for _, t := range host.Spec.Taints {
		if !tolerated(enforced, &t) {
			taints = append(taints, t)
		}
	}
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: host.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints, Unschedulable: host.Spec.Unschedulable},
		Status:     virtualNodeStatus(host, kubelet),
	}
}

// TenantNode reports whether the platform lets this virtual cluster's pods
// onto host node: it matches the enforced NodeSelector, and every taint
// that keeps pods off (NoSchedule, NoExecute) is a condition the node
// reports of itself (node.kubernetes.io/...), tolerated by the enforced
// Tolerations, or of a key tenants may tolerate (TolerationKeys). These
// are the virtual cluster's nodes from the start; any other host node is
// mirrored only while this virtual cluster has host pods on it, so a
// tenant learns nothing of the platform's own nodes.
func TenantNode(host *corev1.Node, cfg Config) bool {
	if !labels.SelectorFromSet(cfg.NodeSelector).Matches(labels.Set(host.Labels)) {
		return false
	}
	for _, t := range host.Spec.Taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule || strings.HasPrefix(t.Key, nodeConditionTaintPrefix) ||
			slices.Contains(cfg.TolerationKeys, t.Key) || tolerated(cfg.Tolerations, &t) {
			continue
		}
		return false
	}
	return true
}

// nodeConditionTaintPrefix starts the keys of the taints Kubernetes sets
// from a node's conditions and cordon (not-ready, unreachable,
// unschedulable, memory-pressure, ...): a node's state, not a platform's
// placement rule.
const nodeConditionTaintPrefix = "node.kubernetes.io/"

// tolerated reports whether any of tolerations tolerates t. Numeric
// comparisons (Lt, Gt) count as not tolerating: the host may not have them
// on, and a taint wrongly taken as untolerated only hides a node or shows a
// taint.
func tolerated(tolerations []corev1.Toleration, t *corev1.Taint) bool {
	return slices.ContainsFunc(tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(logr.Discard(), t, false) })
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
