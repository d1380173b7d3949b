package translate

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Paths of the webhook server for Services, each registered as its own
// webhook as the pod paths are (see WebhookPath).
const (
	// WebhookPathService serves Service creates: the host Service is made
	// here and its ClusterIPs pinned on the virtual Service.
	WebhookPathService = "/mutate-v1-service"
	// WebhookPathServiceUpdate serves Service updates: the change is
	// carried to the host Service before the virtual one is stored.
	WebhookPathServiceUpdate = "/mutate-v1-service-update"
)

// AnnotationSelectorScheme records on a host Service the version of the
// scheme its selector was translated with (tenant keys plus the scoping
// keys): a later scheme can then tell the Services it must rewrite from
// those it wrote, rather than breaking them silently.
const AnnotationSelectorScheme = Prefix + "selector-scheme"

// SelectorScheme is the current selector scheme: TenantKey of every
// tenant key, plus LabelManagedBy, LabelVCluster and LabelNamespace.
const SelectorScheme = "1"

// HostServiceName is the name of the host Service of virtual Service name
// in namespace of virtual cluster vcluster. It is HostName: a virtual
// Service's name is a DNS-1035 label (it starts with a letter), and the
// host name starts with it, holds only lower-case letters, digits and
// dashes, and ends with a letter or digit, so it is a DNS-1035 label too.
// A host pod and a host Service of the same virtual name share it; they
// are different kinds.
func HostServiceName(name, namespace, vcluster string) string {
	return HostName(name, namespace, vcluster)
}

// NeedsHostService reports whether a virtual Service has a host Service:
// every type but ExternalName, which the tenant's DNS answers alone.
func NeedsHostService(virtual *corev1.Service) bool {
	return virtual.Spec.Type != corev1.ServiceTypeExternalName
}

// HostService translates a named virtual Service into its host Service, or
// returns nil when it has none (ExternalName). syncID identifies the pair.
//
// What the host gets (policy.serviceSpecFields classifies every field; the
// gate refuses what must not reach the host, this function never widens):
//   - labels under their tenant keys, plus podbridge's own; no tenant
//     annotation (host cloud controllers act on Service annotations);
//   - a selector of the tenant's keys translated as pod labels are, plus
//     the keys that scope it to this virtual cluster's host pods in this
//     virtual namespace: it can select no other tenant's pod and none of
//     podbridge's own. A Service without a selector gets none;
//   - the ports without nodePort numbers, no clusterIP, clusterIPs or
//     healthCheckNodePort (the host allocates them; HostAllocated carries
//     them back) but the DNS Service's address (PinnedClusterIP), no
//     externalIPs, loadBalancerIP or loadBalancerClass;
//   - the rest of the spec as written.
func HostService(virtual *corev1.Service, cfg Config, syncID string) (*corev1.Service, field.ErrorList) {
	errs := validateServiceMetadata(virtual)
	if len(errs) > 0 {
		return nil, errs
	}
	if !NeedsHostService(virtual) {
		return nil, nil
	}
	v := &virtual.Spec
	spec := corev1.ServiceSpec{
		Type:                          v.Type,
		Selector:                      ServiceSelector(v.Selector, virtual.Namespace, cfg),
		SessionAffinity:               v.SessionAffinity,
		SessionAffinityConfig:         v.SessionAffinityConfig.DeepCopy(),
		LoadBalancerSourceRanges:      slices.Clone(v.LoadBalancerSourceRanges),
		ExternalTrafficPolicy:         v.ExternalTrafficPolicy,
		PublishNotReadyAddresses:      v.PublishNotReadyAddresses,
		IPFamilies:                    slices.Clone(v.IPFamilies),
		IPFamilyPolicy:                copyPtr(v.IPFamilyPolicy),
		AllocateLoadBalancerNodePorts: copyPtr(v.AllocateLoadBalancerNodePorts),
		InternalTrafficPolicy:         copyPtr(v.InternalTrafficPolicy),
		TrafficDistribution:           copyPtr(v.TrafficDistribution),
	}
	// Fields of external types only, as the apiserver drops them when a
	// type change leaves them behind (after admission, so the request may
	// still hold them).
	external := v.Type == corev1.ServiceTypeNodePort || v.Type == corev1.ServiceTypeLoadBalancer
	if !external {
		spec.ExternalTrafficPolicy = ""
	}
	if v.Type != corev1.ServiceTypeLoadBalancer {
		spec.AllocateLoadBalancerNodePorts, spec.LoadBalancerSourceRanges = nil, nil
	}
	if IsHeadless(virtual) {
		spec.ClusterIP, spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	} else if ip := PinnedClusterIP(virtual, cfg); ip != "" {
		spec.ClusterIP, spec.ClusterIPs = ip, []string{ip}
	}
	for _, p := range v.Ports {
		p.NodePort = 0
		spec.Ports = append(spec.Ports, p)
	}
	meta := pairedHostMeta(virtual, HostServiceName(virtual.Name, virtual.Namespace, cfg.VCluster), cfg, syncID)
	meta.Annotations[AnnotationSelectorScheme] = SelectorScheme
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec:       spec,
	}, nil
}

// ServiceSelector is the host selector of a tenant selector in virtual
// namespace: nil for none (a selector-less Service), otherwise every
// tenant key under TenantKey plus the scoping keys, which no tenant key
// can override (TenantKey never returns one of them).
func ServiceSelector(selector map[string]string, namespace string, cfg Config) map[string]string {
	if len(selector) == 0 {
		return nil
	}
	host := tenantLabels(selector)
	host[LabelManagedBy] = ManagedByValue
	host[LabelVCluster] = cfg.VCluster
	host[LabelNamespace] = namespace
	return host
}

// PinnedClusterIP is the address the platform fixed for virtual's host
// Service, or "" when the host allocates one: the DNS Service
// (Config.DNSService) gets Config.DNSNameserver, the address host pods
// resolve through, unless it is headless or ExternalName.
func PinnedClusterIP(virtual *corev1.Service, cfg Config) string {
	if cfg.DNSNameserver == "" || virtual.Namespace != cfg.DNSService.Namespace || virtual.Name != cfg.DNSService.Name ||
		IsHeadless(virtual) || !NeedsHostService(virtual) {
		return ""
	}
	return cfg.DNSNameserver
}

// IsKubernetesService reports whether s is the virtual apiserver's own
// Service, default/kubernetes, which has no host Service: its address is
// Config.KubernetesServiceIP, a host Service the platform makes.
func IsKubernetesService(s *corev1.Service) bool {
	return s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes"
}

// IsHeadless reports whether a Service asks for no ClusterIP.
func IsHeadless(s *corev1.Service) bool {
	return s.Spec.ClusterIP == corev1.ClusterIPNone || (len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIPs[0] == corev1.ClusterIPNone)
}

// ServiceAllocation is what the host allocated for a host Service and
// the virtual Service must hold too, so one address or port means the same
// Service in both clusters.
type ServiceAllocation struct {
	ClusterIP      string
	ClusterIPs     []string
	IPFamilies     []corev1.IPFamily
	IPFamilyPolicy *corev1.IPFamilyPolicy
	// NodePorts are the host's node ports by index of the virtual ports
	// (0 where none was allocated).
	NodePorts           []int32
	HealthCheckNodePort int32
}

// HostAllocated reads the allocation of host, whose ports are those of
// virtual in the same order (HostService keeps it).
func HostAllocated(host *corev1.Service) ServiceAllocation {
	a := ServiceAllocation{
		ClusterIP:           host.Spec.ClusterIP,
		ClusterIPs:          slices.Clone(host.Spec.ClusterIPs),
		IPFamilies:          slices.Clone(host.Spec.IPFamilies),
		IPFamilyPolicy:      copyPtr(host.Spec.IPFamilyPolicy),
		HealthCheckNodePort: host.Spec.HealthCheckNodePort,
	}
	for _, p := range host.Spec.Ports {
		a.NodePorts = append(a.NodePorts, p.NodePort)
	}
	return a
}

// KeepAllocation sets on desired, a host Service about to be written over
// current, what the host allocated for current and the write must keep:
// its ClusterIPs (immutable), and the node ports of ports that stay (same
// port number and protocol) while the type still has node ports.
func KeepAllocation(desired, current *corev1.Service) {
	desired.Spec.ClusterIP, desired.Spec.ClusterIPs = current.Spec.ClusterIP, slices.Clone(current.Spec.ClusterIPs)
	if desired.Spec.IPFamilyPolicy == nil {
		desired.Spec.IPFamilyPolicy = copyPtr(current.Spec.IPFamilyPolicy)
	}
	if len(desired.Spec.IPFamilies) == 0 {
		desired.Spec.IPFamilies = slices.Clone(current.Spec.IPFamilies)
	}
	if desired.Spec.Type != corev1.ServiceTypeNodePort && desired.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	for i := range desired.Spec.Ports {
		for _, c := range current.Spec.Ports {
			if c.Port == desired.Spec.Ports[i].Port && c.Protocol == desired.Spec.Ports[i].Protocol {
				desired.Spec.Ports[i].NodePort = c.NodePort
			}
		}
	}
	if desired.Spec.Type == corev1.ServiceTypeLoadBalancer && desired.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		desired.Spec.HealthCheckNodePort = current.Spec.HealthCheckNodePort
	}
}

// OverHostService is the host Service to write over current so that it
// holds desired: desired's labels, spec (current's allocation kept) and
// podbridge's annotations, with what host controllers set on current
// (finalizers, their annotations, status) left as it is.
func OverHostService(desired, current *corev1.Service) *corev1.Service {
	updated := current.DeepCopy()
	KeepAllocation(desired, current)
	updated.Labels = desired.Labels
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	updated.Spec = desired.Spec
	return updated
}

// SameHostService reports whether current, a host Service read from the
// host, already holds what desired would write: the translated spec
// (allocated fields as the host filled them) and podbridge's metadata.
func SameHostService(desired, current *corev1.Service) bool {
	d := desired.DeepCopy()
	KeepAllocation(d, current)
	c := current.Spec.DeepCopy()
	// Fields the host defaults when the write leaves them empty.
	if d.Spec.SessionAffinity == "" {
		c.SessionAffinity = ""
	}
	if d.Spec.InternalTrafficPolicy == nil {
		c.InternalTrafficPolicy = nil
	}
	if d.Spec.ExternalTrafficPolicy == "" {
		c.ExternalTrafficPolicy = ""
	}
	if d.Spec.AllocateLoadBalancerNodePorts == nil {
		c.AllocateLoadBalancerNodePorts = nil
	}
	if d.Spec.SessionAffinityConfig == nil {
		c.SessionAffinityConfig = nil
	}
	for i := range c.Ports {
		if i < len(d.Spec.Ports) {
			if d.Spec.Ports[i].TargetPort.IntVal == 0 && d.Spec.Ports[i].TargetPort.StrVal == "" {
				d.Spec.Ports[i].TargetPort = c.Ports[i].TargetPort
			}
			if d.Spec.Ports[i].Protocol == "" {
				d.Spec.Ports[i].Protocol = c.Ports[i].Protocol
			}
		}
	}
	return equality.Semantic.DeepEqual(d.Spec, *c) && maps.Equal(d.Labels, current.Labels) &&
		hasAll(current.Annotations, d.Annotations)
}

// ClaimsService reports whether host is the host Service of the stored
// virtual Service: it carries the virtual Service's sync ID and names it,
// as Claims defines a pod pair.
func ClaimsService(virtual, host *corev1.Service) bool {
	return virtual != nil && host != nil && ClaimsObject(virtual, host)
}

// validateServiceMetadata refuses what a Service's metadata may not hold
// on its way to the host, as validateMetadata does for pods (a Service's
// name is a DNS-1035 label), and an invalid selector key.
func validateServiceMetadata(s *corev1.Service) field.ErrorList {
	errs := validateObjectMeta(s, validation.IsDNS1035Label)
	selector := field.NewPath("spec", "selector")
	for _, key := range slices.Sorted(maps.Keys(s.Spec.Selector)) {
		for _, msg := range validation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(selector.Key(key), key, msg))
		}
	}
	return errs
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// hasAll reports whether have holds every key of want with its value.
func hasAll(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}
