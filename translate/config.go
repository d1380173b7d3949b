package translate

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Config is what translation needs to know about the two clusters.
type Config struct {
	// VCluster is the virtual cluster's name, unique among the virtual
	// clusters that share HostNamespace.
	VCluster string
	// HostNamespace receives every host pod of the virtual cluster.
	HostNamespace string
	// HostServiceAccount is the host service account host pods run as.
	// Its token is never mounted: workloads talk to the virtual apiserver.
	HostServiceAccount string

	// APIServerHost and APIServerPort are the virtual apiserver's address
	// as host pods reach it; when set, containers get them in every
	// variable the kubelet injects for the `kubernetes` Service
	// (KUBERNETES_SERVICE_HOST, KUBERNETES_PORT_443_TCP_ADDR, ...).
	APIServerHost string
	APIServerPort int32
	// HostAPIServicePort is the port of the host's `kubernetes` Service
	// (0: 443, which kube-apiserver fixes). It names some of the variables
	// the host kubelet injects (KUBERNETES_PORT_443_TCP...), which podbridge
	// must override too.
	HostAPIServicePort int32
	// KubernetesServiceIP is the ClusterIP of the host Service in front of
	// the virtual apiserver on port 443, which the platform makes. The
	// virtual `default/kubernetes` Service gets this address, so
	// `kubernetes.default.svc` reaches the virtual apiserver on the host's
	// service network; left to the virtual apiserver, it would get the
	// first address of its range, which with the host's range is the
	// host's own `kubernetes` Service. When set, APIServerHost and
	// APIServerPort must name the same Service (it, port 443).
	KubernetesServiceIP string
	// DNSNameserver is the virtual cluster's DNS service address; when set,
	// ClusterFirst pods resolve through it with the virtual search domains.
	DNSNameserver string
	// DNSService is the virtual Service of the virtual cluster's DNS server
	// (namespace and name): with DNSNameserver set, its host Service gets
	// that address (a platform picks it from the host range's static
	// band, as kube-dns's 10th address is), as a kubelet's --cluster-dns
	// names a Service address fixed in advance.
	DNSService types.NamespacedName
	// ClusterDomain is the virtual cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// HostsImage is the image of the init container that writes the hosts
	// file of pods with a subdomain, so `hostname -f` names the virtual
	// namespace (see HostsFile); it runs /podbridge-hosts
	// (cmd/podbridge-hosts). Empty, such pods keep the host kubelet's
	// file, which names the host namespace.
	HostsImage string

	// NodeSelector and Tolerations are enforced on every host pod, on top
	// of what the tenant asked for.
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// PriorityClasses may be used by tenants; other priority classes are
	// stripped, so the host's default applies.
	PriorityClasses []string

	// RuntimeClasses, CSIDrivers and StorageClasses are what a host pod may
	// name of what acts with the host namespace's rights: runtime classes,
	// inline CSI drivers, and storage classes of generic ephemeral volumes.
	// The host-side gate (package policy) refuses any other; empty allows
	// none.
	RuntimeClasses []string
	CSIDrivers     []string
	StorageClasses []string
	// CSIVolumeAttributes are, for each allowed CSI driver, the
	// volumeAttributes keys an inline volume may set: a driver reads them
	// with the host namespace's rights, and some name objects (a
	// SecretProviderClass) that may be another tenant's. A key not listed
	// is refused.
	CSIVolumeAttributes map[string][]string
	// TolerationKeys are the taint keys a tenant's tolerations may name
	// besides node.kubernetes.io/not-ready and unreachable (which every
	// pod tolerates). A toleration of every key is never allowed: taints
	// keep tenants off the platform's own and draining nodes.
	TolerationKeys []string
	// AllowNodePinning lets a tenant name nodes in node affinity
	// (matchFields on metadata.name), as nodeName would.
	AllowNodePinning bool
	// AllowDefaultStorageClass lets a generic ephemeral volume name no
	// storage class, so the host's default class provisions it. The gate
	// cannot know which class that is, so the platform allows it explicitly.
	AllowDefaultStorageClass bool
	// HostAnnotations are the tenant annotation keys copied verbatim to
	// host pods; no other tenant annotation reaches the host under its own
	// key (see TenantKey). Empty by default: host features keyed on
	// annotations (CNI networks, fixed IPs, mesh opt-outs) stay the host's.
	HostAnnotations []string
	// ServiceTypes are the Service types besides ClusterIP (headless
	// included) and ExternalName that tenants may create: NodePort and
	// LoadBalancer open host node ports and host load balancers. Empty by
	// default.
	ServiceTypes []corev1.ServiceType
	// EndpointCIDRs are the address ranges a tenant's EndpointSlices of a
	// Service without a selector may name besides this virtual cluster's
	// own pod IPs (policy.FlagAllowedEndpointCIDRs). Empty by default.
	EndpointCIDRs []netip.Prefix
	// ReservedCIDRs are the address ranges no tenant NetworkPolicy may
	// open (CIDRs): the host's pod network and service range, and what
	// else the platform keeps from tenants (node addresses, the cloud's
	// metadata address). A tenant's ipBlock must lie outside them (or
	// except them), and "every peer" means the tenant's own pods plus the
	// addresses outside them. Empty, ipBlock is refused and "every peer"
	// is the tenant's own pods only. A family with no range named here
	// gets no ipBlock.
	ReservedCIDRs []string
}

// ReservedPrefixes are ReservedCIDRs parsed (Validate refuses a bad one),
// masked to their network address.
func (c Config) ReservedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.ReservedCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Validate reports configuration errors by field name.
func (c Config) Validate() error {
	var errs field.ErrorList
	for name, value := range map[string]string{"vcluster": c.VCluster, "hostNamespace": c.HostNamespace, "hostServiceAccount": c.HostServiceAccount} {
		if value == "" {
			errs = append(errs, field.Required(field.NewPath(name), "must be set"))
		}
	}
	if c.VCluster != "" {
		for _, msg := range validation.IsDNS1123Label(c.VCluster) {
			errs = append(errs, field.Invalid(field.NewPath("vcluster"), c.VCluster, msg))
		}
	}
	if strings.ContainsFunc(c.HostsImage, unicode.IsSpace) {
		errs = append(errs, field.Invalid(field.NewPath("hostsImage"), c.HostsImage, "must be an image reference"))
	}
	if c.DNSNameserver != "" && net.ParseIP(c.DNSNameserver) == nil {
		errs = append(errs, field.Invalid(field.NewPath("dnsNameserver"), c.DNSNameserver, "must be an IP address"))
	}
	if ip := c.KubernetesServiceIP; ip != "" {
		path := field.NewPath("kubernetesServiceIP")
		switch {
		case net.ParseIP(ip) == nil:
			errs = append(errs, field.Invalid(path, ip, "must be an IP address"))
		case c.APIServerHost != ip || c.APIServerPort != 443:
			errs = append(errs, field.Invalid(path, ip, fmt.Sprintf("host pods' kubernetes variables must name the same Service: apiServerHost %s and apiServerPort 443, not %s and %d", ip, c.APIServerHost, c.APIServerPort)))
		}
	}
	if (c.DNSService.Name == "") != (c.DNSService.Namespace == "") {
		errs = append(errs, field.Invalid(field.NewPath("dnsService"), c.DNSService.String(), "namespace/name, both or neither"))
	}
	if (c.APIServerHost == "") != (c.APIServerPort == 0) {
		errs = append(errs, field.Invalid(field.NewPath("apiServerPort"), c.APIServerPort, "apiServerHost and apiServerPort go together"))
	}
	if c.HostAPIServicePort < 0 || c.HostAPIServicePort > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("hostAPIServicePort"), c.HostAPIServicePort, "must be a port number (0: 443)"))
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"priorityClasses", c.PriorityClasses}, {"runtimeClasses", c.RuntimeClasses}, {"csiDrivers", c.CSIDrivers}, {"storageClasses", c.StorageClasses}} {
		for i, v := range l.list {
			name := l.name
			for _, msg := range validation.IsDNS1123Subdomain(v) {
				errs = append(errs, field.Invalid(field.NewPath(name).Index(i), v, msg))
			}
		}
	}
	for i, key := range c.TolerationKeys {
		for _, msg := range validation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(field.NewPath("tolerationKeys").Index(i), key, msg))
		}
	}
	for _, driver := range slices.Sorted(maps.Keys(c.CSIVolumeAttributes)) {
		path := field.NewPath("csiVolumeAttributes").Key(driver)
		if !slices.Contains(c.CSIDrivers, driver) {
			errs = append(errs, field.Invalid(path, driver, "not an allowed CSI driver (csiDrivers)"))
		}
		for i, key := range c.CSIVolumeAttributes[driver] {
			if key == "" {
				errs = append(errs, field.Required(path.Index(i), "an attribute key"))
			}
		}
	}
	for i, key := range c.HostAnnotations {
		path := field.NewPath("hostAnnotations").Index(i)
		for _, msg := range validation.IsQualifiedName(strings.ToLower(key)) {
			errs = append(errs, field.Invalid(path, key, msg))
		}
		if IsReserved(key) || IsTenantKey(key) {
			errs = append(errs, field.Invalid(path, key, "podbridge's own keys and translated tenant keys cannot be allowed"))
		}
	}
	for i, t := range c.ServiceTypes {
		if t != corev1.ServiceTypeNodePort && t != corev1.ServiceTypeLoadBalancer {
			errs = append(errs, field.NotSupported(field.NewPath("serviceTypes").Index(i), t, []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}))
		}
	}
	for i, p := range c.EndpointCIDRs {
		if msg := EndpointCIDRProblem(p); msg != "" {
			errs = append(errs, field.Invalid(field.NewPath("endpointCIDRs").Index(i), p.String(), msg))
		}
	}
	for i, cidr := range c.ReservedCIDRs {
		p, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(field.NewPath("reservedCIDRs").Index(i), cidr, err.Error()))
		case p.Bits() == 0:
			errs = append(errs, field.Invalid(field.NewPath("reservedCIDRs").Index(i), cidr, "a whole address family cannot be reserved: name the ranges"))
		}
	}
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// EndpointCIDRProblem says why p cannot be an allowed endpoint range, or
// "": it must be valid, written as its network address (10.1.0.0/16, not
// 10.1.2.3/16, so what is allowed is what is read) and not an IPv4-mapped
// IPv6 range, which no endpoint address may take (policy refuses them).
func EndpointCIDRProblem(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "must be a CIDR such as 10.1.0.0/16"
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return "must be an IPv4 or IPv6 CIDR, not an IPv4-mapped or zoned one"
	case p != p.Masked():
		return "must name its network address: " + p.Masked().String()
	}
	return ""
}

func (c Config) hostAPIServicePort() int32 {
	if c.HostAPIServicePort == 0 {
		return 443
	}
	return c.HostAPIServicePort
}

func (c Config) clusterDomain() string {
	if c.ClusterDomain == "" {
		return "cluster.local"
	}
	return c.ClusterDomain
}
