package realnode

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ControlPlaneChain holds the one exception to "pods reach only the
// virtual apiserver on this machine": a virtual cluster's control-plane
// pod (manifests/virtualcluster, `podbridge create`) must reach the host
// apiserver, as it would in any host cluster. The chain accepts, from each
// such pod's own address only, the host apiserver's port on the bridge
// address; AllowControlPlanes keeps it in step with the host's pods. A
// tenant pod is never one: podbridge carries a tenant's labels under its
// own tenant keys, so no tenant host pod carries the labels below, and
// every tenant host pod carries app.kubernetes.io/managed-by=podbridge,
// which the selector excludes.
const ControlPlaneChain = "PODBRIDGE-RN-CP"

// controlPlaneComment marks the chain's rules.
const controlPlaneComment = "podbridge real node: a virtual cluster's control-plane pod reaches the host apiserver"

// ControlPlaneSelector selects the control-plane pods the exception is
// for.
func ControlPlaneSelector() labels.Selector {
	r1, _ := labels.NewRequirement("app.kubernetes.io/name", selection.Equals, []string{"podbridge-vcluster"})
	r2, _ := labels.NewRequirement("app.kubernetes.io/component", selection.Equals, []string{"control-plane"})
	r3, _ := labels.NewRequirement("app.kubernetes.io/managed-by", selection.NotIn, []string{"podbridge"})
	return labels.NewSelector().Add(*r1, *r2, *r3)
}

// AllowControlPlanes keeps ControlPlaneChain equal to one rule per
// control-plane pod on this node with an address: that address may reach
// port (the host apiserver's) on the bridge address. It checks the host's
// pods every interval until ctx ends, then empties the chain.
func (n *Node) AllowControlPlanes(ctx context.Context, host client.Reader, port int, interval time.Duration) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("the host apiserver's port %d: no control plane would reach it", port)
	}
	var current []string
	defer func() { _ = n.setControlPlanes(nil, port) }()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		want, err := n.controlPlaneIPs(ctx, host)
		if err == nil && !slices.Equal(want, current) {
			if err = n.setControlPlanes(want, port); err == nil {
				current = want
				n.opts.Log.Info("Control-plane pods may reach the host apiserver", "addresses", want, "port", port)
			}
		}
		if err != nil && ctx.Err() == nil {
			n.opts.Log.Error(err, "Keeping the control-plane pods' firewall exception")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// controlPlaneIPs are the sorted IPv4 addresses of the control-plane pods
// on this node.
func (n *Node) controlPlaneIPs(ctx context.Context, host client.Reader) ([]string, error) {
	var pods corev1.PodList
	if err := host.List(ctx, &pods, client.MatchingLabelsSelector{Selector: ControlPlaneSelector()}); err != nil {
		return nil, fmt.Errorf("listing control-plane pods: %w", err)
	}
	var ips []string
	for _, p := range pods.Items {
		ip := net.ParseIP(p.Status.PodIP)
		if p.Spec.NodeName != n.opts.NodeName || ip == nil || ip.To4() == nil || !n.subnet.Contains(ip) || p.Spec.HostNetwork {
			continue
		}
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	return slices.Compact(ips), nil
}

// setControlPlanes rewrites ControlPlaneChain to accept ips at port.
func (n *Node) setControlPlanes(ips []string, port int) error {
	if err := run("iptables", "-w", "-F", ControlPlaneChain); err != nil {
		return fmt.Errorf("emptying %s: %w", ControlPlaneChain, err)
	}
	for _, ip := range ips {
		if err := run("iptables", "-w", "-A", ControlPlaneChain, "-p", "tcp", "-s", ip+"/32", "-d", n.IP.String(), "--dport", strconv.Itoa(port),
			"-m", "comment", "--comment", controlPlaneComment, "-j", "ACCEPT"); err != nil {
			return fmt.Errorf("letting control-plane pod %s reach the host apiserver: %w", ip, err)
		}
	}
	return nil
}

// ControlPlaneRules lists ControlPlaneChain's rules (iptables -S), for
// tests.
func ControlPlaneRules() (string, error) {
	out, err := exec.Command("iptables", "-w", "-S", ControlPlaneChain).Output()
	return string(bytes.TrimSpace(out)), err
}
