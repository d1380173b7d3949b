package translate

import (
	"maps"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// EndpointSliceControllerName is the endpointslice controller's value
	// of discoveryv1.LabelManagedBy. In the virtual cluster its slices are
	// those of Services with a selector, whose host Service has its own.
	EndpointSliceControllerName = "endpointslice-controller.k8s.io"
	// EndpointSliceManagedBy is podbridge's value of
	// discoveryv1.LabelManagedBy on host EndpointSlices: the host's
	// endpointslice and mirroring controllers leave other managers' slices alone.
	EndpointSliceManagedBy = "podbridge.io"
	// AnnotationService names, on a host EndpointSlice, the virtual Service
	// (in AnnotationNamespace) its virtual slice belongs to.
	AnnotationService = Prefix + "service"
	// ConditionEndpointsCarried is the virtual Service's status condition,
	// False while some of its EndpointSlices' addresses are not carried to
	// the host, naming them; absent otherwise.
	ConditionEndpointsCarried = Prefix + "EndpointsCarried"
)

// TenantEndpointSlice returns the Service a virtual EndpointSlice belongs
// to and whether the tenant wrote it: by hand, or through the mirroring
// controller from an Endpoints object. Slices of the virtual endpointslice
// controller are not carried: they follow a selector the host follows too.
func TenantEndpointSlice(s *discoveryv1.EndpointSlice) (service string, ok bool) {
	service = s.Labels[discoveryv1.LabelServiceName]
	return service, service != "" && s.Labels[discoveryv1.LabelManagedBy] != EndpointSliceControllerName
}

// HostEndpointSliceName is the name of the host EndpointSlice of virtual
// slice name in namespace, as HostName names pods: injective, at most 63
// characters (a slice name is a DNS subdomain; so is the result).
func HostEndpointSliceName(name, namespace, vcluster string) string {
	return HostName(name, namespace, vcluster)
}

// HostEndpointSliceKey is the virtual Service a host EndpointSlice was
// written for, from its annotations; a key with no namespace and the
// slice's own name when they name none, so it is still collected.
func HostEndpointSliceKey(host *discoveryv1.EndpointSlice) types.NamespacedName {
	namespace, service := host.Annotations[AnnotationNamespace], host.Annotations[AnnotationService]
	if namespace == "" || service == "" {
		return types.NamespacedName{Name: host.Name}
	}
	return types.NamespacedName{Namespace: namespace, Name: service}
}

// OwnEndpointSliceLabels select the host EndpointSlices podbridge made
// for virtual cluster vcluster. The host's endpointslice controller copies
// a host Service's labels (podbridge's managed-by and vcluster keys too)
// onto the slices it makes for a Service with a selector: only
// discoveryv1.LabelManagedBy tells podbridge's apart.
func OwnEndpointSliceLabels(vcluster string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelVCluster: vcluster, discoveryv1.LabelManagedBy: EndpointSliceManagedBy}
}

// IsOwnEndpointSlice reports whether host is a host EndpointSlice
// podbridge made for virtual cluster vcluster (OwnEndpointSliceLabels).
func IsOwnEndpointSlice(host *discoveryv1.EndpointSlice, vcluster string) bool {
	for k, v := range OwnEndpointSliceLabels(vcluster) {
		if host.Labels[k] != v {
			return false
		}
	}
	return true
}

// HostEndpointSlice is the host EndpointSlice of virtual, a tenant slice of
// virtual Service service, whose host Service is hostService: podbridge's
// name, labels (kubernetes.io/service-name is the host Service's) and
// annotations only, owned by the host Service so the host's garbage
// collector removes it with the Service too, with the endpoints the gate
// allowed and the virtual slice's ports.
func HostEndpointSlice(virtual *discoveryv1.EndpointSlice, service, hostService string, hostServiceUID types.UID, cfg Config, endpoints []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	ports := make([]discoveryv1.EndpointPort, 0, len(virtual.Ports))
	for _, p := range virtual.Ports {
		ports = append(ports, discoveryv1.EndpointPort{Name: copyPtr(p.Name), Protocol: copyPtr(p.Protocol), Port: copyPtr(p.Port), AppProtocol: copyPtr(p.AppProtocol)})
	}
	return &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      HostEndpointSliceName(virtual.Name, virtual.Namespace, cfg.VCluster),
			Namespace: cfg.HostNamespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: hostService,
				discoveryv1.LabelManagedBy:   EndpointSliceManagedBy,
				LabelManagedBy:               ManagedByValue,
				LabelVCluster:                cfg.VCluster,
				LabelNamespace:               virtual.Namespace,
			},
			Annotations: map[string]string{
				AnnotationName:      virtual.Name,
				AnnotationNamespace: virtual.Namespace,
				AnnotationVCluster:  cfg.VCluster,
				AnnotationService:   service,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: hostService, UID: hostServiceUID}},
		},
		AddressType: virtual.AddressType,
		Endpoints:   endpoints,
		Ports:       ports,
	}
}

// SameHostEndpointSlice reports whether current, read from the host,
// already holds what desired would write.
func SameHostEndpointSlice(desired, current *discoveryv1.EndpointSlice) bool {
	return desired.AddressType == current.AddressType &&
		maps.Equal(desired.Labels, current.Labels) && hasAll(current.Annotations, desired.Annotations) &&
		equality.Semantic.DeepEqual(desired.OwnerReferences, current.OwnerReferences) &&
		equality.Semantic.DeepEqual(desired.Endpoints, current.Endpoints) &&
		equality.Semantic.DeepEqual(desired.Ports, current.Ports)
}

// OverHostEndpointSlice is desired written over current: its resource
// version and whatever annotations the host added kept.
func OverHostEndpointSlice(desired, current *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	updated := current.DeepCopy()
	updated.Labels, updated.OwnerReferences = desired.Labels, desired.OwnerReferences
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	updated.AddressType, updated.Endpoints, updated.Ports = desired.AddressType, desired.Endpoints, desired.Ports
	return updated
}
