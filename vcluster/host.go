package vcluster

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What `podbridge create` learns from the host before it renders.

// HostServiceCIDR is the host's Service range, from its ServiceCIDR
// object kubernetes (the apiserver's --service-cluster-ip-range); the
// first IPv4 range when it has two.
func HostServiceCIDR(ctx context.Context, c client.Reader) (netip.Prefix, error) {
	var sc networkingv1.ServiceCIDR
	if err := c.Get(ctx, types.NamespacedName{Name: "kubernetes"}, &sc); err != nil {
		return netip.Prefix{}, fmt.Errorf("reading the host's ServiceCIDR kubernetes (give --service-cidr instead): %w", err)
	}
	for _, cidr := range sc.Spec.CIDRs {
		p, err := netip.ParsePrefix(cidr)
		if err == nil && p.Addr().Is4() {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("the host's ServiceCIDR kubernetes has no IPv4 range (%v): give --service-cidr", sc.Spec.CIDRs)
}

// HostAPIServerEndpoints are the addresses and port of the host's
// default/kubernetes EndpointSlices: where a pod's connection to the
// kubernetes Service goes.
func HostAPIServerEndpoints(ctx context.Context, c client.Reader) ([]netip.AddrPort, error) {
	var slices discoveryv1.EndpointSliceList
	if err := c.List(ctx, &slices, client.InNamespace(corev1.NamespaceDefault), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return nil, fmt.Errorf("reading the host apiserver's endpoints (default/kubernetes EndpointSlices): %w", err)
	}
	var out []netip.AddrPort
	for _, s := range slices.Items {
		for _, port := range s.Ports {
			if port.Port == nil {
				continue
			}
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					addr, err := netip.ParseAddr(a)
					if err != nil {
						continue
					}
					out = append(out, netip.AddrPortFrom(addr, uint16(*port.Port)))
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the host's default/kubernetes EndpointSlices name no address")
	}
	return out, nil
}

// FreeDNSAddress picks the tenant DNS Service's address: the first of the
// host range's static band (which the host allocates only when asked, or
// once the rest is used), from its tenth address on as kube-dns's is, that
// no host Service holds and no other virtual cluster's config names.
func FreeDNSAddress(ctx context.Context, c client.Reader, cidr netip.Prefix) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	var services corev1.ServiceList
	if err := c.List(ctx, &services); err != nil {
		return netip.Addr{}, fmt.Errorf("listing the host's Services for a free DNS address: %w", err)
	}
	for _, s := range services.Items {
		for _, ip := range s.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				used[a] = true
			}
		}
	}
	var configs corev1.ConfigMapList
	if err := c.List(ctx, &configs, client.MatchingLabels{LabelPartOf: PartOfValue}); err != nil {
		return netip.Addr{}, fmt.Errorf("listing the virtual clusters' configs: %w", err)
	}
	for _, cm := range configs.Items {
		if a, err := netip.ParseAddr(cm.Data["dns-service-ip"]); err == nil {
			used[a] = true
		}
	}
	band := staticBand(cidr)
	addr := cidr.Masked().Addr()
	for i := 0; i < band; i++ {
		addr = addr.Next()
		if i+1 < 10 || used[addr] {
			continue
		}
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("no free address in the first %d of the host's Service range %s: give --dns-ip", band, cidr)
}

// staticBand is the size of the band at the start of a Service range the
// host allocates from last (Kubernetes: a sixteenth of the range, at least
// 16 and at most 256 addresses).
func staticBand(cidr netip.Prefix) int {
	bits := cidr.Addr().BitLen() - cidr.Bits()
	if bits >= 31 {
		return 256
	}
	size := 1 << bits
	return min(max(16, size/16), 256)
}

// existingValues are the per-cluster values a previous create recorded, so
// a second create of the same cluster changes nothing.
func existingValues(ctx context.Context, c client.Reader, name, namespace string) (apiserverIP, dnsIP netip.Addr, err error) {
	var cm corev1.ConfigMap
	err = c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ConfigMapName(name)}, &cm)
	if apierrors.IsNotFound(err) {
		return netip.Addr{}, netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	apiserverIP, _ = netip.ParseAddr(cm.Data["apiserver-service-ip"])
	dnsIP, _ = netip.ParseAddr(cm.Data["dns-service-ip"])
	return apiserverIP, dnsIP, nil
}
