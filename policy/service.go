package policy

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/translate"
)

// FlagAllowedServiceTypes is the platform flag that allows NodePort and
// LoadBalancer Services (translate.Config.ServiceTypes).
const FlagAllowedServiceTypes = "allowed-service-types"

// serviceSpecFields classifies every field of corev1.ServiceSpec by its
// JSON name, as podSpecFields does for pods: a test fails when Kubernetes
// adds a field this table does not name. Nothing is dropped silently: a
// field is carried, translated (the host gets podbridge's value and the
// virtual Service the host's), allow-listed, or refused naming it.
// Metadata: labels reach the host under tenant keys (translate.TenantKey);
// annotations are dropped (host cloud and load-balancer controllers act on
// Service annotations), and podbridge's own keys are refused.
var serviceSpecFields = map[string]fieldRule{
	"ports":                         {Translated, "carried without nodePort numbers: the host allocates them and the virtual Service gets the host's; a tenant nodePort other than the host's is refused"},
	"selector":                      {Translated, "tenant keys as on host pods (translate.TenantKey) plus podbridge.io/vcluster, podbridge.io/namespace and app.kubernetes.io/managed-by: only this virtual cluster's pods of this namespace; none stays none"},
	"clusterIP":                     {Translated, "the host allocates it and the virtual Service gets the same address; None (headless) is carried; a tenant address other than the host's is refused (it would reserve a host address of the tenant's choosing); the DNS Service (--virtual-dns-service) gets the platform's --virtual-dns-nameserver"},
	"clusterIPs":                    {Translated, "as clusterIP"},
	"type":                          {AllowListed, "ClusterIP and ExternalName always (ExternalName makes no host object); NodePort and LoadBalancer only with --allowed-service-types"},
	"externalIPs":                   {Refused, "a tenant would receive host traffic for addresses it does not own (CVE-2020-8554)"},
	"sessionAffinity":               {Carried, ""},
	"loadBalancerIP":                {Refused, "names an address of the host's load balancer pool, maybe one reserved for another tenant"},
	"loadBalancerSourceRanges":      {Carried, "narrows who reaches the tenant's own load balancer"},
	"externalName":                  {Translated, "answered by the virtual cluster's DNS; nothing on the host"},
	"externalTrafficPolicy":         {Carried, "routes the Service's own traffic only"},
	"healthCheckNodePort":           {Translated, "the host allocates it and the virtual Service gets the host's; a tenant port other than the host's is refused"},
	"publishNotReadyAddresses":      {Carried, ""},
	"sessionAffinityConfig":         {Carried, ""},
	"ipFamilies":                    {Translated, "carried as a request; the virtual Service gets what the host allocated"},
	"ipFamilyPolicy":                {Translated, "as ipFamilies"},
	"allocateLoadBalancerNodePorts": {Carried, "only narrows what the host allocates"},
	"loadBalancerClass":             {Refused, "picks which host controller implements the load balancer; the platform's default class only"},
	"internalTrafficPolicy":         {Carried, "routes the Service's own traffic only"},
	"trafficDistribution":           {Carried, "a routing preference among the Service's own endpoints"},
}

// CheckService returns why the Service virtual (the object admitted or
// stored in the virtual cluster) may not be carried to the host; nil when
// it may. current is its host Service as the host holds it now (nil when
// there is none): the addresses and ports the host allocated may come
// back from the virtual Service, no other. host is the host Service a
// write would leave (nil for none): its selector must be scoped to this
// virtual cluster and namespace whatever translation did. Errors name the
// virtual field and, for allow-lists, the platform flag.
func (g Gate) CheckService(virtual, current, host *corev1.Service) field.ErrorList {
	spec := field.NewPath("spec")
	v := &virtual.Spec
	var errs field.ErrorList
	switch v.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeExternalName:
	case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		if !slices.Contains(g.Config.ServiceTypes, v.Type) {
			errs = append(errs, field.Forbidden(spec.Child("type"), fmt.Sprintf("%s Services are not allowed in this virtual cluster (platform flag --%s, allowed: %v)", v.Type, FlagAllowedServiceTypes, g.Config.ServiceTypes)))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), v.Type, []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}))
	}
	for i, ip := range v.ExternalIPs {
		errs = append(errs, field.Forbidden(spec.Child("externalIPs").Index(i), fmt.Sprintf("%s: a Service may not claim external addresses, it would receive host traffic for addresses the tenant does not own (CVE-2020-8554)", ip)))
	}
	if v.LoadBalancerIP != "" {
		errs = append(errs, field.Forbidden(spec.Child("loadBalancerIP"), "the host's load balancer chooses the address"))
	}
	if v.LoadBalancerClass != nil {
		errs = append(errs, field.Forbidden(spec.Child("loadBalancerClass"), "the platform's default load balancer class only"))
	}
	if v.Type == corev1.ServiceTypeExternalName {
		return errs
	}
	var allocated translate.ServiceAllocation
	if current != nil {
		allocated = translate.HostAllocated(current)
	}
	pinned := translate.PinnedClusterIP(virtual, g.Config)
	if ip := v.ClusterIP; ip != "" && ip != corev1.ClusterIPNone && ip != allocated.ClusterIP && ip != pinned {
		errs = append(errs, field.Forbidden(spec.Child("clusterIP"), fmt.Sprintf("%s: the host allocates ClusterIPs and the Service gets the host's address; leave it empty", ip)))
	}
	for i, ip := range v.ClusterIPs {
		if ip != corev1.ClusterIPNone && ip != "" && !slices.Contains(allocated.ClusterIPs, ip) && ip != pinned {
			errs = append(errs, field.Forbidden(spec.Child("clusterIPs").Index(i), fmt.Sprintf("%s: the host allocates ClusterIPs and the Service gets the host's addresses; leave it empty", ip)))
		}
	}
	for i, p := range v.Ports {
		if p.NodePort != 0 && !hostHasNodePort(current, p) {
			errs = append(errs, field.Forbidden(spec.Child("ports").Index(i).Child("nodePort"), fmt.Sprintf("%d: the host allocates node ports and the Service gets the host's; leave it empty", p.NodePort)))
		}
	}
	if n := v.HealthCheckNodePort; n != 0 && n != allocated.HealthCheckNodePort {
		errs = append(errs, field.Forbidden(spec.Child("healthCheckNodePort"), fmt.Sprintf("%d: the host allocates it and the Service gets the host's; leave it empty", n)))
	}
	if host != nil {
		errs = append(errs, g.hostServiceRules(spec, virtual, host)...)
	}
	return errs
}

// hostHasNodePort reports whether the host Service already has port p's
// node port for the same port and protocol.
func hostHasNodePort(current *corev1.Service, p corev1.ServicePort) bool {
	if current == nil {
		return false
	}
	for _, c := range current.Spec.Ports {
		if c.Port == p.Port && (c.Protocol == p.Protocol || p.Protocol == "") && c.NodePort == p.NodePort {
			return true
		}
	}
	return false
}

// hostServiceRules are podbridge's own rules for a host Service, checked
// on what would be written: a selector scoped to this virtual cluster and
// the virtual Service's namespace, or none for a Service without one; no
// external addresses; no tenant annotation.
func (g Gate) hostServiceRules(spec *field.Path, virtual, host *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	if len(host.Spec.ExternalIPs) > 0 || host.Spec.LoadBalancerIP != "" || host.Spec.LoadBalancerClass != nil {
		errs = append(errs, field.Forbidden(spec, "the host Service would claim external addresses or a load balancer class"))
	}
	if ip := host.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone && ip != translate.PinnedClusterIP(virtual, g.Config) {
		errs = append(errs, field.Forbidden(spec.Child("clusterIP"), fmt.Sprintf("%s: the host Service would reserve an address the host did not choose", ip)))
	}
	sel := host.Spec.Selector
	if len(virtual.Spec.Selector) == 0 {
		if len(sel) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("selector"), "a Service without a selector must have none on the host"))
		}
	} else if sel[translate.LabelVCluster] != g.Config.VCluster || sel[translate.LabelNamespace] != virtual.Namespace || sel[translate.LabelManagedBy] != translate.ManagedByValue {
		errs = append(errs, field.Forbidden(spec.Child("selector"), "the host selector is not scoped to this virtual cluster and namespace"))
	}
	for _, k := range slices.Sorted(maps.Keys(host.Annotations)) {
		if !translate.IsReserved(k) {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "annotations").Key(k), "tenant annotations do not reach host Services"))
		}
	}
	return errs
}
