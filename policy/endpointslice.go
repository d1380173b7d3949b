package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podbridge/podbridge/translate"
)

// FlagAllowedEndpointCIDRs is the platform flag of the ranges a tenant's
// EndpointSlices may name besides its own pod IPs (translate.Config.EndpointCIDRs).
const FlagAllowedEndpointCIDRs = "allowed-endpoint-cidrs"

// MaxHostSlicesPerService bounds the host EndpointSlices of one Service
// (each holds at most 1000 endpoints, which the apiserver enforces): the
// first slices by name are carried, the rest reported.
const MaxHostSlicesPerService = 16

// endpointSliceFields classifies every field of a tenant's EndpointSlice
// of a Service without a selector, by JSON path, as serviceSpecFields does
// for Services: a test fails when Kubernetes adds one this table does not
// name. Whatever the tenant writes, the host slice names only addresses
// the platform allows and nothing else a host component acts on.
var endpointSliceFields = map[string]fieldRule{
	"metadata":                         {Translated, "podbridge's name, labels and annotations: kubernetes.io/service-name is the host Service's, endpointslice.kubernetes.io/managed-by is podbridge.io (the host's controllers leave the slice alone), owned by the host Service; the tenant's labels and annotations are dropped"},
	"addressType":                      {Carried, "IPv4 and IPv6; an FQDN slice is not carried (the host would resolve its names) and is reported"},
	"endpoints":                        {Translated, "each endpoint with at least one allowed address; at most 16 slices per Service"},
	"endpoints.addresses":              {AllowListed, "this virtual cluster's running host pods' IPs and --allowed-endpoint-cidrs; never loopback, link-local (169.254.169.254), unspecified, multicast, IPv4-mapped IPv6 or a non-canonical form; the rest is left out and reported"},
	"endpoints.conditions":             {Carried, "as below"},
	"endpoints.conditions.ready":       {Carried, "which of the Service's own endpoints take traffic"},
	"endpoints.conditions.serving":     {Carried, "as ready"},
	"endpoints.conditions.terminating": {Carried, "as ready"},
	"endpoints.hostname":               {Dropped, "host DNS would publish it under the host Service; the virtual cluster's DNS reads the virtual slice"},
	"endpoints.targetRef":              {Translated, "the host pod that holds the address, if any; the tenant's reference is never carried"},
	"endpoints.deprecatedTopology":     {Dropped, "not writable through discovery/v1"},
	"endpoints.nodeName":               {Translated, "the node of the host pod that holds the address, if any"},
	"endpoints.zone":                   {Dropped, "topology is the host's to know"},
	"endpoints.hints":                  {Dropped, "names host zones and nodes; the host computes hints for its own controllers' slices"},
	"ports":                            {Carried, "how the Service's own endpoints are reached"},
	"ports.name":                       {Carried, ""},
	"ports.protocol":                   {Carried, ""},
	"ports.port":                       {Carried, ""},
	"ports.appProtocol":                {Carried, ""},
}

// EndpointPod is the host pod that holds an address a tenant's
// EndpointSlice may name.
type EndpointPod struct {
	Name     string
	UID      types.UID
	NodeName string
}

// TenantPodAddresses are the addresses of pod, a host pod, that its
// virtual cluster's EndpointSlices may name: its pod IPs while it is this
// virtual cluster's (podbridge's labels in the host namespace), not on the
// host network, and neither finished nor being deleted: from then on the
// host may give its address to another tenant's pod before the pod object
// goes.
func TenantPodAddresses(pod *corev1.Pod, cfg translate.Config) []netip.Addr {
	if pod.Namespace != cfg.HostNamespace || pod.Labels[translate.LabelManagedBy] != translate.ManagedByValue ||
		pod.Labels[translate.LabelVCluster] != cfg.VCluster || pod.Spec.HostNetwork || pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	var out []netip.Addr
	for _, ip := range PodIPs(pod) {
		if a, err := netip.ParseAddr(ip); err == nil && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// AddTenantPod adds to pods the addresses pod may lend (TenantPodAddresses).
func AddTenantPod(pods map[netip.Addr]EndpointPod, pod *corev1.Pod, cfg translate.Config) {
	for _, a := range TenantPodAddresses(pod, cfg) {
		pods[a] = EndpointPod{Name: pod.Name, UID: pod.UID, NodeName: pod.Spec.NodeName}
	}
}

// PodIPs are the IPs a pod's status names.
func PodIPs(pod *corev1.Pod) []string {
	var out []string
	for _, ip := range pod.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && pod.Status.PodIP != "" {
		out = append(out, pod.Status.PodIP)
	}
	return out
}

// EndpointSlices is the gate's decision for the EndpointSlices of one
// virtual Service: the host EndpointSlices that should exist (desired) and
// what was left out (refused, readable, each once). Only a Service without
// a selector whose claimed host Service has none either gets any; slices
// of a Service with a selector are the host endpointslice controller's
// business. pods are the host pods of this virtual cluster by address
// (TenantPodAddresses), at least for every address the slices name.
func (g Gate) EndpointSlices(virtual, host *corev1.Service, virtualSlices []*discoveryv1.EndpointSlice, pods map[netip.Addr]EndpointPod) (desired []*discoveryv1.EndpointSlice, refused []string) {
	if virtual == nil || virtual.DeletionTimestamp != nil || len(virtual.Spec.Selector) > 0 || !translate.NeedsHostService(virtual) ||
		!translate.ClaimsService(virtual, host) || host.DeletionTimestamp != nil || len(host.Spec.Selector) > 0 || host.UID == "" {
		return nil, nil
	}
	report := func(s string) {
		if !slices.Contains(refused, s) {
			refused = append(refused, s)
		}
	}
	ordered := slices.Clone(virtualSlices)
	slices.SortFunc(ordered, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range ordered {
		if service, ok := translate.TenantEndpointSlice(s); !ok || service != virtual.Name || s.Namespace != virtual.Namespace || s.DeletionTimestamp != nil {
			continue
		}
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			report(fmt.Sprintf("slice %s (addressType %s: the host would resolve its names)", s.Name, s.AddressType))
			continue
		}
		if len(desired) == MaxHostSlicesPerService {
			report(fmt.Sprintf("slice %s (over %d slices per Service)", s.Name, MaxHostSlicesPerService))
			continue
		}
		var endpoints []discoveryv1.Endpoint
		for _, e := range s.Endpoints {
			var addresses []string
			var pod *EndpointPod
			for _, raw := range e.Addresses {
				addr, why := g.endpointAddress(s.AddressType, raw, pods)
				if why != "" {
					report(fmt.Sprintf("%s (%s)", raw, why))
					continue
				}
				if p, ok := pods[addr]; ok && pod == nil {
					pod = &p
				}
				addresses = append(addresses, raw)
			}
			if len(addresses) == 0 {
				continue
			}
			c := e.Conditions
			endpoint := discoveryv1.Endpoint{
				Addresses:  addresses,
				Conditions: discoveryv1.EndpointConditions{Ready: copyPtr(c.Ready), Serving: copyPtr(c.Serving), Terminating: copyPtr(c.Terminating)},
			}
			if pod != nil {
				endpoint.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: g.Config.HostNamespace, Name: pod.Name, UID: pod.UID}
				if pod.NodeName != "" {
					endpoint.NodeName = &pod.NodeName
				}
			}
			endpoints = append(endpoints, endpoint)
		}
		desired = append(desired, translate.HostEndpointSlice(s, virtual.Name, host.Name, host.UID, g.Config, endpoints))
	}
	return desired, refused
}

// endpointAddress parses raw, an address of a slice of addressType, and
// says why it may not reach the host, or "" when it may: it must be in
// canonical form, of the slice's family, a unicast address off loopback
// and link-local (never the node's own services or a cloud's metadata
// server), and one of this virtual cluster's pods' or in an allowed range.
func (g Gate) endpointAddress(addressType discoveryv1.AddressType, raw string, pods map[netip.Addr]EndpointPod) (netip.Addr, string) {
	addr, err := netip.ParseAddr(raw)
	switch {
	case err != nil || addr.Zone() != "" || addr.String() != raw:
		return addr, "not an IP address in canonical form"
	case addr.Is4In6():
		return addr, "an IPv4-mapped IPv6 address"
	case addr.Is4() != (addressType == discoveryv1.AddressTypeIPv4):
		return addr, "not an " + string(addressType) + " address"
	case !addr.IsGlobalUnicast():
		return addr, "loopback, link-local, multicast or unspecified"
	}
	if _, ok := pods[addr]; ok {
		return addr, ""
	}
	for _, p := range g.Config.EndpointCIDRs {
		if p.Contains(addr) {
			return addr, ""
		}
	}
	return addr, "not a pod of this virtual cluster, not in --" + FlagAllowedEndpointCIDRs
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
